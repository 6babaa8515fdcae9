"""The EAN search: REINFORCE over connection schemes with an EMA baseline, RND bonus and replay.

One step (the official EAN search loop): sample K schemes from the policy; reward each by
``R = Acc + λ·sparsity − c`` (Acc in percent, from any evaluator, production uses the frozen supernet on
a held-out split); add the same RND bonus B to all K rewards; update the EMA baseline with the mean
bonused reward; take an on-policy Adam step on ``−(1/K) Σ_s adv_s Σ_b log π`` (and one on B for the RND
predictor); then, from step ``replay_start`` on, one clipped-ratio replay step on a random buffer entry.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network.

Deviations:
    - Factorised policy stated explicitly; MLP parametrisation kept (see ``controller``).
    - No tanh logit clip by default (official clip is dead code).
    - Stage lengths are taken from the model (officially hard-coded to (3, 4, 6, 3)).
    - RND target frozen.
    - Reward caching: Acc is evaluated once per distinct scheme (exact: evaluation is deterministic).
    - Full-scheme monitoring of the supernet (officially the all-zero scheme was logged).
    - A winner is selected by ``select`` ("mode" | "best" | "last"); the official code names none.
    - Attention modules keep their own init (officially the backbone loop re-initialised shared SE).
    - **Kept**: the replay advantage uses the raw stored reward (no bonus) against the bonus-inclusive
      baseline, as in the official code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .._config import dataclass_from_dict
from ..models import ConnectionScheme
from .controller import RNDBonus, SchemePolicy, on_policy_loss, replay_loss
from .records import SampleRecord, SearchResult, StepRecord

__all__ = [
    "SearchConfig",
    "StepRecord",
    "SampleRecord",
    "SearchResult",
    "EANSearch",
]


@dataclass
class SearchConfig:
    """Settings of :class:`EANSearch` (defaults = the official ImageNet search).

    Attributes:
        steps: search steps (K evaluations each).
        samples_per_step: K (1 sample + ``validate_size`` 2 officially).
        temperature, parametrization, logit_clip: the policy (see :class:`SchemePolicy`).
        policy_lr: Adam lr of the policy.
        sparsity_weight: λ; a dropped block is worth λ/L accuracy points.
        reward_offset: c, subtracted from every reward (cancels exactly; kept for log parity).
        ema_decay: baseline EMA decay.
        rnd, rnd_hidden, rnd_out_per_block, rnd_lr: the RND bonus and its predictor's Adam lr.
        replay, replay_start, replay_buffer, replay_clip, replay_weight: off-policy replay from step
            ``replay_start`` on, FIFO capacity, ratio clamp ``[1−clip, 1+clip]`` and loss weight.
        grad_clip: max grad norm of the policy (0 = off, official).
        cache_rewards: evaluate each distinct scheme once.
        select: the returned ``scheme``: ``"mode"`` (argmax of the final policy), ``"best"`` (highest raw
            reward seen) or ``"last"`` (first sample of the last step).
        seed: seeds the policy/RND init, the sampler and the replay draw (official 666).
    """

    steps: int = 300
    samples_per_step: int = 3
    temperature: float = 5.0
    parametrization: str = "mlp"
    policy_lr: float = 0.05
    sparsity_weight: float = 2.0
    reward_offset: float = 54.0
    ema_decay: float = 0.95
    rnd: bool = True
    rnd_hidden: int = 32
    rnd_out_per_block: int = 4
    rnd_lr: float = 0.05
    replay: bool = True
    replay_start: int = 10
    replay_buffer: int = 30
    replay_clip: float = 0.1
    replay_weight: float = 0.1
    grad_clip: float = 0.0
    logit_clip: float | None = None
    cache_rewards: bool = True
    select: str = "mode"
    seed: int = 666

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ValueError on an impossible setting (names the field); run on construction."""
        for k in ("policy_lr", "temperature"):
            v = getattr(self, k, 1.0)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be a finite number > 0, got {v!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.samples_per_step < 1:
            raise ValueError(f"samples_per_step must be >= 1, got {self.samples_per_step}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.replay_buffer < 1:
            raise ValueError(f"replay_buffer must be >= 1, got {self.replay_buffer}")
        if self.select not in ("mode", "best", "last"):
            raise ValueError(f"select must be 'mode', 'best' or 'last', got {self.select!r}")
        if self.replay_clip < 0:
            raise ValueError(f"replay_clip must be >= 0, got {self.replay_clip}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        """Build from a dict of fields (strings converted) via :func:`attnkit._config.dataclass_from_dict`.

        Raises:
            ValueError: unknown keys (the message lists the valid ones).
            TypeError: a value of the wrong type (the message names the field).
        """
        return dataclass_from_dict(cls, d)


class EANSearch:
    """The EAN policy-gradient search over connection schemes (resumable).

    Args:
        evaluator: ``scheme -> accuracy in percent``; tests pass a synthetic function, production a
            :class:`~attnkit.search.HoldoutEvaluator` on the frozen supernet.
        blocks_per_stage: the model's stage lengths (L = their sum).
        config: a :class:`SearchConfig`.

    Raises:
        ValueError: a bad config or ``blocks_per_stage``.

    Reference:
        EAN (arXiv:2011.14058), github.com/gbup-group/EAN-efficient-attention-network (search script).

    Deviations:
        See the module docstring; rewards and the baseline are float64, advantages are cast to the
        policy dtype (fp32).
    """

    def __init__(
        self,
        evaluator: Callable[[ConnectionScheme], float],
        blocks_per_stage: Sequence[int],
        config: SearchConfig | None = None,
    ):
        self.config = cfg = config or SearchConfig()
        cfg.validate()
        self.evaluator = evaluator
        self.blocks_per_stage = ConnectionScheme.full(blocks_per_stage).blocks_per_stage
        L = sum(self.blocks_per_stage)
        self.num_blocks = L
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.policy = SchemePolicy(
                L, parametrization=cfg.parametrization, temperature=cfg.temperature, logit_clip=cfg.logit_clip
            )
            self.rnd = RNDBonus(L, cfg.rnd_hidden, cfg.rnd_out_per_block) if cfg.rnd else None
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr)
        self.rnd_opt = torch.optim.Adam(self.rnd.predictor.parameters(), lr=cfg.rnd_lr) if self.rnd else None
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.t = 0
        self.baseline: float | None = None
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.cache: dict[str, float] = {}
        self.history: list[StepRecord] = []
        self.samples: list[SampleRecord] = []
        self.num_evaluations = 0

    # ------------------------------------------------------------------ one step
    def _accuracy(self, scheme: ConnectionScheme) -> tuple[float, bool]:
        key = scheme.bits
        if self.config.cache_rewards and key in self.cache:
            return self.cache[key], True
        acc = float(self.evaluator(scheme))
        if not math.isfinite(acc):
            raise ValueError(f"evaluator returned a non-finite accuracy {acc} for scheme {scheme}")
        self.num_evaluations += 1
        if self.config.cache_rewards:
            self.cache[key] = acc
        return acc, False

    def step(self) -> StepRecord:
        """Run one search step and return its record."""
        cfg, t = self.config, self.t
        K = cfg.samples_per_step
        actions, log_probs = self.policy.sample(K, self.generator)  # (K, L), (K, L)
        q = log_probs.detach().exp()  # (K, L) probability of each sampled action
        schemes = [ConnectionScheme.from_bits(a.tolist(), self.blocks_per_stage) for a in actions]
        accs, raw = [], []
        for i, s in enumerate(schemes):
            acc, cached = self._accuracy(s)
            r = acc + cfg.sparsity_weight * s.sparsity - cfg.reward_offset
            accs.append(acc)
            raw.append(r)
            self.samples.append(SampleRecord(t, i, str(s), s.num_connected, acc, s.sparsity, r, cached))
        rewards = torch.tensor(raw, dtype=torch.float64)  # (K,)
        self.buffer.append((actions.clone(), rewards.clone(), q.clone()))
        if len(self.buffer) > cfg.replay_buffer:
            self.buffer.pop(0)

        bonus_t = self.rnd(actions.float()) if self.rnd is not None else None
        bonus = float(bonus_t.detach()) if bonus_t is not None else 0.0
        bonused = rewards + bonus
        m = float(bonused.mean())
        self.baseline = (
            m if self.baseline is None else cfg.ema_decay * self.baseline + (1 - cfg.ema_decay) * m
        )
        adv = (bonused - self.baseline).to(log_probs.dtype)  # (K,)

        loss = on_policy_loss(log_probs, adv)
        self.policy_opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
        self.policy_opt.step()
        if bonus_t is not None:
            self.rnd_opt.zero_grad(set_to_none=True)
            bonus_t.backward()
            self.rnd_opt.step()

        rloss = None
        if cfg.replay and t >= cfg.replay_start:
            j = int(torch.randint(len(self.buffer), (1,), generator=self.generator))
            a_old, r_old, q_old = self.buffer[j]
            adv_old = (r_old - self.baseline).to(log_probs.dtype)  # raw reward vs bonused baseline (kept)
            lp = self.policy.log_prob(a_old)
            rl = replay_loss(lp, q_old, adv_old, clip=cfg.replay_clip, weight=cfg.replay_weight)
            self.policy_opt.zero_grad(set_to_none=True)
            rl.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            self.policy_opt.step()
            rloss = float(rl.detach())

        rec = StepRecord(
            step=t,
            loss=float(loss.detach()),
            replay_loss=rloss,
            baseline=float(self.baseline),
            reward=raw[0],
            scheme=str(schemes[0]),
            accuracy=accs[0],
            sparsity=schemes[0].sparsity,
            rnd_bonus=bonus,
            mean_action_prob=float(q.mean()),
            rewards=[float(r) for r in raw],
            connect_probs=[round(float(p), 6) for p in self.policy.connect_probs().detach()],
        )
        self.history.append(rec)
        self.t += 1
        return rec

    # ------------------------------------------------------------------ loop and result
    def run(
        self, steps: int | None = None, callback: Callable[[EANSearch, StepRecord], None] | None = None
    ) -> SearchResult:
        """Run until ``steps`` (default ``config.steps``) steps are done in total, then return the result.

        ``callback(search, record)`` is called after every step (progress, checkpoints).
        """
        total = self.config.steps if steps is None else int(steps)
        while self.t < total:
            rec = self.step()
            if callback is not None:
                callback(self, rec)
        return self.result()

    def mode_scheme(self) -> ConnectionScheme:
        """Per-block argmax of the current policy."""
        return ConnectionScheme.from_bits(self.policy.mode().tolist(), self.blocks_per_stage)

    def result(self) -> SearchResult:
        """The current :class:`SearchResult` (selection per ``config.select``)."""
        mode = self.mode_scheme()
        best, best_r = None, -math.inf
        for r in self.samples:
            if r.reward > best_r:
                best, best_r = r.scheme, r.reward
        best_s = ConnectionScheme.parse(best, self.blocks_per_stage) if best is not None else None
        last = (
            ConnectionScheme.parse(self.history[-1].scheme, self.blocks_per_stage) if self.history else None
        )
        chosen = {"mode": mode, "best": best_s, "last": last}[self.config.select] or mode
        return SearchResult(
            chosen, mode, best_s, best_r, last, list(self.history), list(self.samples), self.config.select
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-exactly.

        Returns:
            Policy, RND, both Adam states, buffer, baseline, sampler RNG, cache and logs, as tensors
            and plain containers only (so it loads with ``torch.load(..., weights_only=True)``).
        """
        return {
            "config": asdict(self.config),
            "blocks_per_stage": self.blocks_per_stage,
            "t": self.t,
            "policy": self.policy.state_dict(),
            "policy_opt": self.policy_opt.state_dict(),
            "rnd": self.rnd.state_dict() if self.rnd else None,
            "rnd_opt": self.rnd_opt.state_dict() if self.rnd_opt else None,
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "buffer": [tuple(x.clone() for x in e) for e in self.buffer],
            "cache": dict(self.cache),
            "history": [asdict(r) for r in self.history],
            "samples": [asdict(r) for r in self.samples],
            "num_evaluations": self.num_evaluations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: the state belongs to a model with different ``blocks_per_stage``.
        """
        if tuple(state["blocks_per_stage"]) != self.blocks_per_stage:
            raise ValueError(
                f"search state has blocks_per_stage {tuple(state['blocks_per_stage'])}, "
                f"this search has {self.blocks_per_stage}"
            )
        self.policy.load_state_dict(state["policy"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        if self.rnd is not None and state.get("rnd") is not None:
            self.rnd.load_state_dict(state["rnd"])
            self.rnd_opt.load_state_dict(state["rnd_opt"])
        self.generator.set_state(state["generator"])
        self.t = int(state["t"])
        self.baseline = state["baseline"]
        self.buffer = [tuple(x.clone() for x in e) for e in state["buffer"]]
        self.cache = dict(state["cache"])
        self.history = [StepRecord(**r) for r in state["history"]]
        self.samples = [SampleRecord(**r) for r in state["samples"]]
        self.num_evaluations = int(state.get("num_evaluations", 0))
