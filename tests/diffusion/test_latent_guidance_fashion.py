"""The latent-guidance demo generator (Fashion-MNIST autoencoder, exact attributes), model files and the CLI."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers", reason="needs attnkit[diffusion]")

from attnkit.cli import main as cli_main  # noqa: E402
from attnkit.commands.lcg import _parse_attrs  # noqa: E402
from attnkit.diffusion import DDPMSchedule  # noqa: E402
from attnkit.diffusion.latent_guidance import (  # noqa: E402
    LatentClassifier,
    LatentDenoiser,
    load_latent_guidance,
    save_latent_guidance,
)
from attnkit.diffusion.latent_guidance_fashion import (  # noqa: E402
    AttributeRules,
    FashionAutoencoder,
    load_generator,
    save_generator,
    to_evaluator_input,
)


def test_attribute_rules_are_exact():
    img = torch.zeros(3, 1, 28, 28)
    img[0, 0, 5:9, 3:10] = 0.5  # width 7
    img[1, 0, 2, 20] = 0.9  # width 1
    img[2, 0, :, 4:6] = 0.15  # below the 0.2 threshold: width 0
    assert AttributeRules.width(img).tolist() == [7.0, 1.0, 0.0]
    rules = AttributeRules(ink_median=0.01, wide_median=3)
    att = rules.attributes(img, torch.tensor([0, 7, 1]))
    assert att["top"].tolist() == [1, 0, 0] and att["footwear"].tolist() == [0, 1, 0]
    assert att["wide"].tolist() == [1, 0, 0]
    assert att["ink"].tolist() == [float(img[i].mean()) > 0.01 for i in range(3)]
    with pytest.raises(ValueError, match="wide_median"):
        AttributeRules()


def test_autoencoder_shapes_and_generator_file(tmp_path):
    ae = FashionAutoencoder(8).eval()
    x = torch.rand(2, 1, 28, 28)
    z = ae.encode(x)
    assert z.shape == (2, 8) and ae.decode(z).shape == (2, 1, 28, 28)
    assert to_evaluator_input(x).shape == (2, 1, 32, 32)
    save_generator(ae, z.mean(0), z.std(0), tmp_path / "g.pt", ink_median=0.3)
    ae2, mean, _, rec = load_generator(tmp_path / "g.pt")
    assert (
        torch.equal(ae2.decode(z), ae.decode(z)) and torch.equal(mean, z.mean(0)) and rec["ink_median"] == 0.3
    )


def _tiny_run(path, d=8):
    sched = DDPMSchedule(1000, 1e-4, 0.02)
    torch.manual_seed(0)
    den = LatentDenoiser(d, hidden=16, depth=1, time_dim=8)
    torch.nn.init.normal_(den.out.weight, std=0.1)
    clfs = {k: LatentClassifier(d, hidden=16, depth=1, time_dim=8) for k in ("top", "ink")}
    save_latent_guidance(path / "lcg.pt", den.eval(), clfs, sched)
    ae = FashionAutoencoder(d)
    save_generator(ae, torch.zeros(d), torch.ones(d), path / "generator.pt", ink_median=0.1, wide_median=10)
    return den, clfs, sched


def test_latent_guidance_file_round_trip(tmp_path):
    den, clfs, sched = _tiny_run(tmp_path)
    lcg, rec = load_latent_guidance(tmp_path / "lcg.pt", num_inference_steps=10)
    assert rec["schedule"] == dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    z, t = torch.randn(3, 8), torch.randint(0, 1000, (3,))
    assert torch.equal(lcg.denoiser(z, t), den(z, t))
    assert torch.equal(lcg.classifiers["ink"](z, t), clfs["ink"](z, t))


def test_cli_sample_writes_a_grid_and_rejects_bad_attributes(tmp_path, capsys):
    _tiny_run(tmp_path)
    out = tmp_path / "s.png"
    rc = cli_main(["lcg", "sample", "--run", str(tmp_path), "--attr", "top=1", "--attr", "ink=0", "--n", "4",
                   "--steps", "5", "--out", str(out)])  # fmt: skip
    assert rc == 0 and out.stat().st_size > 0
    from PIL import Image

    assert Image.open(out).size[0] > 4 * 28
    assert cli_main(["lcg", "sample", "--run", str(tmp_path), "--attr", "nope=1", "--steps", "5"]) == 2
    assert "unknown attribute" in capsys.readouterr().err
    assert _parse_attrs(["top=1,ink=0", "wide=1"]) == {"top": 1, "ink": 0, "wide": 1}
    with pytest.raises(ValueError, match="NAME=CLASS"):
        _parse_attrs(["top"])
