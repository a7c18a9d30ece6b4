"""Input-gradient (eq. 5) and cross-Lipschitz (eq. 6) defenses against brute force:
per-example torch.autograd.functional.jacobian, an explicit K² loop, a linear closed form,
and short training runs that must lower the regularised quantity."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian as brute_jacobian

from robust.defenses import build_defense
from robust.defenses.cross_lipschitz import cross_lipschitz_from_jacobian
from robust.errors import ConfigError
from robust.jacobian import input_jacobian

from prototypes import fit_with_defense

K = 4
SHAPE = (1, 6, 6)
LAM = 0.3


def tiny_cnn(dropout: bool = False, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 12), nn.ReLU()]
    layers += [nn.Dropout(0.5)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(12, K)).to(dtype)


def linear() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, K)).double()


_MEANS = torch.rand((K, *SHAPE), generator=torch.Generator().manual_seed(0))


def batch(n: int = 5, seed: int = 1, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy class prototypes in [0, 1]: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    x = (_MEANS[y] + 0.15 * torch.randn((n, *SHAPE), generator=g)).clamp(0, 1)
    return x.to(dtype), y


def _per_example_jacobians(model: nn.Module, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    return torch.stack([brute_jacobian(lambda xi: model(xi[None])[0], xi, create_graph=create_graph) for xi in x])


def brute_input_gradient_sq(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    """‖∂ℓ_i/∂x_i‖² per example, each from its own single-example cross-entropy."""
    grads = [
        brute_jacobian(lambda xi: F.cross_entropy(model(xi[None]), yi[None]), xi, create_graph=create_graph)
        for xi, yi in zip(x, y)
    ]
    return torch.stack([g.pow(2).sum() for g in grads])


def brute_cross_lipschitz(jac: torch.Tensor) -> torch.Tensor:
    """Eq. 6 per example, the K² double loop over ordered pairs as written."""
    rows = jac.flatten(2)
    total = rows.new_zeros(len(rows))
    for j, k in itertools.product(range(rows.shape[1]), repeat=2):
        total = total + (rows[:, k] - rows[:, j]).pow(2).sum(1)
    return total


def brute_loss(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "sum"):
    """The defense's loss built from brute-force pieces, differentiable in the parameters."""
    ce = F.cross_entropy(model(x), y)
    if name == "cross_lipschitz":
        return ce + LAM * brute_cross_lipschitz(_per_example_jacobians(model, x, create_graph=True)).mean()
    if reduction == "sum":
        return ce + LAM * brute_input_gradient_sq(model, x, y, create_graph=True).mean()
    # the gradient of the batch's mean cross-entropy, w.r.t. the whole batch at once
    grad_of_mean = brute_jacobian(lambda xb: F.cross_entropy(model(xb), y), x, create_graph=True)
    return ce + LAM * grad_of_mean.pow(2).sum()


CASES = [("input_gradient", {"reduction": "sum"}), ("input_gradient", {"reduction": "mean"}), ("cross_lipschitz", {})]


@pytest.mark.parametrize(("name", "extra"), CASES, ids=["input_gradient-sum", "input_gradient-mean", "cross_lipschitz"])
def test_loss_and_its_parameter_gradients_equal_brute_force(name, extra):
    model, (x, y) = tiny_cnn().train(), batch()
    loss, _ = build_defense({"name": name, "lambda": LAM, **extra}).training_step(model, x, y)
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    expected = brute_loss(name, model, x, y, **extra)
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    for param_name, g, e in zip(dict(model.named_parameters()), got, (p.grad for p in model.parameters())):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12, msg=param_name)


def test_input_gradient_logs_and_reductions_differ_by_the_batch_size():
    model, (x, y) = tiny_cnn().train(), batch(6)
    sq = brute_input_gradient_sq(model, x, y)
    ce = F.cross_entropy(model(x), y)

    def penalty(reduction: str) -> float:
        loss, logs = build_defense({"name": "input_gradient", "lambda": 1.0, "reduction": reduction}).training_step(
            model, x, y
        )
        assert logs["ce"] == pytest.approx(ce.item(), rel=1e-12)
        assert logs["input_gradient_norm"] == pytest.approx(sq.sqrt().mean().item(), rel=1e-10)
        return loss.item() - logs["ce"]

    # same objective with λ_mean = N·λ_sum: the mean form's penalty is N times smaller at equal λ
    assert penalty("sum") == pytest.approx(sq.mean().item(), rel=1e-10)
    assert penalty("mean") == pytest.approx(sq.mean().item() / len(x), rel=1e-10)


def test_cross_lipschitz_pair_identity_and_linear_closed_form():
    model, (x, _) = tiny_cnn().eval(), batch(6)
    jac = input_jacobian(model, x)
    rows = jac.flatten(2)
    two_terms = 2 * K * rows.pow(2).sum((1, 2)) - 2 * rows.sum(1).pow(2).sum(1)
    brute = brute_cross_lipschitz(jac)
    torch.testing.assert_close(cross_lipschitz_from_jacobian(jac), brute, rtol=1e-12, atol=0)
    torch.testing.assert_close(two_terms, brute, rtol=1e-10, atol=0)
    assert (brute > 0).all() and not torch.allclose(brute[0], brute[1])

    # a linear model's rows are its weight rows w_k, the same at every x; ordered pairs count twice
    lin = linear()
    w = lin[1].weight.detach()
    pairs = sum((w[k] - w[j]).pow(2).sum() for j in range(K) for k in range(j + 1, K))
    got = cross_lipschitz_from_jacobian(input_jacobian(lin, x))
    torch.testing.assert_close(got, (2 * pairs).expand(len(x)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["input_gradient", "cross_lipschitz"])
def test_lambda_zero_is_plain_cross_entropy(name):
    model, (x, y) = tiny_cnn(dtype=torch.float32).train(), batch(dtype=torch.float32)
    loss, logs = build_defense({"name": name, "lambda": 0}).training_step(model, x, y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ce = F.cross_entropy(model(x), y)
    ce.backward()
    assert loss.item() == ce.item()
    assert logs[{"input_gradient": "input_gradient_norm", "cross_lipschitz": "cross_lipschitz"}[name]] > 0
    for got, expected in zip(grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, expected)


def _mean_input_gradient_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return brute_input_gradient_sq(model, x, y).sqrt().mean().item()


def _mean_cross_lipschitz(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return cross_lipschitz_from_jacobian(input_jacobian(model, x)).mean().item()


STEPS = 20


@pytest.mark.parametrize(
    ("params", "measure", "ratio"),
    [
        # measured here: mean ‖∇ₓℓ‖ 0.227 vs 0.421 (ratio 0.54); eq. 6 per example 5.4 vs 9.6 (0.56)
        ({"name": "input_gradient", "lambda": 1.0}, _mean_input_gradient_norm, 0.7),
        ({"name": "cross_lipschitz", "lambda": 0.01}, _mean_cross_lipschitz, 0.7),
    ],
    ids=["input_gradient", "cross_lipschitz"],
)
def test_training_lowers_the_regularised_quantity_compared_with_plain_training(params, measure, ratio):
    x, y = batch(32, seed=1, dtype=torch.float32)
    x_test, y_test = batch(64, seed=2, dtype=torch.float32)

    def train(params: dict) -> float:
        model = fit_with_defense(tiny_cnn(dropout=True, dtype=torch.float32), params, x, y, steps=STEPS)
        return measure(model, x_test, y_test)

    plain = train({"name": "none"})
    regularised = train(params)
    assert regularised < ratio * plain


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"name": "input_gradient"}, "defense.lambda"),
        ({"name": "input_gradient", "lambda": -1.0}, "defense.lambda"),
        ({"name": "input_gradient", "lambda": "1"}, "defense.lambda"),
        ({"name": "input_gradient", "lambda": 1.0, "reduction": "eq4"}, "defense.reduction"),
        ({"name": "input_gradient", "lambda": 1.0, "projections": 2}, "defense.projections"),
        ({"name": "cross_lipschitz"}, "defense.lambda"),
        ({"name": "cross_lipschitz", "lambda": float("inf")}, "defense.lambda"),
        ({"name": "cross_lipschitz", "lambda": True}, "defense.lambda"),
        ({"name": "cross_lipschitz", "lambda": 0.01, "reduction": "sum"}, "defense.reduction"),
        (
            {"name": "cross_lipschitz", "lambda": 0.01, "adversarial": {"fraction": 2, "attack": {"name": "fgsm"}}},
            "defense.adversarial.fraction",
        ),
    ],
)
def test_bad_params_name_the_params_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense(params)
    assert error.value.key == key
    assert f"'{key}'" in str(error.value)


def test_adversarial_params_are_accepted():
    adversarial = {"fraction": 0.1, "attack": {"name": "deepfool", "steps": 50, "overshoot": 0.02}}
    for name in ("input_gradient", "cross_lipschitz"):
        defense = build_defense({"name": name, "lambda": 1, "adversarial": adversarial})
        assert defense.lam == 1.0 and defense.adversarial.fraction == 0.1 and defense.adversarial.attack == "deepfool"
