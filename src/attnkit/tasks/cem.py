"""CEM: the Causal-Enhance Module for machine–human chatting handoff (MHCH), on an RSSN-style backbone.

For every utterance of a customer-service dialogue the model predicts whether the bot should hand over
to a human. CEM multiplies the backbone's handoff probabilities by a per-turn user state u_t and the
customer-turn pooling weight w_t (the causal user-state correction) and adds a labour-cost term to the
loss.

Usage::

    from attnkit.data.dialogue import synthetic_dialogues
    from attnkit.tasks.cem import CEM, MHCHBackbone, train_cem

    model = CEM(MHCHBackbone(vocab_size=300, embed_dim=64, max_utterances=30), pairing="intuitive")
    res = train_cem(model, synthetic_dialogues(3000, 0), synthetic_dialogues(500, 1), epochs=30)

Reference:
    Zhong, Qin, Huang, Li, "Causal-Enhance Module for machine-human chatting handoff" (EMNLP 2022; arXiv
    2210.02862, "Causal Inference for Chatting Handoff"), code github.com/Qrange-group/CEM (TensorFlow).

Deviations (each also in the docstring concerned):
    - ``cost="handoff_mass"`` (default) replaces the official "cost simulator", which averages p̃ at
      utterance index 1 (``cost="official"``); the paper's counterfactual simulator is not public
      (``cost="simulator"`` raises NotImplementedError).
    - ``pairing="official"`` multiplies handoff by u[2]; ``"intuitive"`` by u[0].
    - ``faithful_masks=False`` (default) masks padding/agent keys instead of query rows; ``causal=True``
      is an online variant; booleans are real booleans (the code parses ``type=bool``).
    - Weight decay is the explicit 3e-5·Σ‖W‖²/2 term; PyTorch LSTMs carry one more bias per gate than TF.
"""

from __future__ import annotations

from .cem_loss import cem_loss, gt_score, mhch_metrics
from .cem_model import CEM, MHCHBackbone
from .cem_train import evaluate_cem, train_cem

__all__ = ["MHCHBackbone", "CEM", "cem_loss", "gt_score", "mhch_metrics", "evaluate_cem", "train_cem"]
