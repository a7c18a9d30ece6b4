"""MIM: Dong et al., "Boosting Adversarial Attacks with Momentum", arXiv 1710.06081 (Algorithm 1, MI-FGSM).

L∞, untargeted. Iterative FGSM whose step follows the sign of an accumulated gradient:
g_{t+1} = μ·g_t + ∇ₓJ(x_t, y)/‖∇ₓJ(x_t, y)‖₁, x_{t+1} = Π(x_t + α·sign(g_{t+1})), starting at
the clean input (no random start), with Π the projection onto the ε-ball (clamp) followed
by clipping to [0, 1]. The last iterate is returned.

Faithful: the L1-normalised gradient (per example), the decay μ (default 1.0, the paper's
value) and the zero start. The paper fixes α = ε/T (``step_size = eps / steps``); here the
step size is a setting, with the same name as PGD's, and ε/T is the value that matches the
paper. Additions: the projection onto the ε-ball and the [0, 1] clip at every step (the
paper's Algorithm 1 has α·T = ε, so its iterates never leave the ball; only the box clip is
new then).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_eps,
    check_inputs,
    check_non_negative,
    check_positive,
    check_positive_int,
    clip_box,
    flat_norm,
    frozen_parameters,
    input_gradient,
    per_example,
    project_linf,
)


@ATTACKS.register("mim")
@frozen_parameters
def mim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    decay: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the last MI-FGSM iterate, detached, inside the L∞ ε-ball around ``x`` and in [0, 1].

    ``decay`` is the momentum μ (0 gives iterative FGSM). ``generator`` is accepted for the
    common attack signature; MIM draws nothing.
    """
    eps = check_eps(eps)
    steps = check_positive_int(steps, "steps")
    step_size = check_positive(step_size, "step_size")
    decay = check_non_negative(decay, "decay")
    check_inputs(x, y)

    x = x.detach()
    x_adv = x
    momentum = torch.zeros_like(x)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y)
        momentum = decay * momentum + grad / per_example(flat_norm(grad, 1).clamp_min(tiny), grad)
        x_adv = x_adv + step_size * momentum.sign()
        x_adv = clip_box(x + project_linf(x_adv - x, eps))
    return x_adv.detach()
