"""Per-sample stiffness metrics of one residual block (attnkit's own definitions).

Every function takes float tensors of the model's dtype and returns a float64 ``(N,)`` tensor; a zero
denominator gives NaN. None of these is known to be the "Neural Stiffness Index" of Understanding
Self-attention Mechanism via Dynamical System Perspective (arXiv:2308.09939), whose definition is not
public [inferred].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "METRICS",
    "per_sample_norm",
    "safe_ratio",
    "jacobian_norm",
    "stiffness_ratio_exact",
    "EXACT_LIMIT",
]

METRICS = ("relative_increment", "branch_ratio", "secant_lipschitz", "jacobian_norm", "stiffness_ratio_exact")
"""The metric names: attnkit stiffness metrics, not the paper's (whose definition is unknown)."""

EXACT_LIMIT = 4096
"""Largest feature size ``D = C·H·W`` for which ``stiffness_ratio_exact`` builds the full Jacobian."""


def per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over every dimension but the first: ``(N, ...) -> (N,)`` float64."""
    return t.detach().double().flatten(1).norm(dim=1)


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with NaN where ``den == 0`` (never inf)."""
    out = num / den
    return torch.where(den == 0, torch.full_like(out, float("nan")), out)


def jacobian_norm(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    iters: int,
    tol: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Largest singular value of ``∂fn/∂x`` at ``x``, per sample, by power iteration on ``JᵀJ``.

    ``fn`` must act on each sample independently (eval mode), so the batch Jacobian is block-diagonal
    and one ``jvp``/``vjp`` pair serves every sample. Iterates are normalised per sample; the loop stops
    when every sample's estimate changes by less than ``tol`` (relative) or after ``iters`` steps.

    Args:
        fn: ``(N, ...) -> (N, ...)``.
        x: the point ``(N, ...)``.
        iters: the most power iterations (each one ``jvp`` and one ``vjp``).
        tol: relative change that stops the iteration.
        generator: seeds the random start vectors.

    Returns:
        ``(N,)`` float64 estimates of ``σ_max``.
    """
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (x.dim() - 1)))
    est = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    shape = (-1, *([1] * (x.dim() - 1)))
    for _ in range(max(1, iters)):
        _, jv = torch.func.jvp(fn, (x,), (v,))
        _, vjp_fn = torch.func.vjp(fn, x)
        (w,) = vjp_fn(jv)
        new = per_sample_norm(jv)
        done = bool(((new - est).abs() <= tol * new.abs().clamp_min(1e-300)).all())
        est = new
        v = w / w.flatten(1).norm(dim=1).clamp_min(1e-30).view(shape)
        if done:
            break
    return est


def stiffness_ratio_exact(
    block_fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """``max|Re λ| / min|Re λ|`` of the full block Jacobian ``∂x_{t+1}/∂x_t``, per sample.

    Args:
        block_fn: ``block_fn(z, n)`` maps sample ``n``'s input ``z`` of shape ``(1, C, H, W)`` to the block
            output of the same shape (``merge(F(z), z)``, the whole identity block).
        x: ``(N, C, H, W)`` with ``C·H·W <= EXACT_LIMIT``.

    Returns:
        ``(N,)`` float64; ``inf`` where the smallest ``|Re λ|`` is 0.

    Raises:
        ValueError: ``C·H·W`` above :data:`EXACT_LIMIT`.
    """
    d = x[0].numel()
    if d > EXACT_LIMIT:
        raise ValueError(
            f"stiffness_ratio_exact builds the full {d}x{d} Jacobian; it is limited to D = C*H*W <= "
            f"{EXACT_LIMIT} (got {tuple(x.shape[1:])})"
        )
    out = []
    for n in range(x.shape[0]):
        jac = torch.func.jacrev(lambda z, n=n: block_fn(z, n))(x[n : n + 1]).reshape(d, d).double()
        re = torch.linalg.eigvals(jac).real.abs()
        lo, hi = re.min(), re.max()
        out.append(torch.tensor(float("inf"), dtype=torch.float64) if lo == 0 else (hi / lo).cpu())
    return torch.stack(out).to(x.device)
