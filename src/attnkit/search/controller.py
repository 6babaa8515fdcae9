"""The EAN controller: a factorised policy over connection schemes, its losses, and the RND bonus.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network
    (the search script's controller and RND networks). RND: Burda et al., "Exploration by Random
    Network Distillation", arXiv:1810.12894.

Deviations:
    - The official controller feeds a constant zero vector (the "previous action" it builds is never
      used), so it is a factorised distribution; it is implemented explicitly as that. The MLP
      parametrisation is kept as the default because it changes Adam's dynamics;
      ``parametrization="logits"`` is an option.
    - The official ``c·tanh`` logit clip is dead code (gated on an always-false comparison);
      ``logit_clip=None`` reproduces that, a float enables it.
    - The RND target network is frozen (``requires_grad=False``); officially it received gradients that
      were never applied. Behaviour is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SchemePolicy", "RNDBonus", "on_policy_loss", "replay_loss"]


class SchemePolicy(nn.Module):
    """Factorised categorical policy over L binary connection bits (the EAN controller).

    ``ℓ = f_θ(z) / T`` with ``z = 0 ∈ R^{input_size}`` and ``f_θ`` = Linear(input_size→hidden_size) →
    ReLU → Linear(hidden_size→2L), reshaped to (L, 2); ``π(a_b = k) = softmax(ℓ_b)_k`` and k = 1 means
    "connected". With ``parametrization="logits"``, ``f_θ(z)`` is a free (L, 2) parameter (zero init).

    Args:
        num_blocks: L.
        parametrization: ``"mlp"`` (official) or ``"logits"``.
        input_size: width of the constant zero input (official 20).
        hidden_size: hidden width of the MLP (official 50).
        temperature: T (official 5.0), divides the logits.
        logit_clip: None (official behaviour) or c > 0 for ``ℓ ← c·tanh(ℓ)`` after the temperature.
        device, dtype: factory arguments.

    Shape:
        ``logits()``: (L, 2); ``connect_probs()``: (L,); ``sample(k)``: actions (k, L) long and
        log-probs (k, L) with gradient.

    Raises:
        ValueError: ``num_blocks < 1``, an unknown parametrization, ``temperature <= 0`` or a
            non-positive ``logit_clip``.

    Reference:
        EAN (arXiv:2011.14058), official search script.

    Deviations:
        See the module docstring (factorised policy stated explicitly, no tanh clip by default).
    """

    def __init__(
        self,
        num_blocks: int,
        *,
        parametrization: str = "mlp",
        input_size: int = 20,
        hidden_size: int = 50,
        temperature: float = 5.0,
        logit_clip: float | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if int(num_blocks) < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if parametrization not in ("mlp", "logits"):
            raise ValueError(f"parametrization must be 'mlp' or 'logits', got {parametrization!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if logit_clip is not None and not logit_clip > 0:
            raise ValueError(f"logit_clip must be None or > 0, got {logit_clip}")
        fk = {"device": device, "dtype": dtype}
        self.num_blocks = int(num_blocks)
        self.parametrization = parametrization
        self.temperature = float(temperature)
        self.logit_clip = logit_clip
        if parametrization == "mlp":
            self.fc1 = nn.Linear(input_size, hidden_size, **fk)
            self.fc2 = nn.Linear(hidden_size, 2 * self.num_blocks, **fk)
            self.register_buffer("z", torch.zeros(input_size, **fk), persistent=False)
        else:
            self.theta = nn.Parameter(torch.zeros(self.num_blocks, 2, **fk))

    def logits(self) -> torch.Tensor:
        """The per-block logits ``ℓ`` of shape ``(L, 2)`` (column 1 = connected)."""
        if self.parametrization == "mlp":
            raw = self.fc2(F.relu(self.fc1(self.z))).view(self.num_blocks, 2)  # (L, 2)
        else:
            raw = self.theta
        lg = raw / self.temperature
        if self.logit_clip is not None:
            lg = self.logit_clip * torch.tanh(lg)
        return lg

    def forward(self) -> torch.Tensor:
        """Same as :meth:`logits`."""
        return self.logits()

    def connect_probs(self) -> torch.Tensor:
        """``P(a_b = 1)`` for every block, shape ``(L,)``."""
        return self.logits().softmax(-1)[:, 1]

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-action log-probabilities ``log π(a_{s,b})``, shape ``(k, L)``, differentiable.

        Raises:
            ValueError: ``actions`` not of shape (k, L).
        """
        if actions.dim() != 2 or actions.shape[1] != self.num_blocks:
            raise ValueError(f"actions must have shape (k, {self.num_blocks}), got {tuple(actions.shape)}")
        logp = self.logits().log_softmax(-1)  # (L, 2)
        idx = actions.long().to(logp.device)
        return logp.unsqueeze(0).expand(idx.shape[0], -1, -1).gather(2, idx.unsqueeze(2)).squeeze(2)  # (k, L)

    def sample(self, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``k`` i.i.d. schemes.

        Returns:
            ``(actions, log_probs)``: a LongTensor ``(k, L)`` of 0/1 bits and their log-probabilities
            ``(k, L)`` (with gradient).
        """
        with torch.no_grad():
            p1 = self.connect_probs().float().cpu()  # (L,)
            u = torch.rand(int(k), self.num_blocks, generator=generator)  # (k, L)
            actions = (u < p1).long()
        return actions, self.log_prob(actions)

    def mode(self) -> torch.Tensor:
        """The per-block argmax, a LongTensor ``(L,)`` (ties go to 0, "not connected")."""
        with torch.no_grad():
            return (self.connect_probs() > 0.5).long().cpu()


class RNDBonus(nn.Module):
    """Random Network Distillation novelty bonus over scheme vectors.

    A frozen random target L→hidden→ReLU→hidden→ReLU→(out_per_block·L) and a trainable predictor
    L→hidden→ReLU→(out_per_block·L); the bonus is the sum of squared differences over the batch.

    Args:
        num_blocks: L.
        hidden: hidden width (official 32).
        out_per_block: output width per block (official 4, i.e. 4L outputs).

    Shape:
        forward: actions ``(k, L)`` float 0/1 → scalar (sum over k and the 4L outputs).

    Reference:
        Burda et al., arXiv:1810.12894; EAN official search script.

    Deviations:
        The target is frozen (``requires_grad=False``); officially its gradients were computed but
        never applied.
    """

    def __init__(self, num_blocks: int, hidden: int = 32, out_per_block: int = 4):
        super().__init__()
        L, out = int(num_blocks), int(out_per_block) * int(num_blocks)
        self.target = nn.Sequential(
            nn.Linear(L, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
        )
        self.predictor = nn.Sequential(nn.Linear(L, hidden), nn.ReLU(), nn.Linear(hidden, out))
        for p in self.target.parameters():
            p.requires_grad_(False)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        """Summed squared prediction error of the frozen target's features (the novelty bonus).

        Args:
            actions: sampled schemes as 0/1 values.

        Shape:
            actions ``(K, L)`` → a scalar.

        Returns:
            The error summed over the ``K`` schemes.
        """
        x = actions.float()  # (k, L)
        return (self.target(x) - self.predictor(x)).pow(2).sum()


def on_policy_loss(log_probs: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``J_on = −(1/K) Σ_s adv_s · Σ_b log π(a_{s,b})``.

    Shape:
        log_probs (K, L), adv (K,) → scalar.
    """
    return -(adv.to(log_probs.dtype) * log_probs.sum(1)).mean()


def replay_loss(
    log_probs: torch.Tensor,
    old_probs: torch.Tensor,
    adv: torch.Tensor,
    *,
    clip: float = 0.1,
    weight: float = 0.1,
) -> torch.Tensor:
    """Clipped-ratio replay loss of the official code: ``−weight · min(S1, S2)``.

    ``S1 = (1/K) Σ ρ·log π·adv``, ``S2`` the same with ρ clamped to ``[1−clip, 1+clip]``, ρ detached.

    Because ρ is detached and multiplies log π, the clamp rescales the gradient instead of zeroing it
    (PPO-like, not textbook PPO).

    Shape:
        log_probs (K, L) with grad, old_probs (K, L), adv (K,) → scalar.
    """
    rho = (log_probs.exp() / old_probs).detach()  # (K, L)
    a = adv.to(log_probs.dtype).unsqueeze(1)  # (K, 1)
    k = log_probs.shape[0]
    s1 = (rho * log_probs * a).sum() / k
    s2 = (rho.clamp(1.0 - clip, 1.0 + clip) * log_probs * a).sum() / k
    return -weight * torch.minimum(s1, s2)
