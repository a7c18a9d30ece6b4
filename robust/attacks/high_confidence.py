"""High-confidence targeted attack: Matyasko & Chau, "Improved Network Robustness with
Adversary Critic", NeurIPS 2018 (arXiv 1810.12576; Algorithm 1, eq. 7; official code
github.com/aam-at/adversary_critic, ``attack.py``).

A minimal-perturbation attack in L2: it has no ε budget and its result is read as a
distance. The target t of each example is the class with the closest DeepFool-linearised
decision boundary, argmin_{k≠y} |f_k − f_y| / ‖∇f_k − ∇f_y‖₂ (§4; ``find_next_target``).
Each iteration linearises log p_t and takes the smallest L2 step onto {log p_t = log C}:

    r = (log C − log p_t(x̂)) / ‖∇ log p_t(x̂)‖₂² · ∇ log p_t(x̂)          (eq. 7)

until x̂ is classified as t with p_t(x̂) ≥ C or ``steps`` iterations (N_max) have run.

Faithful:
- eq. 7 on the log-probability (the paper's remedy for saturated softmax gradients);
- as in the official code, the step length is |log C − log p_t| (the same as eq. 7 for an
  example still below C), ‖∇‖ is computed as sqrt(1e-8 + ‖∇‖²) and every step goes
  ``STEP_SLACK`` = √1e-8 = 1e-4 further along the gradient;
- the success test of the official evaluation attack: prediction t *and* p_t ≥ C (the paper:
  "misclassified as the target k with the confidence C"); an example that succeeds stops;
- evaluation settings of §5: ``steps`` 500 and ``confidence`` = the model's confidence on the
  clean input (``"clean"``), both defaults here; the per-iteration L2 clip of the step
  (``step_clip``; 0.1 on MNIST in §5) is required, since a value in input units depends on
  the data;
- the differentiable mode (``high_confidence_path``) as in the official training attack
  (``high_confidence_attack_unrolled``): x̂ = x + Σ_i m_i r_i with the stopping mask
  m_i = Π_{j≤i} I(example j not yet at target confidence); every r_i keeps its graph
  (second-order terms ∂²f/∂x∂w through ∇ log p_t), while the point x̂_i at which step i is
  evaluated is detached, as there. The mask's gradient is the sigmoid-adjusted
  straight-through estimator: forward the hard indicator [p_t < C], backward the gradient of
  sigmoid(ste_slope · (C − p_t)). The official code writes round(sigmoid(C − p_t)) with the
  gradient of round replaced by identity, i.e. ``ste_slope`` = 1 on probabilities (not on
  log-probabilities); ``ste_slope`` = 0 gives the hard indicator with no gradient.

Simplified / chosen here:
- the original class is the label ``y``; examples the model already misclassifies are
  returned unchanged, as by DeepFool here (the official evaluation attacks them too, but
  ρ_adv counts them 0 either way);
- every iterate is clipped to the [0, 1] box (the official evaluation does the same; the
  official training attack does not clip);
- no overshoot factor: the official code multiplies the accumulated perturbation by 1.02
  (evaluation) or 1.05 (training), but checks the confidence at that overshot point, so
  there it only lengthens each step; here the returned point is the one checked, and the
  step clip bounds the iterate's move exactly (‖x̂_{i+1} − x̂_i‖₂ ≤ ``step_clip``);
- the differentiable mode also stops on "prediction t and p_t ≥ C" (the official training
  attack tests p_t ≥ C only; the two agree whenever C > 1/2, as for the running-mean
  confidences used in training).

``high_confidence_targeted`` is the same attack towards a target class given per example (the
targeted grid of the paper's Fig. 2, ``robust.study_figures``); it is not registered, since a
target is data, not a setting of a suite.

Batched over examples: target selection takes K − 1 backward passes (DeepFool's
``boundary_gaps``), each iteration one forward and one backward pass. Without a graph
only the examples still being attacked are evaluated; the differentiable mode evaluates
every example at every iteration, since the straight-through gradient of a stopped
example's mask is not zero.
"""

from __future__ import annotations

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    KEY,
    check_inputs,
    check_non_negative,
    check_positive,
    check_positive_int,
    clip_box,
    frozen_parameters,
    per_example,
)
from robust.attacks.deepfool import STEP_SLACK, boundary_gaps
from robust.errors import ConfigError

NORM_EPS = STEP_SLACK**2  # official code: ‖∇‖ = sqrt(1e-8 + Σ ∇²), step slack √1e-8
CLEAN = "clean"  # confidence = the model's max-softmax on the clean input (§5)


def closest_boundary_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """argmin_{k≠y} |f_k − f_y| / ‖∇f_k − ∇f_y‖₂ for every example (the class of the closest boundary)."""
    return _logits_and_targets(model, x, y)[1]


def _logits_and_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached logits at ``x`` and each example's closest-boundary class, from one forward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        detached = logits.detach()
        f_diff, w_diff = boundary_gaps(x, logits, y)  # over the classes k ≠ y, in order
    w_norm = torch.linalg.vector_norm(w_diff, dim=2)
    # a class whose gradient equals y's has no linearised boundary: ranked after every real one
    dist = torch.where(w_norm > 0, f_diff.abs() / w_norm.clamp_min(torch.finfo(w_norm.dtype).tiny),
                       torch.finfo(w_norm.dtype).max)
    nearest = dist.argmin(dim=1)
    return detached, nearest + (nearest >= y).long()  # index among the others → class index


def straight_through_indicator(reached: torch.Tensor, p_t: torch.Tensor, confidence: torch.Tensor,
                               ste_slope: float) -> torch.Tensor:
    """[not reached] in the forward pass; the gradient of sigmoid(ste_slope · (C − p_t)) backward."""
    hard = (~reached).to(p_t.dtype)
    if ste_slope == 0 or not p_t.requires_grad:
        return hard
    soft = torch.sigmoid(ste_slope * (confidence - p_t))
    return hard + (soft - soft.detach())


def _confidence_step(log_p_t: torch.Tensor, grad: torch.Tensor, log_c: torch.Tensor,
                     step_clip: float | None) -> torch.Tensor:
    """Eq. 7 with the official slack, flattened (N, D); L2-clipped to ``step_clip`` when given."""
    grad = grad.flatten(1)
    grad_norm = torch.sqrt(NORM_EPS + grad.square().sum(dim=1, keepdim=True))
    length = STEP_SLACK + (log_c - log_p_t).abs().unsqueeze(1) / grad_norm
    step = length * grad / grad_norm
    if step_clip is not None:
        step_norm = torch.linalg.vector_norm(step, dim=1, keepdim=True)
        step = step * (step_clip / step_norm.clamp_min(step_clip))
    return step


def _evaluate(model: nn.Module, x: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor, *,
              create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p_t, ∇ₓ log p_t and whether each example is predicted as t with p_t ≥ C, at ``x`` (detached)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        log_p_t = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        (grad,) = torch.autograd.grad(log_p_t.sum(), x, create_graph=create_graph)
    if not create_graph:
        logits, log_p_t = logits.detach(), log_p_t.detach()
    reached = (log_p_t.detach().exp() >= confidence) & (logits.detach().argmax(dim=1) == target)
    return log_p_t, grad, reached


def _attack_loop(model: nn.Module, x: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor,
                 attacked: torch.Tensor, *, steps: int, step_clip: float | None, ste_slope: float,
                 differentiable: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The one implementation of Algorithm 1; returns (x_adv, reached) with the graph kept iff ``differentiable``."""
    x_adv = x if differentiable else x.detach().clone()
    running = attacked.to(x.dtype)  # the cumulative stopping mask m_i, 1 while an example is attacked
    log_c = confidence.log()
    everyone = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        # without a graph a stopped example can never move again: evaluate only the others
        idx = everyone if differentiable else running.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x_now, t, c = x_adv[idx], target[idx], confidence[idx]
        log_p_t, grad, reached = _evaluate(model, x_now, t, c, create_graph=differentiable)
        mask = running[idx] * straight_through_indicator(reached, log_p_t.exp(), c, ste_slope)
        step = _confidence_step(log_p_t, grad, log_c[idx], step_clip).view_as(x_now)
        x_next = clip_box(x_now + per_example(mask, step) * step)
        if differentiable:
            x_adv, running = x_next, mask
        else:
            x_adv[idx], running[idx] = x_next, mask
    _, _, reached = _evaluate(model, x_adv, target, confidence, create_graph=False)
    return x_adv, reached & attacked


def _confidence_tensor(confidence: object, like: torch.Tensor) -> torch.Tensor:
    """``confidence`` (a number or one value per example) as an (N,) tensor, checked to lie in (0, 1]."""
    key = f"{KEY}.confidence"
    if torch.is_tensor(confidence):
        if confidence.shape != like.shape[:1]:
            raise ValueError(f"confidence must hold one value per example, shape ({len(like)},), "
                             f"got {tuple(confidence.shape)}")
        values = confidence.detach().to(device=like.device, dtype=like.dtype)
    elif isinstance(confidence, (int, float)) and not isinstance(confidence, bool):
        values = torch.full(like.shape[:1], float(confidence), device=like.device, dtype=like.dtype)
    else:
        raise ConfigError(key, f"must be a probability in (0, 1] or {CLEAN!r}, got {confidence!r}")
    if values.numel() and not ((values > 0) & (values <= 1)).all():
        raise ConfigError(key, f"must lie in (0, 1] (a target probability), got {confidence!r}")
    return values


def high_confidence_path(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    confidence: float | torch.Tensor,
    steps: int,
    step_clip: float | None = None,
    ste_slope: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 towards ``target`` with the autograd graph kept: returns (x_adv, reached).

    ``x_adv`` depends on the model's parameters through every step (second-order terms) and
    on the stopping rule through the straight-through estimator whose backward slope is
    ``ste_slope`` (1 in the official code, 0 for the hard indicator with no gradient);
    ``reached`` (bool, detached) marks the examples predicted as ``target`` with
    p_target ≥ ``confidence`` at ``x_adv``. ``confidence`` is a number or one value per
    example (the critic's per-class running means); ``step_clip`` None means no clip (the
    official training attack, 5 steps, has none). Every example is attacked; the model is
    used in the mode the caller left it in (in train mode BatchNorm sees ``steps + 1``
    extra forward passes).
    """
    steps = check_positive_int(steps, "steps")
    step_clip = None if step_clip is None else check_positive(step_clip, "step_clip")
    ste_slope = check_non_negative(ste_slope, "ste_slope")
    check_inputs(x, target)
    confidence = _confidence_tensor(confidence, x)
    attacked = torch.ones(len(x), dtype=torch.bool, device=x.device)
    return _attack_loop(model, x, target, confidence, attacked, steps=steps, step_clip=step_clip,
                        ste_slope=ste_slope, differentiable=True)


@ATTACKS.register("high_confidence")
@frozen_parameters
def high_confidence(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    step_clip: float,
    confidence: float | str = CLEAN,
    steps: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return high-confidence adversarial examples towards each example's closest boundary, detached.

    ``confidence`` is the target probability C, a number in (0, 1] or ``"clean"`` for the
    model's confidence on the clean input (§5, the default); ``steps`` is N_max (500 in §5);
    ``step_clip`` bounds the L2 norm of every step (0.1 on MNIST in §5). Examples the model
    misclassifies are returned unchanged; one that never reaches C keeps its last iterate.
    ``generator`` is accepted for the common attack signature; the attack draws nothing.
    """
    return _high_confidence(model, x, y, None, step_clip=step_clip, confidence=confidence, steps=steps)


@frozen_parameters
def high_confidence_targeted(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    *,
    step_clip: float,
    confidence: float | str = CLEAN,
    steps: int = 500,
) -> torch.Tensor:
    """``high_confidence`` towards ``target`` (a class per example) instead of the closest boundary, detached.

    Everything else as ``high_confidence``, misclassified examples returned unchanged included.
    A target equal to the label asks for that class at confidence C (with ``"clean"`` the
    example starts there, up to rounding).
    """
    check_inputs(x, target)
    return _high_confidence(model, x, y, target, step_clip=step_clip, confidence=confidence, steps=steps)


def _high_confidence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, *,
                     step_clip: float, confidence: float | str, steps: int) -> torch.Tensor:
    """Algorithm 1 without a graph towards ``target``, or each example's closest boundary when None."""
    step_clip = check_positive(step_clip, "step_clip")
    steps = check_positive_int(steps, "steps")
    if isinstance(confidence, str) and confidence != CLEAN:
        raise ConfigError(f"{KEY}.confidence", f"must be a probability in (0, 1] or {CLEAN!r}, got {confidence!r}")
    if torch.is_tensor(confidence):
        raise ConfigError(f"{KEY}.confidence", "must be a number or 'clean'; per-example values go to "
                          "high_confidence_path")
    check_inputs(x, y)

    if len(x) == 0:
        return x.detach().clone()
    if target is None:
        logits, target = _logits_and_targets(model, x, y)
    else:
        with torch.no_grad():
            logits = model(x.detach())
        if not ((target >= 0) & (target < logits.shape[1])).all():
            raise ValueError(f"target must hold class indices in [0, {logits.shape[1]}), got {target.tolist()}")
    if confidence == CLEAN:
        confidence = logits.softmax(dim=1).amax(dim=1)
    confidence = _confidence_tensor(confidence, x)
    correct = logits.argmax(dim=1) == y
    x_adv, _ = _attack_loop(model, x, target, confidence, correct, steps=steps, step_clip=step_clip,
                            ste_slope=0.0, differentiable=False)
    return x_adv.detach()
