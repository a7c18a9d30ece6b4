"""DeepFool: Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method
to fool deep neural networks", arXiv 1511.04599 (Algorithm 2, multiclass; p = 2 and p = ∞).

A minimal-perturbation attack: it has no ε budget and its result is read as a distance.
At each iteration the classifier is linearised at the current iterate and the step goes
to the closest linearised boundary between the original class and any other class
``k``, with f'_k = f_k − f_y and w'_k = ∇f_k − ∇f_y. Distances to the linearised boundaries
are measured in the dual norm q of the attack's norm p (§3.2, eqs. 10–11):

- ``norm="l2"`` (q = 2): l = argmin_k |f'_k| / ‖w'_k‖₂, r_i = |f'_l| / ‖w'_l‖₂² · w'_l;
- ``norm="linf"`` (q = 1): l = argmin_k |f'_k| / ‖w'_k‖₁, r_i = |f'_l| / ‖w'_l‖₁ · sign(w'_l),
  the smallest L∞ step onto the linearised boundary.

Faithful:
- all K classes are candidates, as in Algorithm 2 (K read from the model output, never
  assumed; the reference code only looks at the 10 classes with the highest clean logits);
- the overshoot multiplies the total perturbation, as in the authors' reference code:
  the iterate is x + (1 + overshoot)·r_tot, and the prediction is checked there, so what is
  returned is exactly what was checked;
- an example stops being updated as soon as its prediction leaves the original class.

Simplified / chosen here:
- the original class is the label ``y``; examples the model already misclassifies are
  returned unchanged (perturbation 0), the convention of the robustness papers that report
  ρ_adv with misclassified inputs counting 0;
- every iterate is clipped to the [0, 1] box (the paper has no box), and r_tot is then
  replaced by its feasible part, (clip(x + (1 + overshoot)·r_tot) − x) / (1 + overshoot), so
  that coordinates pinned at 0 or 1 do not accumulate perturbation without effect that later
  steps would first have to undo; without clipping this changes nothing. An example whose
  prediction never flips within ``steps`` keeps its last iterate;
- as in the reference code (not in Algorithm 2), every step goes ``STEP_SLACK`` = 1e-4
  (in the attack's norm, input units) beyond the linearised boundary. Without it the
  iterates of a curved boundary converge onto it from the original side (each step's
  overshoot is only ``overshoot`` times an ever smaller step) and whether an example is
  fooled is left to floating-point rounding.

Batched over examples: each iteration runs one forward pass on the examples still being
attacked and K backward passes of ``logits[:, k].sum()`` for all of them at once. Among
the batched Jacobians tried on CPU (K backward passes, ``autograd.grad(is_grads_batched=True)``,
``torch.func.vmap(jacrev)``), K backward passes were fastest for small CNNs (vmapped
convolution backward is slow on CPU) and behave like the plain model for any layer; the
vmap variants only won for MLPs. Since examples are independent (in eval mode) the sum
over the batch gives each example its own gradient. The forward pass sees only the
examples still being attacked, which matters only for a model left in train mode with
batch-dependent layers (BatchNorm).
"""

from __future__ import annotations

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import check_choice, check_inputs, check_non_negative, check_positive_int, clip_box


STEP_SLACK = 1e-4  # reference code: r_i = (|f'_l| / ‖w'_l‖ + 1e-4) · w'_l / ‖w'_l‖
# per attack norm: the dual norm that measures distances to a linearised boundary, and the
# unit-length (in the attack's norm) direction of the shortest step across it
DUAL = {
    "l2": (2.0, lambda w, w_norm: w / w_norm.unsqueeze(1)),
    "linf": (1.0, lambda w, w_norm: w.sign()),
}


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and their Jacobian (N, K, *x.shape[1:]) with respect to the input."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    n_classes = logits.shape[1]
    rows = [
        torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k < n_classes - 1)[0]
        for k in range(n_classes)
    ]
    return logits.detach(), torch.stack(rows, dim=1)


def _closest_boundary_step(logits: torch.Tensor, jac: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """DeepFool step r_i (N, D) towards the closest linearised boundary of class ``y``, in ``norm``."""
    dual, direction = DUAL[norm]
    rows = torch.arange(len(y), device=y.device)
    f_diff = logits - logits[rows, y].unsqueeze(1)  # (N, K): f_k − f_y
    w_diff = (jac - jac[rows, y].unsqueeze(1)).flatten(2)  # (N, K, D): ∇f_k − ∇f_y
    w_norm = torch.linalg.vector_norm(w_diff, ord=dual, dim=2)
    # zero-gradient directions are not boundaries one can step to; this includes k = y,
    # whose row of w_diff is exactly zero
    usable = w_norm > 0
    dist = torch.where(usable, f_diff.abs() / w_norm.clamp_min(torch.finfo(w_norm.dtype).tiny), torch.inf)
    target = dist.argmin(dim=1)
    f_l, w_l, norm_l = f_diff[rows, target], w_diff[rows, target], w_norm[rows, target]
    norm_l = norm_l.clamp_min(torch.finfo(norm_l.dtype).tiny)
    length = f_l.abs() / norm_l + STEP_SLACK
    # an example with no usable direction (all gradients zero) gets no step
    length = torch.where(usable[rows, target], length, torch.zeros_like(length))
    return length.unsqueeze(1) * direction(w_l, norm_l)


@ATTACKS.register("deepfool")
def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 50,
    overshoot: float = 0.02,
    norm: str = "l2",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return DeepFool adversarial examples ``clip(x + (1 + overshoot) · r_tot)``, detached.

    ``steps`` bounds the number of linearisation steps per example (50 is the reference
    code's default); ``overshoot`` 0.02 is the paper's value; ``norm`` ("l2" or "linf") is
    the norm whose perturbation is minimised. ``generator`` is accepted for the common
    attack signature; DeepFool draws nothing.
    """
    steps = check_positive_int(steps, "steps")
    overshoot = check_non_negative(overshoot, "overshoot")
    norm = check_choice(norm, "norm", DUAL)
    check_inputs(x, y)

    x = x.detach()
    x_adv = x.clone()
    r_tot = torch.zeros_like(x).flatten(1)
    active = torch.arange(len(x), device=x.device)  # examples still predicted as their label
    for _ in range(steps):
        if active.numel() == 0:
            break
        logits, jac = logit_jacobian(model, x_adv[active])
        keep = logits.argmax(dim=1) == y[active]
        active, logits, jac = active[keep], logits[keep], jac[keep]
        r_tot[active] += _closest_boundary_step(logits, jac, y[active], norm)
        x_active = x[active]
        x_adv[active] = x_new = clip_box(x_active + (1 + overshoot) * r_tot[active].view_as(x_active))
        r_tot[active] = (x_new - x_active).flatten(1) / (1 + overshoot)
    return x_adv.detach()
