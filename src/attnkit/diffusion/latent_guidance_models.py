"""Latent classifier guidance, the models.

The latent ε-denoiser, time-dependent latent classifiers, their trainers, linear probes and latent arithmetic.

Reference:
    Shi, Ni, Li, Han, Liang, Min, "Exploring Compositional Visual Generation with Latent Classifier
    Guidance", CVPR 2023 Workshops, arXiv 2304.12536; official code: none found.

Deviations:
    Only the abstract is available; the architectures below are a labelled reconstruction [inferred].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from .ddpm import DDPMSchedule
from .uvit import timestep_embedding

__all__ = [
    "LatentDenoiser",
    "LatentClassifier",
    "train_latent_ddpm",
    "train_latent_classifier",
    "fit_linear_probes",
    "fit_linear_directions",
    "arithmetic_betas",
    "linear_arithmetic_edit",
]


def _check_latents(latents: torch.Tensor, name: str = "latents") -> None:
    if not isinstance(latents, torch.Tensor) or latents.ndim != 2:
        raise ValueError(f"{name} must be a (N, d) tensor, got {getattr(latents, 'shape', type(latents))}")


class _Trunk(nn.Module):
    """Input Linear(d → hidden), ``depth`` residual blocks LN → Linear → (+ time) → SiLU → Linear."""

    def __init__(self, dim: int, hidden: int, depth: int, time_dim: int):
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 0 or time_dim < 2:
            raise ValueError(
                f"need dim, hidden >= 1, depth >= 0, time_dim >= 2; got {dim}, {hidden}, {depth}"
            )
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.fc1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.fc2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or t.shape != (z.shape[0],):
            raise ValueError(f"need z (B, d) and t (B,), got {tuple(z.shape)} and {tuple(t.shape)}")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim).to(z.dtype))  # (B, hidden)
        h = self.inp(z)  # (B, hidden)
        for ln, f1, f2 in zip(self.norms, self.fc1, self.fc2, strict=True):
            h = h + f2(nn.functional.silu(f1(ln(h)) + temb))
        return h


class LatentDenoiser(nn.Module):
    """The latent ε-predictor ε_θ(z_t, t): an MLP with residual blocks and a sinusoidal time embedding.

    Linear(d → hidden); ``depth`` residual blocks LayerNorm → Linear → (+ time embedding) → SiLU → Linear;
    the time embedding is sinusoidal (``time_dim``) followed by a 2-layer SiLU MLP; output
    Linear(hidden → d), zero-initialised, so the untrained model predicts ε̂ = 0 exactly.

    Args:
        dim: latent width d.
        hidden: block width.
        depth: residual blocks.
        time_dim: sinusoidal embedding width.

    Shape:
        (B, d), (B,) integer timesteps → (B, d).

    Raises:
        ValueError: non-positive widths, or inputs of the wrong shape.

    Reference:
        Latent classifier guidance, arXiv 2304.12536 (no official code).

    Deviations:
        The architecture is a reconstruction [inferred]; the paper's is unknown.
    """

    def __init__(self, dim: int, hidden: int = 512, depth: int = 4, time_dim: int = 128):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden, depth=depth, time_dim=time_dim)
        self.trunk = _Trunk(dim, hidden, depth, time_dim)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ (B, d)."""
        return self.out(self.trunk(z, t))


class LatentClassifier(nn.Module):
    """A time-dependent latent classifier p_φ(y | z_t, t): the :class:`LatentDenoiser` trunk, a linear head.

    Args:
        dim: latent width d.
        num_classes: classes of the attribute (2 for a binary attribute).
        hidden: block width.
        depth: residual blocks.
        time_dim: sinusoidal embedding width.

    Shape:
        (B, d), (B,) → logits (B, num_classes).

    Raises:
        ValueError: ``num_classes < 2`` or non-positive widths.

    Reference:
        Latent classifier guidance, arXiv 2304.12536 (no official code).

    Deviations:
        The architecture is a reconstruction [inferred].
    """

    def __init__(
        self, dim: int, num_classes: int = 2, hidden: int = 256, depth: int = 3, time_dim: int = 128
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.config = dict(dim=dim, num_classes=num_classes, hidden=hidden, depth=depth, time_dim=time_dim)
        self.num_classes = num_classes
        self.trunk = _Trunk(dim, hidden, depth, time_dim)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes)."""
        return self.head(self.trunk(z, t))


def _adam_steps(
    model: nn.Module,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator | None,
) -> list[float]:
    """``steps`` Adam steps (cosine-decayed lr) on ``loss_of(idx)``, idx drawn with replacement from ``n``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_of(torch.randint(0, n, (min(batch_size, n),), generator=generator))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


def train_latent_ddpm(
    denoiser: nn.Module,
    latents: torch.Tensor,
    schedule: DDPMSchedule,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ε_θ with the DDPM loss E‖ε − ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t)‖² (Adam, t uniform).

    Args:
        denoiser: e.g. a :class:`LatentDenoiser`.
        latents: standardised latents z₀ (N, d).
        schedule: the :class:`attnkit.diffusion.DDPMSchedule`.
        steps: Adam steps.
        batch_size: latents per step (with replacement).
        lr: Adam's learning rate (cosine-decayed to 0).
        generator: the stream of batches, t and ε.

    Returns:
        The loss of every step.

    Raises:
        ValueError: latents that are not (N, d), or ``steps < 1``.
    """
    _check_latents(latents)
    return _adam_steps(
        denoiser,
        lambda idx: schedule.loss(denoiser, latents[idx], generator),
        len(latents),
        steps,
        batch_size,
        lr,
        generator,
    )


def train_latent_classifier(
    classifier: nn.Module,
    latents: torch.Tensor,
    labels: torch.Tensor,
    schedule: DDPMSchedule,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train p_φ(y | z_t, t) with cross-entropy on noised latents z_t ~ q(z_t | z₀), t ~ U{0 … T−1}.

    Args:
        classifier: e.g. a :class:`LatentClassifier`.
        latents: standardised latents (N, d).
        labels: (N,) int64 classes.
        schedule: the DDPM schedule of the denoiser.
        steps: Adam steps.
        batch_size: latents per step.
        lr: Adam's learning rate (cosine-decayed).
        generator: the stream of batches, t and ε.

    Returns:
        The loss of every step.

    Raises:
        ValueError: shapes that do not match, or ``steps < 1``.
    """
    _check_latents(latents)
    if labels.shape != (latents.shape[0],):
        raise ValueError(f"labels must be ({latents.shape[0]},), got {tuple(labels.shape)}")

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        z0, y = latents[idx], labels[idx].long()
        t, noise = schedule.draw(z0, generator)
        return nn.functional.cross_entropy(classifier(schedule.add_noise(z0, noise, t), t), y)

    losses = _adam_steps(classifier, loss_of, len(latents), steps, batch_size, lr, generator)
    classifier.eval()
    return losses


def fit_linear_probes(
    latents: torch.Tensor, labels: Mapping[str, torch.Tensor], C: float = 1.0
) -> dict[str, tuple[torch.Tensor, float]]:
    """Binary logistic-regression probes ``logit = wᵀz + b`` per attribute (scikit-learn, L2, lbfgs).

    Args:
        latents: (N, d) latents.
        labels: attribute name → (N,) binary labels.
        C: inverse L2 strength.

    Returns:
        name → ``(w (d,) float64, b)``.

    Raises:
        ValueError: labels of the wrong length or not binary.
    """
    from sklearn.linear_model import LogisticRegression

    _check_latents(latents)
    x = latents.detach().double().cpu().numpy()
    out = {}
    for name, y in labels.items():
        y = torch.as_tensor(y).cpu()
        if y.shape != (len(x),) or not set(y.unique().tolist()) <= {0, 1}:
            raise ValueError(f"labels[{name!r}] must be ({len(x)},) binary, got {tuple(y.shape)}")
        lr = LogisticRegression(C=C, max_iter=2000).fit(x, y.numpy())
        out[name] = (torch.from_numpy(lr.coef_[0].copy()), float(lr.intercept_[0]))
    return out


def fit_linear_directions(
    latents: torch.Tensor, labels: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Unit normals of logistic-regression probes: the InterFaceGAN-style edit directions.

    Args:
        latents: (N, d) latents.
        labels: attribute name → (N,) binary labels.

    Returns:
        name → unit direction (d,) float64, pointing towards class 1.

    Raises:
        ValueError: see :func:`fit_linear_probes`.

    Reference:
        Shen et al., "Interpreting the Latent Space of GANs for Semantic Face Editing" (InterFaceGAN),
        arXiv 1907.10786; the reduction of latent classifier guidance to it is [inferred].
    """
    return {k: w / w.norm() for k, (w, _) in fit_linear_probes(latents, labels).items()}


def arithmetic_betas(
    z_src: torch.Tensor, probe: tuple[torch.Tensor, float], target: int, prob: float = 0.9
) -> torch.Tensor:
    """Per-item steps along the unit probe normal that lift the probe's probability of ``target`` to ``prob``.

    The step is 0 where the probe already gives ``target`` at least ``prob``.

    Args:
        z_src: (B, d) latents.
        probe: ``(w, b)`` from :func:`fit_linear_probes`.
        target: 0 or 1.
        prob: the probability to reach, in (0, 1).

    Returns:
        (B,) signed steps along ``w/‖w‖`` (negative for target 0).

    Raises:
        ValueError: a target that is not 0/1 or a ``prob`` outside (0, 1).
    """
    if target not in (0, 1) or not 0.0 < prob < 1.0:
        raise ValueError(f"need target in {{0, 1}} and 0 < prob < 1, got {target}, {prob}")
    w, b = probe
    w = w.to(z_src)
    logit = z_src @ w + b  # (B,)
    need = torch.logit(torch.tensor(prob, dtype=z_src.dtype))
    sign = 1.0 if target == 1 else -1.0
    return sign * (need - sign * logit).clamp_min(0) / w.norm()


def linear_arithmetic_edit(
    z_src: torch.Tensor,
    directions: Mapping[str, torch.Tensor],
    betas: Mapping[str, float | torch.Tensor],
) -> torch.Tensor:
    """Latent arithmetic z_src + Σ_k β_k·w_k, the limit of guided editing under the linear assumptions.

    Args:
        z_src: (B, d) source latents.
        directions: name → (d,) direction.
        betas: name → a step (a float, or a (B,) tensor of per-item steps).

    Shape:
        (B, d) → (B, d).

    Returns:
        The edited latents.

    Raises:
        KeyError: a name in ``betas`` without a direction (the message lists them).

    Reference:
        InterFaceGAN, arXiv 1907.10786; latent classifier guidance, arXiv 2304.12536 (the reduction is
        [reconstruction]).
    """
    _check_latents(z_src, "z_src")
    out = z_src.clone()
    for k, beta in betas.items():
        if k not in directions:
            raise KeyError(f"no direction for {k!r}; known: {sorted(directions)}")
        beta = torch.as_tensor(beta, dtype=z_src.dtype, device=z_src.device)
        out = out + (beta.reshape(-1, 1) if beta.ndim else beta) * directions[k].to(z_src)
    return out
