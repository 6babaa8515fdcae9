import pytest
import torch

from attnkit.generative.animate_ops import (
    laplacian_boost,
    laplacian_pyramid,
    normalize_scale,
    reconstruct_pyramid,
)

kornia = pytest.importorskip("kornia", reason="needs attnkit[vision]")
skdata = pytest.importorskip("skimage.data", reason="needs scikit-image")


def photo(name):
    a = torch.from_numpy(getattr(skdata, name)()).float() / 255
    return (a[None, None] if a.dim() == 2 else a.permute(2, 0, 1)[None]).contiguous()  # (1, C, H, W)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "camera"])
def test_pyramid_reconstructs_real_photos_exactly(name):
    x = photo(name).double()
    pyr = laplacian_pyramid(x, levels=4)
    assert [p.shape[-2:] for p in pyr][0] == x.shape[-2:]
    h, w = x.shape[-2:]
    assert pyr[-1].shape[-2:] == (h // 2 // 2 // 2, w // 2 // 2 // 2)
    assert (reconstruct_pyramid(pyr) - x).abs().max() < 1e-6
    x32 = photo(name)
    assert (reconstruct_pyramid(laplacian_pyramid(x32, 3)) - x32).abs().max() < 1e-6
    # band-pass levels are (nearly) zero-mean detail; the residual keeps the image's mean
    assert abs(pyr[0].mean()) < 0.01 and abs(pyr[-1].mean() - x.mean()) < 0.01


def test_matches_kornia_where_kornia_does_not_pad():
    x = photo("astronaut")  # 512 x 512: no padding in kornia
    ours = laplacian_pyramid(x, 3)
    ref = kornia.geometry.transform.build_laplacian_pyramid(x, 3)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5


def test_boost_identity_and_detail_gain():
    x = photo("chelsea")
    assert (laplacian_boost(x, gain=1.0) - x).abs().max() < 1e-6
    boosted = laplacian_boost(x, gain=2.0)
    detail = laplacian_pyramid(x, 3)[0].abs().mean()
    assert laplacian_pyramid(boosted, 3)[0].abs().mean() > 1.5 * detail
    smooth = laplacian_boost(x, gain=0.0)
    assert laplacian_pyramid(smooth, 3)[0].abs().mean() < 0.5 * detail
    assert torch.allclose(smooth.mean(), x.mean(), atol=1e-3)


def _horse_frames():
    horse = torch.from_numpy(~skdata.horse()).float()  # (328, 400), the silhouette is foreground
    frames = []
    for s, (dy, dx) in zip([0.3, 0.5, 0.8], [(10, 20), (100, 40), (30, 150)]):
        small = torch.nn.functional.interpolate(horse[None, None], scale_factor=s, mode="nearest")[0, 0]
        canvas = torch.zeros(400, 480)
        canvas[dy : dy + small.shape[0], dx : dx + small.shape[1]] = small
        frames.append(canvas)
    return torch.stack(frames)  # (3, 400, 480)


def _bbox(m):
    ys, xs = torch.where(m > 0.5)
    return ys.min().item(), ys.max().item(), xs.min().item(), xs.max().item()


def test_normalize_scale_same_box_every_frame():
    masks = _horse_frames()
    out, scale, shift = normalize_scale(masks, size=64, fill=0.75)
    assert out.shape == (3, 64, 64) and scale.shape == (3,) and shift.shape == (3, 2)
    assert scale[0] > scale[1] > scale[2]  # smaller subjects are enlarged more
    boxes = [_bbox(m) for m in out]
    sides = [max(b[1] - b[0], b[3] - b[2]) + 1 for b in boxes]
    assert max(sides) - min(sides) <= 1 and abs(sides[0] - 48) <= 1
    centres = torch.tensor([[(b[0] + b[1]) / 2, (b[2] + b[3]) / 2] for b in boxes])
    assert (centres - 31.5).abs().max() <= 1.0
    frames = masks[:, None].repeat(1, 3, 1, 1)
    *_, warped = normalize_scale(masks, size=64, frames=frames)
    assert warped.shape == (3, 3, 64, 64) and torch.equal((warped[:, 0] > 0.5).float(), out)


def test_bad_inputs():
    with pytest.raises(TypeError):
        laplacian_pyramid(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="too small"):
        laplacian_pyramid(torch.zeros(1, 1, 4, 4), levels=4)
    with pytest.raises(ValueError, match="foreground"):
        normalize_scale(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="gain"):
        laplacian_boost(torch.zeros(1, 1, 8, 8), gain=-1)
