import math

import numpy as np
import pytest
import torch

from attnkit.data.hsi import (
    degrade_spatial,
    degrade_spectral,
    gaussian_psf,
    gaussian_srf,
    load_mat_scene,
    simulate_pair,
    srf_supports,
    synthetic_scene,
)


def test_gaussian_psf_sums_to_one_and_has_fwhm_equal_to_scale():
    k = gaussian_psf(5).double()
    assert k.shape == (5, 5)
    assert abs(float(k.sum()) - 1.0) < 1e-6
    # the kernel is exp(-r²/(2σ²)): recover σ from two neighbouring samples of the centre row
    sigma = math.sqrt(-1.0 / (2 * math.log(float(k[2, 3] / k[2, 2]))))
    assert abs(2 * math.sqrt(2 * math.log(2)) * sigma - 5.0) < 1e-4
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))


def test_degradations_commute():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 12, 20, 20, generator=g)
    srf = torch.rand(12, 4, generator=g)
    srf = srf / srf.sum(0)
    psf = gaussian_psf(4)
    a = degrade_spatial(degrade_spectral(x, srf), psf, 4)
    b = degrade_spectral(degrade_spatial(x, psf, 4), srf)
    assert a.shape == (2, 4, 5, 5)
    assert (a - b).abs().max() < 1e-6


def test_degrade_spatial_is_valid_conv_then_decimation():
    x = torch.rand(1, 3, 12, 12)
    psf = gaussian_psf(4)
    full = torch.nn.functional.conv2d(x.reshape(3, 1, 12, 12), psf[None, None]).reshape(1, 3, 9, 9)
    assert torch.allclose(degrade_spatial(x, psf, 4), full[..., ::4, ::4], atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="srf"):
        degrade_spectral(torch.rand(1, 5, 4, 4), torch.rand(6, 2))
    with pytest.raises(ValueError, match="x must"):
        degrade_spatial(torch.rand(5, 4, 4), gaussian_psf(2), 2)


def test_srf_supports_and_gaussian_srf():
    srf = gaussian_srf(46, 8, sigma=3.0)
    assert srf.shape == (46, 8)
    assert torch.allclose(srf.sum(0), torch.ones(8), atol=1e-6)
    sup = srf_supports(srf)
    assert len(sup) == 8
    for b, (lo, hi) in enumerate(sup):
        assert (srf[lo : hi + 1, b] > 0).all()  # contiguous
        assert srf[:lo, b].sum() == 0 and srf[hi + 1 :, b].sum() == 0
    r = torch.zeros(5, 2)
    r[1:3, 0], r[4, 1] = 0.5, 1.0
    assert srf_supports(r) == [(1, 2), (4, 4)]


def test_simulate_pair_shapes_and_equal_lr_msi_targets():
    x = synthetic_scene(40, seed=1)
    assert x.shape == (46, 40, 40) and float(x.min()) >= 0 and abs(float(x.max()) - 1) < 1e-6
    pair = simulate_pair(x, 4, gaussian_srf(46, 8))
    assert pair["Y"].shape == (1, 46, 10, 10) and pair["Z"].shape == (1, 8, 40, 40)
    assert (pair["M_Y"] - pair["M_Z"]).abs().max() < 1e-6
    assert not torch.equal(synthetic_scene(40, seed=1), synthetic_scene(40, seed=2))


def test_load_mat_scene_v5_and_missing_key(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    cube = np.random.default_rng(0).random((6, 7, 5)).astype(np.float32) * 3  # H×W×L like REF.mat
    path = tmp_path / "REF.mat"
    scipy_io.savemat(path, {"REF": cube})
    x = load_mat_scene(path)
    assert x.shape == (5, 6, 7)
    assert torch.allclose(x, torch.from_numpy(cube.transpose(2, 0, 1)) / cube.max(), atol=1e-6)
    raw = load_mat_scene(path, normalize=False)
    assert torch.allclose(raw[2], torch.from_numpy(cube[:, :, 2]))
    with pytest.raises(KeyError, match="REF"):
        load_mat_scene(path, key="X")
    with pytest.raises(FileNotFoundError):
        load_mat_scene(tmp_path / "none.mat")


def test_load_mat_scene_v73_hdf5(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    h5py = pytest.importorskip("h5py", reason="needs attnkit[tasks]")
    cube = np.random.default_rng(1).random((6, 7, 5)).astype(np.float32)
    path = tmp_path / "cave.mat"
    # MATLAB v7.3: a 512-byte userblock holding the text header (version 0x0200), then HDF5; arrays are
    # column-major, so the HDF5 dataset of an H×W×L cube is L×W×H
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("REF", data=cube.transpose(2, 1, 0))
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    with pytest.raises(NotImplementedError):  # scipy refuses it: the HDF5 path is the one taken
        scipy_io.loadmat(path)
    x = load_mat_scene(path, normalize=False)
    assert x.shape == (5, 6, 7)
    assert torch.allclose(x, torch.from_numpy(cube.transpose(2, 0, 1)))
    with pytest.raises(KeyError, match="REF"):
        load_mat_scene(path, key="nope")
