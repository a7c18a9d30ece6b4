"""robust.jacobian against brute force: torch.autograd.functional.jacobian per example,
closed forms for a linear model, and torch.func double-grad references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian as brute_jacobian
from torch.func import functional_call, grad, jacrev, vmap

from robust.jacobian import frobenius_sq_from_logits, input_jacobian, jacobian_frobenius_sq

SHAPE = (2, 6, 6)
K = 5


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(27, 8), nn.ReLU(), nn.Linear(8, K),
    ).double()


def linear() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, K)).double()


MODELS = {"cnn": tiny_cnn, "linear": linear}


def inputs(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def brute(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([brute_jacobian(lambda xi: model(xi[None])[0], xi) for xi in x])


@pytest.mark.parametrize("arch", MODELS)
def test_exact_jacobian_equals_brute_force(arch):
    model, x = MODELS[arch]().eval(), inputs()
    jac = input_jacobian(model, x)
    assert jac.shape == (len(x), K, *SHAPE)
    torch.testing.assert_close(jac, brute(model, x), rtol=1e-10, atol=1e-12)
    # rows differ between examples for the CNN, so a batch-summed gradient would be caught
    if arch == "cnn":
        assert not torch.allclose(jac[0], jac[1])


def test_linear_model_jacobian_is_the_weight():
    model, x = linear(), inputs()
    weight = model[1].weight.detach().view(K, *SHAPE)
    torch.testing.assert_close(input_jacobian(model, x), weight.expand(len(x), *weight.shape))
    torch.testing.assert_close(jacobian_frobenius_sq(model, x), weight.pow(2).sum().expand(len(x)))


@pytest.mark.parametrize("arch", MODELS)
def test_frobenius_sq_equals_brute_force_sum(arch):
    model, x = MODELS[arch]().eval(), inputs()
    expected = brute(model, x).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(jacobian_frobenius_sq(model, x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [2, 3, K, K + 4])
def test_chunked_equals_unchunked(chunk_size):
    model, x = tiny_cnn().eval(), inputs()
    torch.testing.assert_close(input_jacobian(model, x, chunk_size=chunk_size), input_jacobian(model, x))
    torch.testing.assert_close(
        jacobian_frobenius_sq(model, x, chunk_size=chunk_size), jacobian_frobenius_sq(model, x)
    )


def test_projection_estimator_is_unbiased():
    model, x = tiny_cnn().eval(), inputs()
    exact = jacobian_frobenius_sq(model, x)
    # each copy of an example draws its own directions: the mean over 2000 copies of a
    # 4-projection estimate is the mean of 8000 single-projection estimates (≈1.2% std)
    copies = 2000
    estimates = jacobian_frobenius_sq(
        model, x.repeat_interleave(copies, 0), projections=4, generator=torch.Generator().manual_seed(0)
    ).view(len(x), copies)
    torch.testing.assert_close(estimates.mean(1), exact, rtol=0.05, atol=0)
    # single estimates are noisy, not the exact value in disguise
    assert (estimates - exact[:, None]).abs().amax() > 0.1 * exact.max()


def test_projection_estimator_is_deterministic_for_a_fixed_generator():
    model, x = tiny_cnn().eval(), inputs()

    def estimate(seed: int) -> torch.Tensor:
        return jacobian_frobenius_sq(model, x, projections=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(estimate(7), estimate(7))
    assert not torch.equal(estimate(7), estimate(8))


def test_projection_needs_an_explicit_generator_and_valid_arguments():
    model, x = tiny_cnn().eval(), inputs()
    with pytest.raises(ValueError, match="Generator"):
        jacobian_frobenius_sq(model, x, projections=2)
    with pytest.raises(ValueError, match="projections"):
        jacobian_frobenius_sq(model, x, projections=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="chunk_size"):
        input_jacobian(model, x, chunk_size=0)


def _func_reference_grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂/∂θ Σ_i ‖J(x_i)‖²_F via torch.func (per-example jacrev under vmap, then grad)."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def total(p):
        jac = vmap(jacrev(lambda xi: functional_call(model, p, (xi[None],))[0]))(x)
        return jac.pow(2).sum()

    return grad(total)(params)


def test_create_graph_gradients_reach_the_parameters():
    model, x = tiny_cnn().eval(), inputs()
    jacobian_frobenius_sq(model, x, create_graph=True).sum().backward()
    reference = _func_reference_grads(model, x)
    for name, param in model.named_parameters():
        # the last bias does not enter J: autograd leaves its gradient None
        got = torch.zeros_like(param) if param.grad is None else param.grad
        torch.testing.assert_close(got, reference[name], rtol=1e-8, atol=1e-10)
    assert model[0].weight.grad.abs().sum() > 0


def test_create_graph_gradient_of_linear_model_is_closed_form():
    # Σ_i ‖W‖²_F over a batch of B: gradient 2·B·W; the bias does not enter J
    model, x = linear(), inputs(batch=3)
    input_jacobian(model, x, create_graph=True).pow(2).sum().backward()
    torch.testing.assert_close(model[1].weight.grad, 2 * 3 * model[1].weight.detach())
    assert model[1].bias.grad is None


def test_shared_forward_keeps_logits_usable():
    # the defense computes its CE from the same logits after the Jacobian passes
    model = tiny_cnn().eval()
    x = inputs().requires_grad_(True)
    logits = model(x)
    sq = frobenius_sq_from_logits(logits, x, create_graph=True)
    (logits.sum() + sq.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_without_create_graph_no_graph_is_kept():
    model, x = tiny_cnn().eval(), inputs()
    assert not input_jacobian(model, x).requires_grad
    assert input_jacobian(model, x, create_graph=True).requires_grad
