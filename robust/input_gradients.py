"""Input gradients drawn in two papers' figures.

JARN (Chan, Tay, Ong & Fu, ICLR 2020, arXiv 1912.10185), Figure 4, "Jacobian matrices" of the
models shown as images: ``true_class_gradient`` is ∇ₓ log p_y(x) = −∇ₓCE(f(x), y), the
input gradient of the true class's log-probability. JARN regularises eq. 6's Jacobian, the
gradient of the cross-entropy; the official code takes the gradient of the true-class softmax
probability p_y, and ∇p_y = p_y·∇log p_y, so after the per-example normalisation of the display
both are this one, up to the sign the CE form flips. The sign chosen is the official code's: a
pixel is positive where brightening it raises the true class's probability, so a Jacobian that
"resembles the image" (§4.3) shows the digit in the positive colour. The logit of the true class
is not used: JARN's Jacobian, and its discriminator, see the loss, not one logit.
``display_normalized`` scales each gradient by its largest absolute value, so every image uses
the whole of a symmetric colour scale and zero stays zero.

AFD (Bashivan et al., NeurIPS 2021, arXiv 2006.04621), Figure 4 right, "Logarithm of the average
gradient magnitudes of class likelihoods with respect to input ... rows correspond to ground
truth (target) labels and columns correspond to non-target labels": ``class_gradient_matrix``
gives M[t, i] = log₁₀ mean_{x: y = t} ‖∇ₓ l_i(x)‖₂ with l = softmax(f(x)). Chosen (the text
gives only "magnitude" and "logarithm"): the L2 norm and base 10. The full K × K matrix is
returned; its diagonal is the true class's own gradient ∂l_t/∂x (Theorem 1's quantity; the
likelihoods sum to one, so it is minus the sum of the other classes' gradients), a different
quantity from the non-target columns the paper's caption describes. ``off_diagonal`` blanks it
for the colour scale those columns share; the drawing writes its value in grey. A class with no
test point gives a NaN row.

Batched: each of the K rows of the softmax Jacobian is one backward pass over a whole batch
(``robust.jacobian.jacobian_from_logits``: exact per example in eval mode), so the only Python
loop is over the K classes, not over examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust.jacobian import jacobian_from_logits


def true_class_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ log softmax(f(x))_y per example, shaped like ``x`` (model in eval mode)."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(-F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.detach()


def display_normalized(grad: torch.Tensor) -> torch.Tensor:
    """Each example divided by its largest |value|, into [−1, 1] (an all-zero gradient stays 0)."""
    peak = grad.flatten(1).abs().amax(1).clamp_min(torch.finfo(grad.dtype).tiny)
    return grad / peak.view(-1, *[1] * (grad.dim() - 1))


def class_gradient_norms(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """(N, K) ‖∇ₓ softmax(f(x_n))_i‖₂ for every point n and class i (model in eval mode)."""
    model.eval()
    norms = []
    for xb in x.split(batch_size):
        xb = xb.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            probabilities = model(xb).softmax(1)
            jacobian = jacobian_from_logits(probabilities, xb)  # (B, K, *x.shape[1:])
        norms.append(jacobian.detach().flatten(2).norm(dim=2))
    return torch.cat(norms)


def class_gradient_matrix(norms: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) log₁₀ of the mean gradient norm over the points of each true class (rows) per class (columns)."""
    if norms.shape != (len(y), num_classes):
        raise ValueError(f"norms must be (N, K) = ({len(y)}, {num_classes}), got {tuple(norms.shape)}")
    one_hot = F.one_hot(y, num_classes).to(torch.float64)  # (N, K_true)
    counts = one_hot.sum(0)
    means = (one_hot.T @ norms.to(torch.float64)) / counts[:, None]  # a class without points: 0/0 = NaN
    return means.log10()


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """A copy of the square ``matrix`` with its diagonal (true class = column class) set to NaN."""
    blank = matrix.clone()
    blank.diagonal().fill_(float("nan"))
    return blank
