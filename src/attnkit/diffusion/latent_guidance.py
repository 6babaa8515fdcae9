"""Latent classifier guidance (LCG): compositional sampling and sequential editing in any generator's latent space.

Bring latents of your own generator (N, d) with binary attribute labels; standardise them; train a
:class:`LatentDenoiser` and one :class:`LatentClassifier` per attribute; then sample with several
attributes at once (AND) or edit latents one attribute after another, and decode with your generator::

    sched = DDPMSchedule()
    den = LatentDenoiser(d); train_latent_ddpm(den, z, sched, steps=20_000)
    clfs = {k: LatentClassifier(d) for k in labels}
    for k, c in clfs.items(): train_latent_classifier(c, z, labels[k], sched, steps=5_000)
    lcg = LatentClassifierGuidance(den, clfs, sched)
    z_new = lcg.sample(64, {"smile": 1, "glasses": 1}, scales=2.0)
    z_ed = lcg.edit(z_src, {"smile": 0}, preserve=1.0)     # keeps the other attributes

Reference:
    Shi, Ni, Li, Han, Liang, Min, "Exploring Compositional Visual Generation with Latent Classifier
    Guidance", CVPR 2023 Workshops, arXiv 2304.12536; official code: none found.

Deviations:
    Only the abstract is available. Everything below is a labelled reconstruction: the guided noise
    ε̂ = ε_θ − √(1−ᾱ_t)·Σ_k s_k ∇log p_φk(y_k* | z_t, t) [inferred, the standard classifier-guidance form
    of Dhariwal & Nichol, arXiv 2105.05233], the preservation term γ·(z_t − √ᾱ_t z_src)/√(1−ᾱ_t) and the
    keep terms [inferred], the editing start t0 = ⌊τT⌋ with forward noising or DDIM inversion [inferred].
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .._io import atomic_torch_save, safe_torch_load
from .ddpm import DDPMSchedule
from .latent_guidance_models import (
    LatentClassifier,
    LatentDenoiser,
    arithmetic_betas,
    fit_linear_directions,
    fit_linear_probes,
    linear_arithmetic_edit,
    train_latent_classifier,
    train_latent_ddpm,
)

__all__ = [
    "LatentDenoiser",
    "LatentClassifier",
    "train_latent_ddpm",
    "train_latent_classifier",
    "LatentClassifierGuidance",
    "linear_arithmetic_edit",
    "fit_linear_directions",
    "fit_linear_probes",
    "arithmetic_betas",
    "save_latent_guidance",
    "load_latent_guidance",
]


class LatentClassifierGuidance:
    """Guided DDIM sampling and editing with a latent DDPM and time-dependent latent classifiers.

    Args:
        denoiser: ε_θ(z_t, t), (B, d), (B,) → (B, d).
        classifiers: attribute name → p_φ(y | z_t, t), (B, d), (B,) → logits (B, num_classes). They are put
            in eval mode.
        schedule: the :class:`attnkit.diffusion.DDPMSchedule` the models were trained with; sampling uses
            its diffusers ``DDIMScheduler``.
        num_inference_steps: DDIM steps over the full chain (editing runs the steps below t0).

    Raises:
        TypeError: a schedule that is not a ``DDPMSchedule``.

    Reference:
        Latent classifier guidance, arXiv 2304.12536 (no official code); classifier guidance, Dhariwal &
        Nichol, arXiv 2105.05233; DDIM, arXiv 2010.02502.

    Deviations:
        A reconstruction [inferred]: see the module docstring. The paper's sampler, scales and preservation
        term are unknown.
    """

    def __init__(
        self,
        denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        classifiers: Mapping[str, nn.Module],
        schedule: DDPMSchedule,
        num_inference_steps: int = 50,
    ):
        if not isinstance(schedule, DDPMSchedule):
            raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
        self.denoiser = denoiser
        self.classifiers = dict(classifiers)
        for c in self.classifiers.values():
            c.eval()
        self.schedule = schedule
        self.num_inference_steps = int(num_inference_steps)

    # -- checks -------------------------------------------------------------------------------------------
    def _targets(self, targets: Mapping[str, int]) -> dict[str, int]:
        out = {}
        for k, y in targets.items():
            if k not in self.classifiers:
                raise KeyError(f"unknown attribute {k!r}; known: {sorted(self.classifiers)}")
            n = getattr(self.classifiers[k], "num_classes", 2)
            try:
                y_int = operator.index(y)
            except TypeError:
                y_int = -1
            if not 0 <= y_int < n:
                raise ValueError(f"targets[{k!r}] must be a class in 0..{n - 1}, got {y!r}")
            out[k] = y_int
        return out

    @staticmethod
    def _scales(scales: Mapping[str, float] | float, names) -> dict[str, float]:
        if isinstance(scales, Mapping):
            missing = set(scales) - set(names)
            if missing:
                raise KeyError(f"scales for attributes without a target: {sorted(missing)}")
            return {k: float(scales.get(k, 1.0)) for k in names}
        return {k: float(scales) for k in names}

    def _timesteps(self) -> list[int]:
        sch = self.schedule.sample_scheduler
        sch.set_timesteps(self.num_inference_steps)
        return [int(t) for t in sch.timesteps]

    # -- the guided noise -----------------------------------------------------------------------------------
    def guidance_gradient(
        self, z: torch.Tensor, t: int, terms: Sequence[tuple[str, torch.Tensor | int, float]]
    ) -> torch.Tensor:
        """Σ s·∇_z log p_φ(y | z, t) over ``(name, y, s)`` terms (autograd on a detached z; eval mode).

        Args:
            z: (B, d) noisy latents.
            t: the integer timestep.
            terms: ``(attribute, class (int or (B,) tensor), scale)``.

        Returns:
            (B, d) gradient (zeros when every scale is 0).
        """
        terms = [x for x in terms if x[2] != 0.0]
        if not terms:
            return torch.zeros_like(z)
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            tt = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
            total = zz.new_zeros(())
            for name, y, s in terms:
                logp = torch.log_softmax(self.classifiers[name](zz, tt), dim=-1)  # (B, C)
                yy = torch.as_tensor(y, device=z.device).long().expand(z.shape[0])
                total = total + s * logp.gather(1, yy[:, None]).sum()
            (grad,) = torch.autograd.grad(total, zz)
        return grad

    def guided_eps(
        self,
        z: torch.Tensor,
        t: int,
        terms: Sequence[tuple[str, torch.Tensor | int, float]] = (),
        z_src: torch.Tensor | None = None,
        preserve: float = 0.0,
    ) -> torch.Tensor:
        """ε̂ = ε_θ − √(1−ᾱ_t)·Σ s ∇log p_φ(y | z_t, t) + γ·(z_t − √ᾱ_t·z_src)/√(1−ᾱ_t).

        Args:
            z: (B, d) noisy latents z_t.
            t: the integer timestep.
            terms: classifier terms ``(attribute, class, scale)`` (edit targets and keep terms).
            z_src: (B, d) source latents of the preservation term.
            preserve: γ (0 leaves the term out).

        Returns:
            (B, d) guided noise prediction.

        Deviations:
            The preservation term is the score of N(z_t; √ᾱ_t·z_src, (1−ᾱ_t)·I) scaled by γ [inferred].
        """
        ab = self.schedule.alphas_cumprod[int(t)].to(z)
        tt = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        with torch.no_grad():
            eps = self.denoiser(z, tt)
            eps = eps.sample if hasattr(eps, "sample") else eps
        if any(s != 0.0 for _, _, s in terms):
            eps = eps - (1 - ab).sqrt() * self.guidance_gradient(z, t, terms)
        if preserve != 0.0:
            if z_src is None:
                raise ValueError("preserve != 0 needs z_src")
            eps = eps + preserve * (z - ab.sqrt() * z_src) / (1 - ab).sqrt()
        return eps

    def _reverse(self, z, timesteps, terms_fn, z_src=None, preserve=0.0, eta=0.0, generator=None):
        sch = self.schedule.sample_scheduler
        for t in timesteps:
            eps = self.guided_eps(z, t, terms_fn(z, t), z_src=z_src, preserve=preserve)
            z = sch.step(eps, t, z, eta=eta, generator=generator).prev_sample
        return z

    # -- public API ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        targets: Mapping[str, int],
        scales: Mapping[str, float] | float = 1.0,
        generator: torch.Generator | None = None,
        *,
        dim: int | None = None,
        eta: float = 0.0,
        dtype: torch.dtype = torch.float32,
        x_T: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compositional generation (AND of ``targets``) by guided DDIM from z_T ~ N(0, I).

        With every scale 0 this is bit-identical to ``DDPMSchedule.sample`` with the same generator.

        Args:
            n: samples.
            targets: attribute → class; all must hold.
            scales: one guidance scale s for all, or attribute → s (missing ones 1.0).
            generator: the stream of z_T (and of the η noise).
            dim: latent width (default: the denoiser's ``config["dim"]``).
            eta: DDIM η (0 deterministic, 1 DDPM-like).
            dtype: of the samples.
            x_T: the starting noise instead of drawing it.

        Shape:
            Returns (n, d) standardised latents.

        Returns:
            The samples.

        Raises:
            KeyError: an unknown attribute. ValueError: a class outside ``num_classes``.
        """
        tg = self._targets(targets)
        sc = self._scales(scales, tg)
        terms = [(k, y, sc[k]) for k, y in tg.items()]
        d = dim if dim is not None else self.denoiser.config["dim"]
        dev = generator.device if generator is not None else torch.device("cpu")
        z = x_T if x_T is not None else torch.randn((n, d), generator=generator, device=dev, dtype=dtype)
        return self._reverse(z, self._timesteps(), lambda z, t: terms, eta=eta, generator=generator)

    @torch.no_grad()
    def source_labels(
        self, z_src: torch.Tensor, names: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Attribute classes of clean latents: argmax of p_φ(· | z_src, t = 0) (0.5 threshold for binary).

        Returns:
            name → (B,) int64 classes.
        """
        names = list(self.classifiers) if names is None else list(names)
        t0 = torch.zeros(z_src.shape[0], dtype=torch.long, device=z_src.device)
        return {k: self.classifiers[k](z_src, t0).argmax(-1) for k in names}

    def edit_timesteps(self, t0: float) -> list[int]:
        """The DDIM timesteps ≤ ⌊τ·T⌋ that an edit reverses (descending).

        Raises:
            ValueError: τ outside (0, 1] or no step below it.
        """
        if not 0.0 < float(t0) <= 1.0:
            raise ValueError(f"t0 must be in (0, 1], got {t0}")
        cut = int(float(t0) * self.schedule.num_train_timesteps)
        ts = [t for t in self._timesteps() if t <= cut]
        if not ts:
            raise ValueError(f"t0={t0} is below the first DDIM step; raise t0 or num_inference_steps")
        return ts

    @torch.no_grad()
    def invert_ddim(self, z_src: torch.Tensor, timesteps: Sequence[int]) -> torch.Tensor:
        """Deterministic DDIM inversion of clean latents up to ``max(timesteps)``.

        Each step from s to t uses ε = ε_θ(z_s, max(s, 0)) (s = −1 for the clean latent, ᾱ = 1):
        x̂₀ = (z_s − √(1−ᾱ_s)·ε)/√ᾱ_s, z_t = √ᾱ_t·x̂₀ + √(1−ᾱ_t)·ε.

        Args:
            z_src: (B, d) clean latents.
            timesteps: the descending DDIM timesteps the edit will reverse.

        Returns:
            (B, d) z at ``timesteps[0]``.

        Deviations:
            The ε-evaluation point (the timestep being left) is a choice [inferred].
        """
        ac = self.schedule.alphas_cumprod
        z, s = z_src, -1
        for t in sorted(int(x) for x in timesteps):
            tt = torch.full((z.shape[0],), max(s, 0), dtype=torch.long, device=z.device)
            eps = self.denoiser(z, tt)
            eps = eps.sample if hasattr(eps, "sample") else eps
            a_s = ac[s].to(z) if s >= 0 else z.new_ones(())
            a_t = ac[t].to(z)
            x0 = (z - (1 - a_s).sqrt() * eps) / a_s.sqrt()
            z, s = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps, t
        return z

    @torch.no_grad()
    def edit(
        self,
        z_src: torch.Tensor,
        targets: Mapping[str, int],
        scales: Mapping[str, float] | float = 1.0,
        t0: float = 0.5,
        preserve: float = 1.0,
        keep: Sequence[str] | None = None,
        keep_scale: float = 1.0,
        inversion: str = "noise",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Edit latents towards ``targets`` while a preservation term and keep classifiers hold the rest.

        Args:
            z_src: (B, d) standardised source latents.
            targets: attribute → class to reach.
            scales: guidance scale(s) of the edit terms.
            t0: τ: the edit starts at t = ⌊τ·T⌋ (its DDIM step).
            preserve: γ of the Gaussian preservation term (0 = off).
            keep: attributes pinned at their source classes (``None``: all attributes not edited; ``[]``:
                none).
            keep_scale: the scale of the keep terms.
            inversion: ``"noise"`` (forward noising with ``generator``) or ``"ddim"`` (deterministic).
            generator: the noise stream of ``"noise"``.

        Shape:
            (B, d) → (B, d).

        Returns:
            The edited latents.

        Raises:
            KeyError: unknown attributes. ValueError: a bad class, ``t0`` or ``inversion``.

        Deviations:
            The preservation term, the keep terms and their defaults are a reconstruction [inferred].
        """
        if inversion not in ("noise", "ddim"):
            raise ValueError(f"inversion must be 'noise' or 'ddim', got {inversion!r}")
        tg = self._targets(targets)
        sc = self._scales(scales, tg)
        keep = [k for k in self.classifiers if k not in tg] if keep is None else list(keep)
        self._targets({k: 0 for k in keep})  # names checked
        src_y = self.source_labels(z_src, keep)
        terms = [(k, y, sc[k]) for k, y in tg.items()] + [(k, src_y[k], float(keep_scale)) for k in keep]
        ts = self.edit_timesteps(t0)
        if inversion == "ddim":
            z = self.invert_ddim(z_src, ts)
        else:
            dev = generator.device if generator is not None else z_src.device
            noise = torch.randn(z_src.shape, generator=generator, device=dev, dtype=z_src.dtype).to(
                z_src.device
            )
            z = self.schedule.add_noise(z_src, noise, torch.full((z_src.shape[0],), ts[0], dtype=torch.long))
        return self._reverse(z, ts, lambda z, t: terms, z_src=z_src, preserve=preserve)

    def edit_sequence(
        self, z_src: torch.Tensor, steps: Sequence[Mapping[str, int]], **kwargs
    ) -> list[torch.Tensor]:
        """Sequential editing: each edit in ``steps`` starts from the previous result.

        Args:
            z_src: (B, d) source latents.
            steps: the targets of each edit, in order.
            **kwargs: passed to :meth:`edit` (the keep labels are re-read from each edit's input).

        Returns:
            The latents after each edit, a list of (B, d).
        """
        out, z = [], z_src
        for targets in steps:
            z = self.edit(z, targets, **kwargs)
            out.append(z)
        return out


def save_latent_guidance(
    path,
    denoiser: LatentDenoiser,
    classifiers: Mapping[str, LatentClassifier],
    schedule: DDPMSchedule,
    **meta,
) -> None:
    """Save a latent denoiser, its classifiers and the schedule's settings (atomic; ``weights_only`` loads).

    Args:
        path: the ``.pt`` file.
        denoiser: a :class:`LatentDenoiser`.
        classifiers: name → :class:`LatentClassifier`.
        schedule: the training schedule (T and the β range are stored).
        **meta: extra plain values (tensors, numbers, strings) stored beside them.
    """
    tr = schedule.train_scheduler.config
    atomic_torch_save(
        {
            "denoiser": {"config": denoiser.config, "state_dict": denoiser.state_dict()},
            "classifiers": {
                k: {"config": c.config, "state_dict": c.state_dict()} for k, c in classifiers.items()
            },
            "schedule": dict(
                num_train_timesteps=int(tr.num_train_timesteps),
                beta_start=float(tr.beta_start),
                beta_end=float(tr.beta_end),
            ),
            **meta,
        },
        path,
    )


def load_latent_guidance(path, num_inference_steps: int = 50) -> tuple[LatentClassifierGuidance, dict]:
    """Load :func:`save_latent_guidance` output as a ready :class:`LatentClassifierGuidance` (eval mode).

    Returns:
        ``(guidance, the whole record)``.

    Raises:
        FileNotFoundError / attnkit._io.CheckpointError: a missing or unsafe file.
    """
    ck = safe_torch_load(path, what="latent guidance models")
    den = LatentDenoiser(**ck["denoiser"]["config"])
    den.load_state_dict(ck["denoiser"]["state_dict"])
    clfs = {}
    for k, v in ck["classifiers"].items():
        clfs[k] = LatentClassifier(**v["config"])
        clfs[k].load_state_dict(v["state_dict"])
    lcg = LatentClassifierGuidance(den.eval(), clfs, DDPMSchedule(**ck["schedule"]), num_inference_steps)
    return lcg, ck
