"""EAN / lottery-ticket search of where attention should connect.

One shared module per stage, and a sparse connection scheme found by reinforcement learning.
The scheme type itself is :class:`attnkit.models.ConnectionScheme` (re-exported here).

Three steps (as in the official EAN code): train a weight-sharing supernet with a random scheme per mini-batch
(:func:`train_supernet`); search a scheme with the REINFORCE controller, scored on the frozen supernet
over a held-out split (:class:`EANSearch`, :class:`HoldoutEvaluator`); retrain the found scheme from
scratch (:func:`retrain`, through ``attnkit.train``). :func:`run_pipeline` / ``attnkit search`` runs all
three with checkpoints and logs.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network.
    LTH4SA, "The Lottery Ticket Hypothesis for Self-attention in Convolutional Neural Network",
    arXiv:2207.07858 (no code of its own; its per-block variant is ``sharing="block"``).

Deviations (all listed in the sub-modules): factorised policy stated explicitly; no tanh logit clip by
default; stage lengths from ``model.blocks_per_stage``; frozen RND target; reward caching; full-scheme
supernet monitoring; the ``select`` rule; attention modules keep their own init; the replay-advantage
mismatch of the official code is **kept**.
"""

from ..models import EAN_SCHEMES, SCHEME_ALIASES, ConnectionScheme, list_schemes, official_scheme
from .controller import RNDBonus, SchemePolicy, on_policy_loss, replay_loss
from .ean import EANSearch, SampleRecord, SearchConfig, SearchResult, StepRecord
from .evaluate import HoldoutEvaluator, evaluate_top1, holdout_split, scheme_override
from .supernet import SupernetWrapper, train_supernet

__all__ = [
    "ConnectionScheme",
    "EAN_SCHEMES",
    "SCHEME_ALIASES",
    "official_scheme",
    "list_schemes",
    "SchemePolicy",
    "RNDBonus",
    "SearchConfig",
    "StepRecord",
    "SampleRecord",
    "SearchResult",
    "EANSearch",
    "on_policy_loss",
    "replay_loss",
    "holdout_split",
    "scheme_override",
    "SupernetWrapper",
    "train_supernet",
    "HoldoutEvaluator",
    "evaluate_top1",
]
