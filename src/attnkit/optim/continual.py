"""The small continual-learning protocol used to measure AlterSGD (split classes, task/class-incremental).

Classes are split into sessions, trained task- or class-incremental (LwF), and every session seen so far
is evaluated.

- **Task-incremental:** one shared 10-way layer, but each session's loss and prediction use only that
  session's classes (a 2-way head per session, the task id given at test time).
- **Class-incremental with LwF:** the loss is cross-entropy over all classes seen so far plus λ·T²·KL
  between the previous-session model's and the current model's softened logits (T = 2, λ = 1) on the
  old classes; prediction over all classes seen so far.

Reference:
    Li & Hoiem, "Learning without Forgetting", arXiv 1606.09282 (LwF); the split-dataset protocol of
    van de Ven & Tolias, "Three scenarios for continual learning", arXiv 1904.07734.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContinualCNN", "split_classes", "train_session", "session_accuracy", "PROTOCOLS"]

PROTOCOLS = ("task", "class")


class ContinualCNN(nn.Module):
    """conv 3×3 (1→16) → ReLU → pool → conv 3×3 (16→32) → ReLU → pool → FC 64 → ReLU → FC classes; no BN.

    105,866 parameters at 28×28 with 10 classes (Fashion-MNIST); 8,874 at 8×8 (digits).

    Args:
        in_chans: input channels.
        num_classes: output classes.
        img_size: input height = width (divisible by 4).

    Shape:
        ``(N, in_chans, img_size, img_size) -> (N, num_classes)``.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, img_size: int = 28) -> None:
        super().__init__()
        if img_size % 4:
            raise ValueError(f"img_size must be divisible by 4, got {img_size!r}")
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(32 * (img_size // 4) ** 2, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        h = self.features(x).flatten(1)  # (N, 32·(H/4)²)
        return self.fc2(F.relu(self.fc1(h)))


def split_classes(num_classes: int = 10, sessions: int = 5) -> list[tuple[int, ...]]:
    """Consecutive class groups: ``[(0, 1), (2, 3), ...]`` for 10 classes in 5 sessions.

    Raises:
        ValueError: ``num_classes`` is not a multiple of ``sessions``.
    """
    if sessions < 1 or num_classes % sessions:
        raise ValueError(f"num_classes ({num_classes}) must be a positive multiple of sessions ({sessions})")
    k = num_classes // sessions
    return [tuple(range(s * k, (s + 1) * k)) for s in range(sessions)]


def _logits_for(logits: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    return logits[:, list(classes)]  # (N, len(classes))


def _remap(y: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    table = torch.full((int(max(classes)) + 1,), -1, dtype=torch.long)
    table[list(classes)] = torch.arange(len(classes))
    return table[y]


def session_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    session: int,
    groups: Sequence[Sequence[int]],
    protocol: str,
    old_model: nn.Module | None = None,
    temperature: float = 2.0,
    lwf_lambda: float = 1.0,
) -> torch.Tensor:
    """The training loss of one batch in session ``session`` (see the module docstring)."""
    logits = model(x)
    if protocol == "task":
        cls = groups[session]
        return F.cross_entropy(_logits_for(logits, cls), _remap(y, cls))
    seen = [c for g in groups[: session + 1] for c in g]
    loss = F.cross_entropy(_logits_for(logits, seen), _remap(y, seen))
    if old_model is not None and session > 0:
        old = [c for g in groups[:session] for c in g]
        with torch.no_grad():
            target = F.softmax(_logits_for(old_model(x), old) / temperature, dim=1)
        logp = F.log_softmax(_logits_for(logits, old) / temperature, dim=1)
        loss = loss + lwf_lambda * temperature**2 * F.kl_div(logp, target, reduction="batchmean")
    return loss


def train_session(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    session: int,
    groups: Sequence[Sequence[int]],
    protocol: str = "task",
    steps: int = 600,
    batch_size: int = 64,
    old_model: nn.Module | None = None,
    generator: torch.Generator | None = None,
    sam_closure: bool = False,
) -> float:
    """Train one session for ``steps`` steps on random batches of ``(x, y)``.

    Calls ``optimizer.session_start(steps)`` when it exists (AlterSGD) and ``optimizer.step(closure)``
    when the optimizer has ``requires_closure`` set (Mirror Gradient).

    Args:
        model: the classifier.
        optimizer: any optimizer, a strategy wrapper, or SAM.
        x: the session's images ``(N, C, H, W)``.
        y: the session's labels ``(N,)``.
        session: the 0-based session index.
        groups: the class groups of all sessions (:func:`split_classes`).
        protocol: ``"task"`` or ``"class"`` (LwF when ``old_model`` is given).
        steps: optimizer steps.
        batch_size: images per step.
        old_model: the frozen previous-session model for LwF.
        generator: batch sampling generator.
        sam_closure: the optimizer is SAM-like: the first gradient is computed here, then
            ``optimizer.step(closure)`` recomputes it at the perturbed point (two passes per step).

    Returns:
        The mean loss of the last 50 steps.

    Raises:
        ValueError: unknown ``protocol``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    model.train()
    if callable(getattr(optimizer, "session_start", None)):
        optimizer.session_start(steps)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(y), (batch_size,), generator=generator)
        xb, yb = x[idx], y[idx]

        def closure(xb=xb, yb=yb):
            loss = session_loss(model, xb, yb, session, groups, protocol, old_model)
            loss.backward()
            return loss

        if getattr(optimizer, "requires_closure", False):  # Mirror Gradient, AlterSGD(trigger="plateau")
            loss = optimizer.step(closure)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = closure()
            if sam_closure:  # SAM: step(closure) re-evaluates the gradient at the perturbed point
                optimizer.step(closure)
            else:
                optimizer.step()
        losses.append(float(loss.detach()))
    tail = losses[-50:]
    return sum(tail) / max(len(tail), 1)


@torch.no_grad()
def session_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    session: int,
    groups: Sequence[Sequence[int]],
    protocol: str,
    seen_sessions: int,
    batch_size: int = 1024,
) -> float:
    """Accuracy (percent) on session ``session``'s test data after ``seen_sessions`` sessions.

    Task-incremental predicts among that session's classes; class-incremental among all classes of the
    first ``seen_sessions`` sessions.
    """
    model.eval()
    cls = groups[session] if protocol == "task" else [c for g in groups[:seen_sessions] for c in g]
    correct = 0
    for s in range(0, len(y), batch_size):
        logits = _logits_for(model(x[s : s + batch_size]), cls)
        pred = torch.tensor(cls)[logits.argmax(1)]
        correct += int((pred == y[s : s + batch_size]).sum())
    model.train()
    return 100.0 * correct / max(len(y), 1)
