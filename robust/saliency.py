"""Alignment between an input and its saliency map (Etmann, Lunz, Maass & Schönlieb, "On the
Connection Between Adversarial Robustness and Saliency Map Interpretability", ICML 2019,
arXiv 1905.04172).

Etmann et al. call the input gradient of the logit of the *predicted* class, g(x) = ∇ₓΨ^{F(x)}(x)
with F(x) = argmax_i Ψ^i(x), the saliency map, and its alignment with the input
α(x) = |⟨x, g(x)⟩| / ‖g(x)‖ (§2). For a linear model α(x) grows with the distance to the decision
boundary; JARN (Chan et al. 2020, §3.1) quotes this link as the motivation for training
Jacobians to look like images.

Here the alignment is additionally divided by ‖x‖: the absolute cosine between x and g(x), in
[0, 1] and free of the image's scale, so that numbers compare across datasets and models. The
class is the predicted one, as Etmann et al. define it (for correctly classified points it is
the true class). A point whose gradient or image is zero has alignment 0.

A network that standardises each image first (``PerImageStandardize``: SGR's nets, JARN's WRN) gives
c·x the logits of x for every c > 0, so ⟨x, g(x)⟩ = d/dc Ψ(c·x) at c = 1 is 0 for every x: its
alignment is 0 by construction and says nothing about the model. ``scale_invariant`` names such
networks, and the evaluation writes no alignment for them.

Batched without a per-example loop: one backward pass of Σ_i Ψ^{F(x_i)}(x_i) gives every
example's own gradient exactly when examples do not interact (eval mode: dropout off, BatchNorm
on running statistics), which is how evaluation runs the model.

g(x) is row F(x) of the logits Jacobian: where that Jacobian is built anyway (the evaluation's
‖J‖_F metrics), ``alignment_from_jacobian`` takes the row from it instead of running the model
forward and backward again. Both ways give the same gradient (a one-hot cotangent selects the
same products), so the same alignment.
"""

from __future__ import annotations

import torch
from torch import nn

from robust.models.layers import PerImageStandardize

EPS = 1e-12  # a zero gradient or a black image gives 0, not NaN


def saliency(model: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """∇ₓ of each example's logit of ``classes`` (default: the predicted class), shaped like ``x``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        chosen = logits.argmax(1) if classes is None else classes.to(logits.device)
        (grad,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), x)
    return grad.detach()


def scale_invariant(model: nn.Module) -> bool:
    """Whether ``model`` standardises each image (``PerImageStandardize``): its alignment is 0 for every x."""
    return any(isinstance(module, PerImageStandardize) for module in model.modules())


def alignment_of(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example |⟨g, x⟩| / (‖g‖·‖x‖) for gradients ``grad`` shaped like ``x`` or flattened (B, D)."""
    grad = grad.detach().flatten(1)
    flat = x.detach().flatten(1).to(grad.dtype)
    inner = (grad * flat).sum(1).abs()
    return inner / (grad.norm(dim=1) * flat.norm(dim=1)).clamp_min(EPS)


def alignment_from_jacobian(jacobian: torch.Tensor, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Per-example alignment of ``x`` with row ``classes[i]`` of its logits Jacobian (B, K, ...)."""
    classes = classes.to(jacobian.device)
    return alignment_of(jacobian[torch.arange(len(jacobian), device=jacobian.device), classes], x)


def alignment(model: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example |⟨∇ₓΨ^c(x), x⟩| / (‖∇ₓΨ^c(x)‖·‖x‖), c the predicted class unless ``classes`` is given."""
    return alignment_of(saliency(model, x, classes), x)
