"""FGM: the L2 fast gradient method of Miyato et al., "Adversarial Training Methods for
Semi-Supervised Text Classification", arXiv 1605.07725 (eq. 2), the L2 counterpart of FGSM
(Goodfellow et al., arXiv 1412.6572).

L2, untargeted: one step of L2 length ε along the input gradient of the cross-entropy,
x + ε·g/‖g‖₂, then clipping to the [0, 1] box (the clip only shortens δ, so ‖δ‖₂ ≤ ε).
Faithful to the method; the box clip is the only addition. An example whose gradient is
exactly zero is returned unchanged.
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
    normalize_l2,
)


@ATTACKS.register("fgm")
@frozen_parameters
def fgm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``clip(x + eps · g / ‖g‖₂)`` with g = ∇ₓ CE(model(x), y), detached.

    ``eps`` is an L2 radius on [0, 1] images. ``generator`` is accepted for the common
    attack signature; FGM draws nothing.
    """
    eps = check_eps(eps, norm="l2")
    check_inputs(x, y)
    x = x.detach()
    return clip_box(x + eps * normalize_l2(input_gradient(model, x, y))).detach()
