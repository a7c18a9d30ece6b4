"""Tests for the adversary critic's high-confidence attack (Matyasko & Chau 2018, Algorithm 1).

The registered attack: box, misclassified points untouched, the target confidence reached
and kept, the closest-boundary target against a per-example reference on an affine model,
the per-step L2 clip, successes monotone in steps, determinism. The differentiable path:
the same iterates as the registered attack, gradients into the parameters through x_adv,
the straight-through estimator, per-example confidences. The registry-wide contract is in
test_attacks.py.
"""

from __future__ import annotations

import copy
import itertools
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks import DEFAULT_NORM, MINIMAL_PERTURBATION, run_attack
from robust.attacks.high_confidence import (
    closest_boundary_target,
    high_confidence,
    high_confidence_path,
    straight_through_indicator,
)
from robust.errors import ConfigError

from prototypes import affine_classifier, trained_classifier

CLIP = 0.1  # the paper's per-iteration clip on MNIST (§5)


@pytest.fixture(scope="module")
def trained():
    """The small BatchNorm CNN of the attack tests, 64 held-out points (some misclassified), the targets.

    In float64, so that whether a point has reached C is not decided by rounding differences
    between the attack's batches and the test's.
    """
    model, x, y = trained_classifier(64, min_accuracy=0.8)
    model, x = model.double(), x.double()
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return model, x, y, closest_boundary_target(model, x, y), correct


def _target_prob(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        p = model(x).softmax(1)
    return p.gather(1, target.unsqueeze(1)).squeeze(1), p.argmax(1)


def _reached(model, x_adv, target, confidence) -> torch.Tensor:
    p_t, pred = _target_prob(model, x_adv, target)
    return (p_t >= confidence) & (pred == target)


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


# ---------------------------------------------------------------- the registered attack

def test_registered_as_an_l2_minimal_perturbation_attack():
    assert "high_confidence" in MINIMAL_PERTURBATION and DEFAULT_NORM["high_confidence"] == "l2"


def test_misclassified_points_unchanged(trained):
    model, x, y, _, correct = trained
    assert (~correct).sum() >= 3, "fixture has too few misclassified points to test their handling"
    x_adv = run_attack("high_confidence", model, x, y, steps=30, step_clip=CLIP, confidence=0.9)
    assert torch.equal(x_adv[~correct], x[~correct])
    assert (_l2(x_adv, x)[correct] > 0).all()


def test_iterates_stay_in_the_box_where_it_binds(trained):
    model, x, _, _, _ = trained
    x = ((x - 0.5) * 4 + 0.5).clamp(0, 1)  # high contrast: many pixels on the box faces
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = high_confidence(model, x, y, steps=30, step_clip=1.0, confidence=0.999)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    on_face = (x_adv == 0) | (x_adv == 1)
    assert (on_face & (x_adv != x)).any(), "no step pushed a pixel onto the box: the test would be vacuous"


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.99])
def test_reached_points_are_the_target_at_the_confidence_and_stop(trained, confidence):
    model, x, y, target, correct = trained
    x_adv = high_confidence(model, x, y, steps=40, step_clip=CLIP, confidence=confidence)
    reached = _reached(model, x_adv, target, confidence) & correct
    assert reached.sum() >= 0.8 * correct.sum(), f"only {reached.sum()} of {correct.sum()} reached C"
    # a point stops at the first iterate that reaches C: more steps leave it where it is
    longer = high_confidence(model, x, y, steps=60, step_clip=CLIP, confidence=confidence)
    assert torch.equal(longer[reached], x_adv[reached])
    # and the iterate before it had not reached C yet
    earlier = high_confidence(model, x, y, steps=39, step_clip=CLIP, confidence=confidence)
    moved = reached & (_l2(earlier, x_adv) > 0)
    assert not _reached(model, earlier, target, confidence)[moved].any()


def test_clean_confidence_is_the_models_confidence_on_the_clean_point(trained):
    model, x, y, target, correct = trained
    clean_p = _target_prob(model, x, y)[0]
    assert clean_p[correct].min() < 0.99 < clean_p[correct].max(), "confidences too alike to tell apart"
    x_adv = high_confidence(model, x, y, steps=10, step_clip=CLIP)  # confidence="clean", the paper's §5 setting
    expected, _ = high_confidence_path(model, x[correct], target[correct], steps=10, step_clip=CLIP,
                                       confidence=clean_p[correct])
    torch.testing.assert_close(x_adv[correct], expected.detach(), rtol=0, atol=1e-10)
    assert not torch.equal(x_adv, high_confidence(model, x, y, steps=10, step_clip=CLIP, confidence=0.99))


@pytest.mark.parametrize("n_classes", [3, 7])
def test_target_is_the_closest_linearised_boundary(n_classes):
    gen = torch.Generator().manual_seed(n_classes)
    model, linear, x, _, y = affine_classifier(gen, n_classes, n=8)
    w, b = linear.weight.detach(), linear.bias.detach()
    reference = []
    for i in range(len(x)):  # per example, straight from the definition
        f = w @ x[i].flatten() + b
        dist = [math.inf if k == y[i] else abs(f[k] - f[y[i]]).item() / (w[k] - w[y[i]]).norm().item()
                for k in range(n_classes)]
        reference.append(min(range(n_classes), key=dist.__getitem__))
    target = closest_boundary_target(model, x, y)
    assert target.tolist() == reference
    # the attack then makes exactly that class the prediction, at the requested confidence
    x_adv = high_confidence(model, x, y, steps=200, step_clip=0.05, confidence=0.95)
    assert _reached(model, x_adv, target, 0.95).all()


def test_target_is_never_the_label_even_without_gradients():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    x, y = torch.full((3, 1, 2, 2), 0.5), torch.tensor([0, 1, 2])
    assert (closest_boundary_target(model, x, y) != y).all()
    x_adv = high_confidence(model, x, y, steps=3, step_clip=CLIP, confidence=0.9)
    assert torch.equal(x_adv, x)  # no gradient, no step, no NaN


def test_every_step_is_at_most_step_clip(trained):
    model, x, y, _, _ = trained
    first = high_confidence(model, x, y, steps=1, step_clip=CLIP, confidence=0.99)
    assert (_l2(first, x) <= CLIP + 1e-6).all()
    assert _l2(first, x).max() >= CLIP - 1e-6, "the clip never binds: the test would be vacuous"
    # deterministic, so the run with k steps is iterate k of the run with more
    iterates = [x] + [high_confidence(model, x, y, steps=k, step_clip=CLIP, confidence=0.99) for k in range(1, 6)]
    for before, after in itertools.pairwise(iterates):
        assert (_l2(after, before) <= CLIP + 1e-6).all()


def test_more_steps_never_lose_a_success(trained):
    model, x, y, target, correct = trained
    counts, previous = [], torch.zeros_like(correct)
    for steps in (1, 2, 4, 8, 16, 32):
        x_adv = high_confidence(model, x, y, steps=steps, step_clip=CLIP, confidence=0.95)
        reached = _reached(model, x_adv, target, 0.95) & correct
        assert not (previous & ~reached).any(), f"a point reached C and then left it at steps={steps}"
        counts.append(reached.sum().item())
        previous = reached
    assert counts[-1] > counts[0], counts


def test_deterministic(trained):
    model, x, y, target, _ = trained
    settings = {"steps": 10, "step_clip": CLIP, "confidence": 0.9}
    assert torch.equal(high_confidence(model, x, y, **settings), high_confidence(model, x, y, **settings))
    a, ra = high_confidence_path(model, x, target, **settings)
    b, rb = high_confidence_path(model, x, target, **settings)
    assert torch.equal(a, b) and torch.equal(ra, rb)


BAD_SETTINGS = [
    ({"steps": 5}, "attack.step_clip"),  # no silent default for a length in input units
    ({"steps": 5, "step_clip": 0.0}, "attack.step_clip"),
    ({"steps": 0, "step_clip": CLIP}, "attack.steps"),
    ({"steps": 2.5, "step_clip": CLIP}, "attack.steps"),
    ({"steps": 5, "step_clip": CLIP, "confidence": 0.0}, "attack.confidence"),
    ({"steps": 5, "step_clip": CLIP, "confidence": 1.5}, "attack.confidence"),
    ({"steps": 5, "step_clip": CLIP, "confidence": "same"}, "attack.confidence"),
    ({"steps": 5, "step_clip": CLIP, "confidence": True}, "attack.confidence"),
    ({"steps": 5, "step_clip": CLIP, "max_iter": 5}, "attack.max_iter"),
]


@pytest.mark.parametrize("settings, key", BAD_SETTINGS)
def test_bad_settings_raise_config_error_naming_the_key(trained, settings, key):
    model, x, y, _, _ = trained
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        run_attack("high_confidence", model, x, y, **settings)


@pytest.mark.parametrize("settings, key", [
    ({"ste_slope": -1.0}, "attack.ste_slope"),
    ({"confidence": torch.zeros(64)}, "attack.confidence"),
    ({"step_clip": -0.1}, "attack.step_clip"),
])
def test_bad_path_settings_raise_config_error(trained, settings, key):
    model, x, _, target, _ = trained
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        high_confidence_path(model, x, target, **{"confidence": 0.9, "steps": 3, **settings})


# ---------------------------------------------------------------- the differentiable path

def test_path_iterates_are_the_registered_attacks(trained):
    model, x, y, target, correct = trained
    expected = high_confidence(model, x, y, steps=15, step_clip=CLIP, confidence=0.9)
    x_adv, reached = high_confidence_path(model, x[correct], target[correct], steps=15, step_clip=CLIP,
                                          confidence=0.9)
    assert x_adv.requires_grad
    torch.testing.assert_close(x_adv.detach(), expected[correct], rtol=0, atol=1e-10)
    assert torch.equal(reached, _reached(model, expected, target, 0.9)[correct])


def _param_grads(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])


def test_gradients_reach_the_parameters_through_x_adv(trained):
    model, x, _, target, _ = trained
    critic = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)  # model-free
    # the hard indicator: whatever reaches the parameters goes through the steps (second order)
    x_adv, _ = high_confidence_path(model, x, target, steps=5, step_clip=CLIP, confidence=0.9, ste_slope=0.0)
    through_steps = _param_grads(model, (x_adv * critic).sum())
    assert torch.isfinite(through_steps).all() and through_steps.abs().sum() > 0

    x_adv, _ = high_confidence_path(model, x, target, steps=5, step_clip=CLIP, confidence=0.9)
    with_graph = _param_grads(model, F.cross_entropy(model(x_adv), target))
    detached = _param_grads(model, F.cross_entropy(model(x_adv.detach()), target))
    assert torch.isfinite(with_graph).all()
    assert (with_graph - detached).norm() > 1e-3 * detached.norm()
    assert all(p.grad is None for p in model.parameters())


def test_one_step_gradient_matches_finite_differences(trained):
    # one step from x is a plain function of the parameters (the evaluation point x does not
    # depend on them), so with the hard indicator its gradient is exact
    model, x, _, target, _ = trained
    model = copy.deepcopy(model)
    critic = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    params = list(model.parameters())
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype)
                 for i, p in enumerate(params)]

    def loss() -> torch.Tensor:
        x_adv, _ = high_confidence_path(model, x, target, steps=1, step_clip=CLIP, confidence=0.9, ste_slope=0.0)
        return (x_adv * critic).sum()

    grads = torch.autograd.grad(loss(), params)
    analytic = sum((g * v).sum() for g, v in zip(grads, direction))
    h, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, v in zip(params, direction):
                p.add_(sign * h * v)
            values.append(loss().detach())
            for p, v in zip(params, direction):
                p.sub_(sign * h * v)
    numeric = (values[0] - values[1]) / (2 * h)
    assert analytic.abs() > 1e-3
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_straight_through_indicator_forward_hard_backward_sigmoid():
    p = torch.tensor([0.2, 0.5, 0.89, 0.91, 0.99], dtype=torch.float64, requires_grad=True)
    c = torch.full_like(p, 0.9)
    slope = 3.0
    indicator = straight_through_indicator(p.detach() >= c, p, c, slope)
    assert torch.equal(indicator.detach(), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    (grad,) = torch.autograd.grad(indicator.sum(), p)
    s = torch.sigmoid(slope * (c - p.detach()))
    torch.testing.assert_close(grad, -slope * s * (1 - s))
    hard = straight_through_indicator(p.detach() >= c, p, c, 0.0)
    assert not hard.requires_grad and torch.equal(hard, indicator.detach())


def test_straight_through_estimator_adds_gradient_through_the_stopping_rule(trained):
    model, x, _, target, _ = trained
    critic = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    settings = {"steps": 5, "step_clip": CLIP, "confidence": 0.8}
    x_ste, reached = high_confidence_path(model, x, target, **settings)
    x_hard, _ = high_confidence_path(model, x, target, **settings, ste_slope=0.0)
    assert 0 < reached.sum() < len(x), "every or no point stopped: the stopping rule is not exercised"
    assert torch.equal(x_ste.detach(), x_hard.detach())  # the forward pass is the hard indicator's
    g_ste = _param_grads(model, (x_ste * critic).sum())
    g_hard = _param_grads(model, (x_hard * critic).sum())
    assert torch.isfinite(g_ste).all()
    assert (g_ste - g_hard).norm() > 1e-3 * g_hard.norm()


def test_per_example_confidence(trained):
    model, x, _, target, _ = trained
    confidence = torch.where(torch.arange(len(x)) % 2 == 0, 0.6, 0.97).to(x.dtype)
    x_adv, reached = high_confidence_path(model, x, target, steps=30, step_clip=CLIP, confidence=confidence)
    assert torch.equal(reached, _reached(model, x_adv.detach(), target, confidence))
    assert reached[::2].sum() >= 0.8 * len(x[::2]) and reached[1::2].sum() >= 0.5 * len(x[1::2])
    p_t, _ = _target_prob(model, x_adv.detach(), target)
    # the low-confidence half stops early: mostly far below the high half's 0.97
    assert (p_t[::2][reached[::2]] < 0.97).float().mean() > 0.5
