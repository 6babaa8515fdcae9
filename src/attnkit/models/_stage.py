"""The one stage loop shared by attnkit's own stages and by stages attached to foreign networks.

A stage runs its blocks as ``F, state = stage.branch(i, x, state)`` then
``x = merge(block_i, F, shortcut(block_i, x))``. ``branch`` is public so that analysis tools (the
stiffness profile) walk a network with exactly the computation its ``forward`` performs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["StageWiring"]


class StageWiring:
    """Mixin: ``branch`` and ``forward`` from five hooks a stage class provides.

    Hooks: ``block_list()`` (the blocks, in order), ``block_residual(blk, x)``,
    ``block_shortcut(blk, x)``, ``block_merge(blk, u, s)`` and ``_module_for(i, blk)`` (the attention
    module connected to block ``i``, or None), plus the attribute ``recurrent``.
    """

    recurrent: bool = False

    def branch(self, i: int, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """The tensor block ``i`` adds to its shortcut, with attention applied, and the new state.

        Args:
            i: block index within the stage.
            x: the block input ``(N, C_in, H, W)``.
            state: the recurrent unit's incoming state (None at the stage's first connected block).

        Returns:
            ``(F, new_state)``: ``F`` of shape ``(N, C, H', W')``; ``new_state`` is ``state`` unchanged
            for non-recurrent modules or unconnected blocks.
        """
        blk = self.block_list()[i]
        u = self.block_residual(blk, x)  # (N, C, H', W')
        m = self._module_for(i, blk)
        if m is None:
            return u, state
        if self.recurrent:
            return m(u, state)
        return m(u), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run every block: ``x = merge(F, shortcut(x))`` with ``F`` from :meth:`branch`."""
        state: Any = None
        for i, blk in enumerate(self.block_list()):
            f, state = self.branch(i, x, state)
            x = self.block_merge(blk, f, self.block_shortcut(blk, x))
        return x

    def block_list(self) -> list[nn.Module]:  # pragma: no cover - provided by the stage class
        """The blocks, in order."""
        raise NotImplementedError
