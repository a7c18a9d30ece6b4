"""‖J‖_F of logits and softmax outputs at evaluated points (Jakubovitz & Giryes Table 1)."""

import torch
from torch import nn
from torch.autograd.functional import jacobian

from robust.evaluate import evaluate, parse_suite
from robust.jacobian import input_jacobian
from robust.jacobian_norms import jacobian_norms, logits_and_jacobian


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4)).double().eval()


def test_norms_match_per_example_autograd_jacobians():
    model = _model()
    x = torch.rand(5, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    norms = jacobian_norms(model, x)
    for i in range(len(x)):
        logits_jacobian = jacobian(lambda xi: model(xi.unsqueeze(0)).squeeze(0), x[i])
        softmax_jacobian = jacobian(lambda xi: model(xi.unsqueeze(0)).softmax(1).squeeze(0), x[i])
        torch.testing.assert_close(norms["jacobian_fro"][i], logits_jacobian.norm())
        torch.testing.assert_close(norms["jacobian_fro_softmax"][i], softmax_jacobian.norm())


def test_the_jacobian_comes_with_the_logits_of_its_forward_pass():
    model = _model()
    x = torch.rand(5, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logits, jacobian = logits_and_jacobian(model, x)
    with torch.no_grad():
        assert torch.equal(logits, model(x))
    torch.testing.assert_close(jacobian, input_jacobian(model, x).flatten(2))
    assert not logits.requires_grad and not jacobian.requires_grad


def test_linear_logits_have_the_weight_norm_and_a_smaller_softmax_norm():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).eval()
    x = torch.rand(4, 6)
    norms = jacobian_norms(model, x)
    torch.testing.assert_close(norms["jacobian_fro"], model[1].weight.norm().expand(4))
    # the softmax factor diag p − ppᵀ has spectral norm below 1/2
    assert (norms["jacobian_fro_softmax"] < norms["jacobian_fro"] / 2).all()


def test_evaluation_reports_them_clean_and_at_minimal_perturbation_examples_only():
    model = _model().float()
    x = torch.rand(30, 1, 3, 4, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    suite = parse_suite([{"name": "fgsm", "eps": 0.05}, {"name": "deepfool", "steps": 50, "overshoot": 0.02}])
    rows = evaluate(model, x, y, suite, batch_size=8, seed=0).rows
    values = {(row["attack"], row["metric"]): row["value"] for row in rows}
    clean = jacobian_norms(model, x)
    for kind in ("jacobian_fro", "jacobian_fro_softmax"):
        assert abs(values["clean", kind] - clean[kind].mean().item()) < 1e-5
        assert values["deepfool", kind] > 0
        assert ("fgsm", kind) not in values
    # at DeepFool's boundary points the top two classes tie: the softmax is at its most sensitive
    assert values["deepfool", "jacobian_fro_softmax"] > values["clean", "jacobian_fro_softmax"]
