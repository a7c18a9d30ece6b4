"""No defense: plain mean cross-entropy on the batch, the reference row of every paper table.

With the optional ``adversarial`` params it is adversarial training, the same as ``at``;
``at`` exists so that a study row says what it is and cannot lose its attack by accident.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust.defenses.base import Defense, register_defense


@register_defense("none")
class NoDefense(Defense):
    """Mean cross-entropy. Params: ``adversarial`` (optional, see ``robust.defenses.base``)."""

    example_params = {}
    supports_amp = True  # first-order: one forward and backward pass

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(model(x), y)
        value = ce.item()
        return ce, {"ce": value, "loss": value}
