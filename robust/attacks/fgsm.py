"""FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", arXiv 1412.6572.

L∞, untargeted: one step of size ε along the sign of the input gradient of the
cross-entropy loss, then clipping to the [0, 1] box. Faithful to the paper; the only
addition is the box clip (the paper's MNIST experiments had none).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_eps,
    check_inputs,
    clip_box,
    frozen_parameters,
    input_gradient,
)


@ATTACKS.register("fgsm")
@frozen_parameters
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``clip(x + eps * sign(∇ₓ CE(model(x), y)))``, detached.

    ``generator`` is accepted for the common attack signature; FGSM draws nothing.
    """
    eps = check_eps(eps)
    check_inputs(x, y)
    x = x.detach()
    grad = input_gradient(model, x, y)
    return clip_box(x + eps * grad.sign()).detach()
