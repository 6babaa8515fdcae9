import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.data.hsi import gaussian_srf, simulate_pair, srf_supports, synthetic_scene
from attnkit.tasks.adasr import (
    ADASRConfig,
    LearnablePSF,
    LearnableSRF,
    RotationAugmentor,
    SpectralUpNet,
    fit_adasr,
    hsi_metrics,
    load_official_augmentor,
    rotate,
)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert n_params(SpectralUpNet(8, 46)) == 2206
    assert n_params(LearnablePSF(5)) == 25
    assert n_params(RotationAugmentor(46)) == 5_240_321
    sup = [(0, 9), (5, 20), (30, 45)]
    assert n_params(LearnableSRF(sup, 46)) == 10 + 16 + 16


def test_box_psf_equals_avg_pool():
    x = torch.rand(2, 6, 20, 20)
    assert (LearnablePSF(5)(x) - F.avg_pool2d(x, 5)).abs().max() <= 1e-6


def test_srf_is_weighted_mean_and_detached_normalisation_gradient():
    sup = [(0, 4), (3, 9)]
    srf = LearnableSRF(sup, 10)
    with torch.no_grad():
        srf.weights[0].mul_(3.0)  # not normalised any more: the forward still is a weighted mean
    assert (srf(torch.ones(2, 10, 3, 3)) - 1).abs().max() <= 1e-6
    x = torch.rand(1, 10, 4, 4)
    srf(x).sum().backward()
    w = srf.weights[0].detach()
    # gradient of the unnormalised conv Σ_l w_l x_l, divided by the constant weight sum
    expected = x[0, 0:5].sum((1, 2)) / w.sum()
    assert torch.allclose(srf.weights[0].grad, expected, atol=1e-6)
    srf2 = LearnableSRF(sup, 10, norm_grad=True)
    srf2(x).sum().backward()
    assert not torch.allclose(srf2.weights[0].grad, x[0, 0:5].sum((1, 2)) / srf2.weights[0].detach().sum())


def test_rotation_identities():
    x = torch.rand(2, 3, 16, 16)
    assert (rotate(x, 0.0) - x).abs().max() <= 1e-6
    assert (rotate(x, math.pi / 2) - torch.rot90(x, 1, (2, 3))).abs().max() <= 1e-5
    theta = torch.tensor([0.0, math.pi / 2])
    out = rotate(x, theta)
    assert torch.allclose(out[0], x[0], atol=1e-6)
    with pytest.raises(ValueError, match="theta"):
        rotate(x, torch.zeros(3))


class _OfficialAugmentor(nn.Module):
    """The official Conv3d augmentor (arch/augmentor.py), written from its description, key names kept."""

    def __init__(self, c, widths=(64, 64, 128, 128, 256, 256, 512, 512)):
        super().__init__()
        cin = c
        for i, w in enumerate(widths, start=1):
            stride = (1, 2, 2) if i % 2 == 0 else 1
            setattr(self, f"conv{i}", nn.Conv3d(cin, w, 3, stride=stride, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm3d(w))
            cin = w
        self.fc1 = nn.Linear(cin, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, x):
        x = x.unsqueeze(2)
        for i in range(1, 9):
            x = F.leaky_relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)), 0.2)
        x = F.adaptive_avg_pool3d(x, 1).view(-1, x.shape[1])
        return torch.tanh(self.fc2(F.leaky_relu(self.fc1(x), 0.2)))[:, 0] * 3.14


def test_load_official_augmentor_matches_conv3d_reference():
    torch.manual_seed(0)
    ref = _OfficialAugmentor(46)
    assert n_params(ref) == 14_656_769
    for m in ref.modules():  # non-trivial BatchNorm state
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}
    aug = load_official_augmentor(sd).eval()
    ref.eval()
    y = torch.rand(2, 46, 24, 24)
    with torch.no_grad():
        a, b = aug(y), ref(y)
    assert a.shape == (2,)
    assert (a - b).abs().max() <= 1e-5
    assert (a.abs() < math.pi).all()
    with pytest.raises(KeyError):
        load_official_augmentor({"fc1.weight": torch.zeros(1)})


def test_augmentor_angle_range():
    aug = RotationAugmentor(8, widths=(4,) * 8)
    with torch.no_grad():
        aug.fc2.bias.fill_(50.0)  # saturate tanh
        theta = aug(torch.rand(1, 8, 20, 20))
    assert theta.shape == (1,) and (theta.abs() < math.pi + 1e-6).all()


def test_hsi_metric_identities():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 10, 10, generator=g) + 0.1
    m = hsi_metrics(x, x.clone(), 4)
    assert m["psnr"] == float("inf") and m["sam_deg"] == 0.0 and m["ergas"] == 0.0
    assert abs(m["cc"] - 1.0) < 1e-12 and m["rmse"] == 0.0
    c = torch.full((5, 8, 8), 0.5, dtype=torch.float64)
    assert abs(hsi_metrics(c, c + 0.01, 4)["ergas"] - (100 / 4) * 0.02) < 1e-12
    a = torch.zeros(2, 3, 3)
    b = torch.zeros(2, 3, 3)
    a[0], b[1] = 1.0, 1.0  # orthogonal spectra at every pixel
    assert abs(hsi_metrics(a, b, 4)["sam_deg"] - 90.0) < 1e-9
    # near-parallel spectra whose cosine rounds above 1 in float32 never give NaN
    v = torch.full((46, 4, 4), 0.3)
    assert not math.isnan(hsi_metrics(v, v * (1 + 1e-7), 4)["sam_deg"])
    psnr_b = 10 * torch.log10(x.flatten(1).max(1).values.double() ** 2 / 1e-4)
    assert abs(hsi_metrics(x, x + 0.01, 4)["psnr"] - float(psnr_b.mean())) < 1e-3


def _pair(size=40):
    x = synthetic_scene(size, seed=0)
    srf = gaussian_srf(46, 8)
    return x, simulate_pair(x, 4, srf), srf_supports(srf)


def test_adversarial_flips_the_sign_of_the_first_augmentor_update():
    x, pair, sup = _pair(80)
    base = dict(
        stage1_iters=1, stage2_iters=0, augment="learned", augmentor_widths=(4,) * 8, supervision="blind"
    )
    p0 = fit_adasr(pair["Y"], pair["Z"], sup, 4, ADASRConfig(lr_aug=0.0, **base)).nets["augmentor"]
    coop = fit_adasr(pair["Y"], pair["Z"], sup, 4, ADASRConfig(augment_objective="cooperative", **base))
    adv = fit_adasr(pair["Y"], pair["Z"], sup, 4, ADASRConfig(augment_objective="adversarial", **base))
    d_coop = torch.cat(
        [(a - b).flatten() for a, b in zip(coop.nets["augmentor"].parameters(), p0.parameters())]
    )
    d_adv = torch.cat(
        [(a - b).flatten() for a, b in zip(adv.nets["augmentor"].parameters(), p0.parameters())]
    )
    # Adam's first step moves every parameter by ±lr·g/(|g| + eps); the 1e-16 weight decay breaks the
    # exact symmetry only where |g| is itself ~1e-16, so compare where the step is a real one
    moved = d_coop.abs() > 0.5 * 1e-4
    assert moved.float().mean() > 0.9
    assert torch.equal(torch.sign(d_adv[moved]), -torch.sign(d_coop[moved]))
    assert torch.allclose(d_adv[moved], -d_coop[moved], rtol=0, atol=1e-7)  # float32 rounding of p + Δ


def test_fit_adasr_validates():
    x, pair, sup = _pair()
    with pytest.raises(ValueError, match="targets"):
        fit_adasr(
            pair["Y"], pair["Z"], sup, 4, ADASRConfig(supervision="simulated", augment="none", stage1_iters=1)
        )
    with pytest.raises(ValueError, match="augment"):
        ADASRConfig(augment="flip")
    with pytest.raises(ValueError, match="LR-HSI"):  # 10×10 is too small for four stride-2 convs
        fit_adasr(pair["Y"], pair["Z"], sup, 4, ADASRConfig(augment="learned", stage1_iters=1))
    with pytest.raises(ValueError, match="scale"):
        fit_adasr(pair["Y"], pair["Z"], sup, 5, ADASRConfig(augment="none"))


@pytest.mark.slow
def test_smoke_reconstruction_simulated():
    x, pair, sup = _pair(40)
    cfg = ADASRConfig(
        stage1_iters=300,
        stage1_decay_from=100,
        stage2_iters=500,
        stage2_decay_from=100,
        augment="none",
        supervision="simulated",
        seed=0,
    )
    res = fit_adasr(pair["Y"], pair["Z"], sup, 4, cfg, targets=(pair["M_Y"], pair["M_Z"]), log_every=50)
    err0 = float((torch.full((4, 4), 1 / 16) - pair["psf"]).abs().sum())
    err = float((res.psf - pair["psf"]).abs().sum())
    assert err <= 0.5 * err0
    assert res.x_hat.shape == (1, 46, 40, 40)
    assert hsi_metrics(x, res.x_hat, 4)["psnr"] > 25.0
    assert {h["stage"] for h in res.history} == {1, 2}


def test_cli_fit_writes_cube_and_png(tmp_path):
    from attnkit.cli import main

    out = tmp_path / "run"
    rc = main(
        ["adasr", "fit", "--scene", "synthetic", "--size", "40", "--stage1", "5", "--stage2", "5",
         "--augment", "random", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    import scipy.io

    cube = scipy.io.loadmat(out / "fused.mat")["OUT"]
    assert cube.shape == (40, 40, 46)
    assert (out / "false_color.png").stat().st_size > 1000
    assert "psnr" in json.loads((out / "metrics.json").read_text())["metrics"]
