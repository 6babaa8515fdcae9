"""frechet_distance (against scipy.linalg.sqrtm), FeatureNet and proxy FID."""

import numpy as np
import pytest
import torch

from attnkit.diffusion import FeatureNet, frechet_distance, load_feature_net, proxy_fid, save_feature_net


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_identical_diagonal_and_symmetric():
    s = _spd(6, 0)
    mu = np.arange(6.0)
    assert abs(frechet_distance(mu, s, mu, s)) <= 1e-6
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 0.5, 3.0])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    expect = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((m1 - m2) ** 2)
    assert abs(frechet_distance(m1, np.diag(a), m2, np.diag(b)) - expect) <= 1e-8
    s2 = _spd(6, 1)
    assert frechet_distance(mu, s, mu + 1, s2) == pytest.approx(frechet_distance(mu + 1, s2, mu, s), abs=1e-9)


def test_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _spd(8, 2), _spd(8, 3)
    m1, m2 = np.zeros(8), np.ones(8) * 0.3
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_bad_shapes():
    with pytest.raises(ValueError, match="sigma"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


def test_feature_net_proxy_fid_and_saving(tmp_path):
    torch.manual_seed(0)
    net = FeatureNet(img_size=8).eval()
    assert sum(p.numel() for p in net.parameters()) == 320 + 18496 + 65600 + 650
    assert FeatureNet(img_size=32).features(torch.randn(2, 1, 32, 32)).shape == (2, 64)
    assert FeatureNet(img_size=28).features(torch.randn(2, 1, 28, 28)).shape == (2, 64)
    x = torch.randn(200, 1, 8, 8)
    assert proxy_fid(x, x, net) == pytest.approx(0.0, abs=1e-6)
    assert proxy_fid(x + 1.0, x, net) > proxy_fid(x + 0.1, x, net) > 0
    assert proxy_fid(x, x, lambda im: im.flatten(1)) == pytest.approx(0.0, abs=1e-6)  # a user extractor
    save_feature_net(net, 0.5, tmp_path / "f.pt")
    net2, acc = load_feature_net(tmp_path / "f.pt")
    assert acc == 0.5 and torch.equal(net2(x[:3]), net(x[:3]))
    with pytest.raises(ValueError, match="img_size"):
        FeatureNet(img_size=12)
