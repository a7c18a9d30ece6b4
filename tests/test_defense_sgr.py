"""SGR and GN (Roth et al. 2018): Ω against a per-example hand computation, the two covariance
representations against each other, EMA and standardisation, state, errors, memory; the SGR CNN."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from robust.attacks import run_attack
from robust.covariance import FunctionCovariance, MatrixCovariance, ema, max_radius, normalize_per_example
from robust.defenses import build_defense
from robust.errors import ConfigError
from robust.models import build_model

SHAPE = (2, 5, 5)  # C, H, W: small enough for explicit D×D matrices
K = 3


def tiny_model(channels: int = SHAPE[0], side: int = SHAPE[1], dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(3 * side * side, K)).to(dtype)


def batch(n: int = 6, shape=SHAPE, seed: int = 1, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g, dtype=dtype), torch.randint(0, K, (n,), generator=g)


def sgr(**params):
    defense = build_defense({"name": "sgr", "lambda": 0.7, **params})
    defense.generator = torch.Generator().manual_seed(0)
    return defense


def per_example_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g_i = ∇ₓ log p(y_i | x_i), one example at a time."""
    rows = []
    for xi, yi in zip(x, y):
        xi = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.log_softmax(model(xi), 1)[0, yi], xi)
        rows.append(g[0].flatten())
    return torch.stack(rows)


def radius_and_same_channel(channels: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major D×D maps of round(‖p − q‖₂) and of c = c′ (eq. 16's indexing)."""
    c = torch.arange(channels).repeat_interleave(height * width)
    py = torch.arange(height).repeat_interleave(width).repeat(channels)
    px = torch.arange(width).repeat(height * channels)
    r = ((py[:, None] - py[None]) ** 2 + (px[:, None] - px[None]) ** 2).double().sqrt().round().long()
    return r, c[:, None] == c[None]


def stationary(zeta: float = 2.0, shape=SHAPE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LRC-style covariance functions exp(−r/ζ), 0.5·exp(−r/ζ) and the D×D matrix they define."""
    radii = torch.arange(max_radius(*shape[1:]) + 1, dtype=torch.float64)
    intra, inter = torch.exp(-radii / zeta), 0.5 * torch.exp(-radii / zeta)
    r, same = radius_and_same_channel(*shape)
    return intra, inter, torch.where(same, intra[r], inter[r])


def loaded(defense, state_covariance: dict, step: int = 1):
    """The defense with a given Σ, past its update step (update_every large: Σ stays fixed)."""
    defense.load_state_dict({"step": step, "covariance": state_covariance, "data": defense.data.state_dict()})
    return defense


# ---- the regulariser ----------------------------------------------------------------


def test_first_step_equals_hand_computed_ce_plus_lambda_omega():
    model, (x, y) = tiny_model(), batch()
    loss, logs = sgr(covariance="matrix").training_step(model, x, y)

    g = per_example_gradients(model, x, y)
    xi = g / g.pow(2).mean(1, keepdim=True).sqrt()  # perturbations at mean square 1
    sigma = xi.T @ xi / len(xi)  # first EMA value: the batch's raw second moments
    data_variance = x.flatten(1).var(0, unbiased=False).mean()
    sigma = sigma * data_variance / sigma.diagonal().mean()
    omega = sum(gi @ sigma @ gi for gi in g) / (2 * len(x))
    ce = F.cross_entropy(model(x), y)
    torch.testing.assert_close(loss, ce + 0.7 * omega)
    assert logs["omega"] == pytest.approx(omega.item())
    assert logs["covariance_scale"] == pytest.approx((data_variance / torch.diagonal(xi.T @ xi / 6).mean()).item())


def test_identity_covariance_is_gradient_norm_regularization():
    model, (x, y) = tiny_model(), batch()
    g = per_example_gradients(model, x, y)
    expected = F.cross_entropy(model(x), y) + 0.7 * g.pow(2).sum() / (2 * len(x))
    gn = build_defense({"name": "gn", "lambda": 0.7})
    torch.testing.assert_close(gn.training_step(model, x, y)[0], expected)
    dim = math.prod(SHAPE)
    identity = loaded(sgr(covariance="matrix", data_variance=1.0, update_every=99),
                      {"matrix": torch.eye(dim, dtype=torch.float64)})
    torch.testing.assert_close(identity.training_step(model, x, y)[0], expected)


def test_lambda_zero_is_plain_cross_entropy():
    model, (x, y) = tiny_model(), batch()
    loss, _ = build_defense({"name": "sgr", "lambda": 0.0}).training_step(model, x, y)
    assert torch.equal(loss, F.cross_entropy(model(x), y))


@pytest.mark.parametrize("covariance", ["matrix", "function"])
def test_regulariser_gradients_reach_every_parameter(covariance):
    model, (x, y) = tiny_model(), batch()
    loss, _ = sgr(covariance=covariance).training_step(model, x, y)
    with_omega = torch.autograd.grad(loss, list(model.parameters()))
    ce_only = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for total, ce in zip(with_omega, ce_only):
        assert torch.isfinite(total).all()
        assert (total - ce).abs().max() > 1e-6  # the double-backward term moved every parameter


# ---- matrix vs function -------------------------------------------------------------


def test_function_estimate_is_the_average_of_matrix_entries_at_each_distance():
    xi = torch.randn((7, 3, 6, 5), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    matrix = MatrixCovariance.batch_estimate(xi)
    intra, inter = FunctionCovariance.batch_estimate(xi)
    r, same = radius_and_same_channel(3, 6, 5)
    assert len(intra) == max_radius(6, 5) + 1 == 7  # round(√(5² + 4²)) = 6
    for radius in range(len(intra)):
        assert intra[radius] == pytest.approx(matrix[(r == radius) & same].mean().item(), abs=1e-12)
        assert inter[radius] == pytest.approx(matrix[(r == radius) & ~same].mean().item(), abs=1e-12)
    assert intra[0] == pytest.approx(matrix.diagonal().mean().item())


def test_matrix_and_function_agree_on_a_stationary_covariance_in_value_and_gradient():
    intra, inter, matrix = stationary()
    g = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    as_matrix, as_function = MatrixCovariance(0.1), FunctionCovariance(0.1)
    as_matrix.load_state_dict({"matrix": matrix})
    as_function.load_state_dict({"intra": intra, "inter": inter})
    torch.testing.assert_close(as_function.apply(g), as_matrix.apply(g))
    torch.testing.assert_close(as_matrix.apply(g).flatten(1), g.flatten(1) @ matrix)
    # the FFT product is the convolution with the centred displacement kernel
    direct = F.conv2d(g, as_function.kernel(2, 5, 5), padding=(4, 4))
    torch.testing.assert_close(as_function.apply(g), direct)

    model, (x, y) = tiny_model(), batch()
    losses, grads = [], []
    for covariance, state in [("matrix", {"matrix": matrix}), ("function", {"intra": intra, "inter": inter})]:
        defense = loaded(sgr(covariance=covariance, data_variance=0.3, update_every=99), state)
        loss, _ = defense.training_step(model, x, y)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    torch.testing.assert_close(losses[0], losses[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operator returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("source", ["grad", {"name": "fgsm", "eps": 0.03}])
def test_function_path_never_builds_a_d_by_d_tensor(source):
    shape = (3, 32, 32)
    dim = math.prod(shape)
    model, (x, y) = tiny_model(3, 32, torch.float32), batch(4, shape, dtype=torch.float32)
    largest = {}
    for covariance in ("function", "matrix"):
        defense = sgr(covariance=covariance, covariance_from=source)
        with LargestTensor() as mode:
            for _ in range(2):  # an estimate, an EMA update, Σg, and the double backward
                loss, _ = defense.training_step(model, x, y)
                loss.backward()
        largest[covariance] = mode.largest
    assert largest["matrix"] >= dim**2  # the probe sees a D×D tensor when there is one
    # the function path's largest tensors are padded per-example spectra (B·C·(2H−1)·(2W−1) complex
    # numbers ≈ 8·B·D reals): linear in B·D, here 1% of D²
    assert largest["function"] < dim**2 / 50


# ---- estimation, EMA, standardisation, state --------------------------------------


def test_ema_and_update_every():
    model, (x, y) = tiny_model(), batch()
    defense = sgr(covariance="matrix", covariance_from="sign", update_every=2, beta=0.25)
    seen = []
    for _ in range(4):
        g = per_example_gradients(model, x, y)
        estimate = MatrixCovariance.batch_estimate(normalize_per_example(g.sign()))
        seen.append(estimate)
        defense.training_step(model, x, y)
        with torch.no_grad():  # move the model, so each step's gradients differ
            model[0].weight.add_(0.3 * torch.randn_like(model[0].weight))
    # updated at steps 0 and 2 only: Σ = 0.75·Σ̂_0 + 0.25·Σ̂_2
    torch.testing.assert_close(defense.covariance.matrix, 0.75 * seen[0] + 0.25 * seen[2])
    assert not torch.allclose(seen[1], seen[0]) and not torch.allclose(seen[2], seen[0])
    assert defense.step == 4
    torch.testing.assert_close(ema(torch.ones(2), torch.zeros(2), 0.1), torch.full((2,), 0.9))


@pytest.mark.parametrize("covariance", ["matrix", "function"])
def test_standardised_average_diagonal_equals_the_data_covariance_average_diagonal(covariance):
    model = tiny_model()
    defense = sgr(covariance=covariance)
    batches = [batch(5, seed=s) for s in range(3)]
    for x, y in batches:
        defense.training_step(model, x, y)
    x_all = torch.cat([x for x, _ in batches]).flatten(1)
    data_variance = x_all.var(0, unbiased=False).mean().item()
    assert defense.data.value() == pytest.approx(data_variance)
    assert defense.scale() * defense.covariance.average_diagonal().item() == pytest.approx(data_variance)
    fixed = sgr(covariance=covariance, data_variance=0.25)
    fixed.training_step(model, *batches[0])
    assert fixed.scale() * fixed.covariance.average_diagonal().item() == pytest.approx(0.25)


def test_attack_source_uses_the_attack_perturbations():
    model, (x, y) = tiny_model(), batch()
    defense = sgr(covariance="matrix", covariance_from={"name": "fgsm", "eps": 0.05})
    defense.training_step(model, x, y)
    delta = run_attack("fgsm", model.eval(), x, y, eps=0.05) - x
    torch.testing.assert_close(defense.covariance.matrix, MatrixCovariance.batch_estimate(normalize_per_example(delta)))


@pytest.mark.parametrize("covariance", ["matrix", "function"])
def test_state_dict_round_trip_continues_identically(covariance):
    model = tiny_model()
    first = sgr(covariance=covariance, update_every=2)
    for seed in range(3):
        first.training_step(model, *batch(seed=seed))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = sgr(covariance=covariance, update_every=2)
    resumed.load_state_dict(torch.load(buffer))
    for seed in (3, 4):  # step 3 keeps Σ, step 4 updates it
        a, _ = first.training_step(model, *batch(seed=seed))
        b, _ = resumed.training_step(model, *batch(seed=seed))
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected keys"):
        resumed.load_state_dict({"critic": {}})


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"lambda": -1.0}, "defense.lambda"),
        ({"covariance": "full"}, "defense.covariance"),
        ({"covariance_from": "fgsm"}, "defense.covariance_from"),
        ({"covariance_from": {"eps": 0.1}}, "defense.covariance_from"),
        ({"covariance_from": {"name": "pgd", "eps": 0.1}}, "defense.covariance_from.steps"),
        ({"covariance_from": {"name": "fgsm", "eps": 0.1, "stepz": 1}}, "defense.covariance_from.stepz"),
        ({"beta": 0.0}, "defense.beta"),
        ({"beta": 1.5}, "defense.beta"),
        ({"update_every": 0}, "defense.update_every"),
        ({"update_every": 1.5}, "defense.update_every"),
        ({"data_variance": 0.0}, "defense.data_variance"),
        ({"momentum": 0.9}, "defense.momentum"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        build_defense({"name": "sgr", "lambda": 0.1, **params})


def test_gn_rejects_negative_lambda_and_covariance_settings():
    with pytest.raises(ConfigError, match="'defense.lambda'"):
        build_defense({"name": "gn", "lambda": -0.1})
    with pytest.raises(ConfigError, match="'defense.covariance'"):
        build_defense({"name": "gn", "lambda": 0.1, "covariance": "matrix"})


# ---- the CNN ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "in_shape", "expected"),
    [
        # conv 3×3 VALID: 28 → 26 → 24 → pool 12 → 10 → 8 → pool 4; 32 → … → 5
        ("sgr-mnist", (1, 28, 28), [(1, 32), (32, 32), (32, 64), (64, 64), (64 * 16, 200), (200, 200), (200, 10)]),
        ("sgr-cifar10", (3, 32, 32), [(3, 64), (64, 64), (64, 128), (128, 128), (128 * 25, 256), (256, 256),
                                      (256, 10)]),
    ],
)
def test_sgr_cnn_layers_and_output(arch, in_shape, expected):
    model = build_model(arch, in_shape=in_shape, num_classes=10).eval()
    count = sum(9 * a * b + b for a, b in expected[:4]) + sum(a * b + b for a, b in expected[4:])
    assert sum(p.numel() for p in model.parameters()) == count
    x = torch.rand(2, *in_shape)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    torch.testing.assert_close(model.head(model.embed(x)), logits)
    # per-image standardisation inside: a per-image contrast and brightness change is invisible
    torch.testing.assert_close(model(0.5 * x + 0.2), logits, rtol=1e-4, atol=1e-5)
    assert len(model.l2_weights()) == 7


def test_sgr_cnn_refuses_too_small_inputs():
    with pytest.raises(ValueError, match="16×16"):
        build_model("sgr-mnist", in_shape=(1, 8, 8), num_classes=10)
