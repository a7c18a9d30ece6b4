"""Alignment of input and saliency map (Etmann et al. 2019): exact values on linear models, batching."""

import torch
from torch import nn

from robust.evaluate import AttackSpec, evaluate
from robust.jacobian import input_jacobian
from robust.models import build_model
from robust.models.layers import PerImageStandardize
from robust.saliency import alignment, alignment_from_jacobian, saliency, scale_invariant


def _linear(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model.eval()


def test_a_gradient_equal_to_the_input_has_alignment_one():
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    # class 0's weight row is x itself (and wins), class 1's is small
    model = _linear(torch.stack([x.flatten(), 0.01 * torch.ones(16, dtype=torch.float64)]))
    torch.testing.assert_close(alignment(model, x), torch.ones(1, dtype=torch.float64))
    # a negative multiple of x is aligned as well: the absolute cosine
    assert alignment(_linear(torch.stack([-x.flatten(), x.flatten()])), x, torch.tensor([0])).item() > 1 - 1e-12


def test_an_orthogonal_gradient_has_alignment_zero_and_a_zero_gradient_no_nan():
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0]], dtype=torch.float64).view(1, 1, 2, 2)
    model = _linear(torch.tensor([[0.0, 3.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    assert alignment(model, x, torch.tensor([0])).item() == 0.0
    assert alignment(model, x, torch.tensor([1])).item() == 0.0  # zero gradient: 0, not NaN


def test_the_class_is_the_predicted_one_unless_given():
    x = torch.rand(5, 1, 3, 3, dtype=torch.float64)
    weight = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = _linear(weight)
    predicted = model(x).argmax(1)
    torch.testing.assert_close(saliency(model, x).flatten(1), weight[predicted])
    rows, flat = weight[predicted], x.flatten(1)
    expected = (rows * flat).sum(1).abs() / (rows.norm(dim=1) * flat.norm(dim=1))
    torch.testing.assert_close(alignment(model, x), expected)
    other = (predicted + 1) % 3
    torch.testing.assert_close(saliency(model, x, other).flatten(1), weight[other])


def test_batched_equals_one_example_at_a_time():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).double().eval()
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    batched = alignment(model, x)
    single = torch.cat([alignment(model, x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, single)
    assert ((batched >= 0) & (batched <= 1 + 1e-12)).all()
    assert not any(p.grad is not None for p in model.parameters())  # no gradient left on the model


def test_a_jacobian_row_gives_the_alignment_of_its_own_backward_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    x = torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    jacobian = input_jacobian(model, x)
    predicted = model(x).argmax(1)
    torch.testing.assert_close(alignment_from_jacobian(jacobian, x, predicted), alignment(model, x), rtol=0, atol=1e-6)
    other = (predicted + 1) % 4
    torch.testing.assert_close(alignment_from_jacobian(jacobian, x, other), alignment(model, x, other),
                               rtol=0, atol=1e-6)


def test_evaluate_reports_the_mean_alignment_as_a_clean_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x, y = torch.rand(10, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    result = evaluate(model, x, y, [AttackSpec("fgsm", {"eps": 0.1})], batch_size=4, seed=0)
    row = next(r for r in result.rows if r["attack"] == "clean" and r["metric"] == "alignment")
    assert abs(row["value"] - alignment(model, x).mean().item()) < 1e-12 and row["n"] == 10


def _standardising_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(PerImageStandardize(), nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 4)).double().eval()


def test_a_network_that_standardises_each_image_has_alignment_zero_for_every_input():
    # the reason the evaluation writes no alignment for such networks: the number is 0 by construction
    model = _standardising_model()
    x = torch.rand(8, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert scale_invariant(model) and not scale_invariant(nn.Sequential(nn.Flatten(), nn.Linear(36, 4)))
    assert alignment(model, x).abs().max().item() < 1e-10
    assert saliency(model, x).abs().max().item() > 1e-3  # the gradient itself is not zero


def test_evaluate_writes_no_alignment_for_a_network_that_standardises_each_image():
    model = _standardising_model()
    x, y = torch.rand(10, 1, 6, 6, dtype=torch.float64), torch.randint(0, 4, (10,))
    metrics = {row["metric"] for row in evaluate(model, x, y, [], batch_size=4, seed=0).rows}
    assert "alignment" not in metrics and "jacobian_fro" in metrics


def test_the_papers_standardising_networks_are_recognised():
    for arch in ("sgr-mnist", "wrn-34-10"):
        assert scale_invariant(build_model(arch, in_shape=(1, 28, 28), num_classes=10, width=0.125))
    assert not scale_invariant(build_model("jarn-mnist", in_shape=(1, 28, 28), num_classes=10, width=0.25))
