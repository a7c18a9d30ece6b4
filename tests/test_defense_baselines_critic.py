"""Baselines of the adversary-critic study (VAT, L2 margin maximisation, FGSM adversarial
training) and its architectures (critic-fc, LeNet-5)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from prototypes import affine_classifier, trained_classifier

from robust.defenses import build_defense
from robust.defenses.margin import linearized_margins, margin_sensitivity, multiclass_hinge
from robust.defenses.vat import kl_from_logits, unit_norm, virtual_adversarial_perturbation
from robust.errors import ConfigError
from robust.models import build_model


@pytest.fixture(scope="module")
def fixture():
    return trained_classifier(64, 0.8)


# ---- VAT ------------------------------------------------------------------------------


def _random_direction(like: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    d = torch.randn(like.shape, generator=torch.Generator().manual_seed(seed), dtype=like.dtype)
    return eps * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vat_perturbation_has_norm_eps_and_beats_random_directions(dtype, fixture):
    model, x, _ = copy.deepcopy(fixture)
    model, x = model.to(dtype), x.to(dtype)
    eps = 0.5
    r = virtual_adversarial_perturbation(model, x, eps=eps, xi=1e-6, power_iterations=1,
                                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(r.flatten(1).norm(dim=1), torch.full((64,), eps, dtype=dtype))
    with torch.no_grad():
        log_p = model(x).log_softmax(1)
        kl_vadv = kl_from_logits(log_p, model(x + r))
        kl_random = torch.stack([kl_from_logits(log_p, model(x + _random_direction(x, eps, s))) for s in range(5)])
    # measured: mean KL ≈ 10 along r_vadv vs ≈ 0.35 along random directions of the same norm
    assert kl_vadv.mean() > 5 * kl_random.mean()
    assert (kl_vadv > kl_random.mean(0)).float().mean() > 0.75


@pytest.mark.parametrize("scale", [1.0, 1e-10, 1e-25, 1e-40])
def test_vat_directions_are_unit_even_where_squares_underflow(scale):
    # a confident model's KL gradient at ξ = 1e-6 reaches entries of 1e-25, whose float32 squares
    # are 0: the plain division then gave a "unit" vector of norm ~1e14 and VAT's loss ~1e11
    t = scale * torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t[2] = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(1))
    u = unit_norm(t)
    torch.testing.assert_close(u.flatten(1).norm(dim=1), torch.ones(3))
    torch.testing.assert_close(u[0] / u[0].abs().max(), t[0] / t[0].abs().max())
    # an example of normal size is divided as before, bit for bit, whatever its batch holds
    assert torch.equal(u[2], t[2] / torch.linalg.vector_norm(t[2]))


def test_vat_direction_of_a_zero_gradient_stays_zero():
    t = torch.zeros(2, 1, 4, 4)
    t[1, 0, 0, 0] = 3.0
    u = unit_norm(t)
    assert torch.equal(u[0], torch.zeros(1, 4, 4)) and u[1, 0, 0, 0] == 1.0


def test_vat_loss_is_ce_plus_lambda_kl_and_follows_the_generator(fixture):
    model, x, y = copy.deepcopy(fixture)
    defense = build_defense({"name": "vat", "eps": 0.5, "lambda": 2.0})
    defense.generator = torch.Generator().manual_seed(0)
    loss, logs = defense.training_step(model, x, y)
    r = virtual_adversarial_perturbation(model, x, eps=0.5, xi=1e-6, power_iterations=1,
                                         generator=torch.Generator().manual_seed(0))
    logits = model(x)
    expected = F.cross_entropy(logits, y) + 2.0 * kl_from_logits(logits.detach().log_softmax(1), model(x + r)).mean()
    torch.testing.assert_close(loss, expected)
    assert logs["lds"] > 0
    defense.generator = torch.Generator().manual_seed(1)
    assert defense.training_step(model, x, y)[1]["lds"] != logs["lds"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vat_without_generator_is_refused(fixture):
    model, x, y = fixture
    with pytest.raises(ValueError, match="generator"):
        build_defense({"name": "vat", "eps": 2.0}).training_step(model, x, y)


# ---- margin maximisation --------------------------------------------------------------


def test_linearized_margins_are_exact_for_an_affine_classifier():
    model, linear, x, logits, y = affine_classifier(torch.Generator().manual_seed(0), n_classes=4)
    _, margins = linearized_margins(model, x, y)
    w, f = linear.weight, logits
    for i in range(len(x)):
        others = [k for k in range(4) if k != y[i]]
        exact = torch.stack([(f[i, y[i]] - f[i, k]) / (w[y[i]] - w[k]).norm() for k in others])
        torch.testing.assert_close(margins[i], exact, rtol=1e-5, atol=0)
    assert (margins > 0).all()  # the points are labelled by the model itself


def test_distance_margin_loss_is_plain_ce_when_every_margin_exceeds_gamma_and_positive_otherwise():
    model, _, x, _, y = affine_classifier(torch.Generator().manual_seed(0), n_classes=4)
    _, margins = linearized_margins(model, x, y)
    smallest = margins.min().item()
    ce = F.cross_entropy(model(x), y)

    distance = {"name": "margin", "objective": "distance", "lambda": 0.1}
    loss, logs = build_defense({**distance, "gamma": 0.5 * smallest}).training_step(model, x, y)
    assert logs["margin_hinge"] == 0 and loss.item() == pytest.approx(ce.item(), rel=1e-12)

    gamma = 2 * margins.min(1).values.max().item()
    loss, logs = build_defense({**distance, "gamma": gamma}).training_step(model, x, y)
    expected = ce + 0.1 * (gamma - margins.min(1).values).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert model[1].weight.grad.abs().sum() > 0


def _mean_smallest_margin_after(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict) -> float:
    model = copy.deepcopy(base)
    defense = build_defense(params)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        model.train()
        optimizer.zero_grad()
        loss, _ = defense.training_step(model, x, y)
        loss.backward()
        optimizer.step()
    model.eval()
    return linearized_margins(model, x, y, create_graph=False)[1].min(1).values.mean().item()


def test_distance_margin_training_enlarges_the_smallest_margin_more_than_plain_training(fixture):
    base, x, y = fixture
    # measured: 0.14 before, 0.20 after plain training, 0.28 after margin training
    plain = _mean_smallest_margin_after(base, x, y, {"name": "none"})
    distance = {"name": "margin", "objective": "distance", "lambda": 10.0, "gamma": 2.0}
    assert _mean_smallest_margin_after(base, x, y, distance) > 1.2 * plain


def _separable_line(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in the plane, x₁ ≤ −1 and x₁ ≥ 1, spread along x₂, with the points (∓1, 0) in
    them: the maximum-margin boundary is x₁ = 0, at distance 1 from both classes."""
    gen = torch.Generator().manual_seed(0)
    along, away = 6 * torch.rand(n, generator=gen) - 3, 1 + 2 * torch.rand(n, generator=gen)
    away[0] = away[n // 2] = 1.0
    along[0] = along[n // 2] = 0.0
    sign = torch.where(torch.arange(n) < n // 2, -1.0, 1.0)
    x = torch.stack([sign * away, along], 1).double().view(n, 1, 1, 2)
    return x, (sign > 0).long()


@pytest.mark.parametrize(("lam", "reaches_max_margin"), [(0.01, True), (0.0, False)])
def test_sensitivity_objective_finds_the_svm_solution_of_a_linear_classifier(lam, reaches_max_margin):
    # "generalizes SVM objective": for a linear model hinge + λ‖w_y − w_l‖² is the soft-margin SVM,
    # whose boundary for small λ is the maximum-margin one; the hinge alone stops at any separator
    # with functional margin 1 (measured: smallest distance 0.996 with λ = 0.01, 0.75 without)
    x, y = _separable_line()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2)).double()
    defense = build_defense({"name": "margin", "lambda": lam})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(500):
        optimizer.zero_grad()
        defense.training_step(model, x, y)[0].backward()
        optimizer.step()
    smallest = linearized_margins(model, x, y, create_graph=False)[1].min().item()
    assert (smallest > 0.99) == reaches_max_margin and smallest <= 1 + 1e-9


def test_sensitivity_of_an_affine_classifier_is_the_largest_squared_weight_difference():
    model, linear, x, logits, y = affine_classifier(torch.Generator().manual_seed(0), n_classes=4)
    w = linear.weight
    _, sensitivity = margin_sensitivity(model, x, y)
    expected = torch.stack([max((w[k] - w[y[i]]).pow(2).sum() for k in range(4)) for i in range(len(x))])
    torch.testing.assert_close(sensitivity, expected, rtol=1e-10, atol=0)


def test_multiclass_hinge_is_crammer_singer_with_margin_one():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, 1.5], [1.0, 1.0, -4.0]])
    y = torch.tensor([0, 2, 1])
    # 1 + max rival − own: 1 + 2.5 − 3 = 0.5; 1 + 2 − 1.5 = 1.5; 1 + 1 − 1 = 1
    torch.testing.assert_close(multiclass_hinge(logits, y), torch.tensor([0.5, 1.5, 1.0]))
    assert multiclass_hinge(torch.tensor([[5.0, 1.0]]), torch.tensor([0])).item() == 0


def test_sensitivity_loss_is_hinge_plus_lambda_times_sensitivity_and_reaches_the_weights():
    model, _, x, logits, y = affine_classifier(torch.Generator().manual_seed(1), n_classes=4)
    _, sensitivity = margin_sensitivity(model, x, y)
    loss, logs = build_defense({"name": "margin", "lambda": 0.1}).training_step(model, x, y)
    expected = multiclass_hinge(logits, y).mean() + 0.1 * sensitivity.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert logs["sensitivity"] == pytest.approx(sensitivity.mean().item(), rel=1e-10)
    # the penalty alone has a gradient on the weights (double backpropagation through ∇ₓf)
    (grad,) = torch.autograd.grad(margin_sensitivity(model, x, y)[1].mean(), model[1].weight)
    assert grad.abs().sum() > 0


# ---- adversarial training, as the paper's AT baseline ---------------------------------


def test_fgsm_adversarial_training_is_configured_through_the_at_defense(fixture):
    # "Adversarial Training [7, 8] (ϵ = 0.1)": half of each batch replaced by FGSM examples
    params = {"name": "at", "adversarial": {"fraction": 0.5, "attack": {"name": "fgsm", "eps": 0.1}}}
    defense = build_defense(params)
    model, x, y = copy.deepcopy(fixture)
    _, logs = defense.training_step(model, x, y)
    assert logs["adv_fraction"] == 0.5


# ---- params ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"name": "vat"}, "defense.eps"),
        ({"name": "vat", "eps": 0}, "defense.eps"),
        ({"name": "vat", "eps": 2.0, "xi": -1e-6}, "defense.xi"),
        ({"name": "vat", "eps": 2.0, "power_iterations": 0}, "defense.power_iterations"),
        ({"name": "vat", "eps": 2.0, "lambda": -1}, "defense.lambda"),
        ({"name": "margin"}, "defense.lambda"),
        ({"name": "margin", "lambda": 0.1, "objective": "svm"}, "defense.objective"),
        ({"name": "margin", "lambda": 0.1, "gamma": 1.0}, "defense.gamma"),
        ({"name": "margin", "lambda": 0.1, "objective": "distance"}, "defense.gamma"),
        ({"name": "margin", "lambda": 0.1, "objective": "distance", "gamma": 0}, "defense.gamma"),
        ({"name": "margin", "lambda": float("nan")}, "defense.lambda"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense(params)
    assert error.value.key == key


# ---- architectures --------------------------------------------------------------------


def test_paper_architectures_have_the_paper_layer_sizes():
    count = lambda m: sum(p.numel() for p in m.parameters())
    fc = build_model("critic-fc", in_shape=(1, 28, 28), num_classes=10, width=1.0)
    assert count(fc) == (784 * 1200 + 1200) + 2 * (1200 * 1200 + 1200) + (1200 * 10 + 10)
    lenet = build_model("lenet5", in_shape=(1, 28, 28), num_classes=10, width=1.0)
    # VALID convolutions: 28 → 24 → 12 → 8 → 4, so FC 512 sees 4·4·64 features
    assert count(lenet) == (25 * 32 + 32) + (25 * 32 * 64 + 64) + (4 * 4 * 64 * 512 + 512) + (512 * 10 + 10)


@pytest.mark.parametrize("arch", ["critic-fc", "lenet5", "jakubovitz-mnist"])
def test_embed_and_head_compose_to_the_model(arch):
    torch.manual_seed(0)
    model = build_model(arch, in_shape=(1, 28, 28), num_classes=10, width=0.25).eval()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model.head(model.embed(x)), model(x))
    assert len(model.l2_weights()) == len([p for name, p in model.named_parameters() if "weight" in name]) - 1
