"""Jakubovitz & Giryes Appendix C/D: the Jacobian penalty on layer L−1 / L−2 and weights fixed to
orthonormal columns (robust/models/head.py, the jacobian defense's ``layer``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian as brute_jacobian

from robust.defenses import build_defense
from robust.errors import ConfigError
from robust.io import load_torch
from robust.models.head import fix_orthonormal, last_linear_layers, layer_input
from robust.params import load_params
from robust.pipeline import defense_config, finetune_run, prepare_dataset, pretrain_base

REPO = Path(__file__).resolve().parents[1]
K = 4
LAM = 0.3


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 36, 9), nn.Tanh(),
                         nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, K)).double()


def batch(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand((n, 1, 6, 6), generator=g, dtype=torch.float64), torch.randint(0, K, (n,), generator=g)


def test_fixing_sets_orthonormal_rows_freezes_weights_and_keeps_biases_trainable():
    model = tiny_net()
    fix_orthonormal(model, 2, initialise=True)
    last, before_last = model[7], model[5]
    for layer in (last, before_last):
        w = layer.weight
        assert torch.allclose(w @ w.T, torch.eye(len(w), dtype=w.dtype), atol=1e-10)  # W = weightᵀ: orthonormal columns
        assert not w.requires_grad and layer.bias.requires_grad
    assert model[3].weight.requires_grad  # only the last two
    saved = model[7].weight.clone()
    fix_orthonormal(model, 1, initialise=False)  # reloading keeps the weights
    assert torch.equal(model[7].weight, saved)


def test_fixing_or_regularizing_more_layers_than_the_head_has_names_the_key():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, K))
    with pytest.raises(ConfigError, match=r"'pretrain.fixed_orthonormal'.*2 fully connected.*has 1"):
        fix_orthonormal(model, 2, initialise=True, key="pretrain.fixed_orthonormal")
    with pytest.raises(ConfigError, match=r"more outputs than inputs"):
        fix_orthonormal(nn.Sequential(nn.Linear(3, 5)), 1, initialise=True)
    with pytest.raises(ConfigError, match=r"'defense.layer'"):
        build_defense({"name": "jacobian", "lambda": 0.1, "layer": "L-2"}).loss(model, *batch())
    with pytest.raises(ConfigError, match=r"'defense.layer'.*allowed: L, L-1, L-2"):
        build_defense({"name": "jacobian", "lambda": 0.1, "layer": "L-3"})


def test_layer_input_captures_what_the_layer_multiplies():
    model, (x, _) = tiny_net(), batch()
    with layer_input(model, 1, "k") as z1, layer_input(model, 2, "k") as z2:
        model(x)
    assert torch.equal(z1[0], model[:7](x)) and torch.equal(z2[0], model[:5](x))
    assert last_linear_layers(model, 1, "k")[0] is model[7]
    model(x)
    assert len(z1) == 1  # the hook is gone after the block


@pytest.mark.parametrize("layer, depth", [("L", 8), ("L-1", 7), ("L-2", 5)])
def test_penalty_is_the_mean_frobenius_norm_of_the_layers_jacobian(layer, depth):
    model, (x, y) = tiny_net(), batch()
    defense = build_defense({"name": "jacobian", "lambda": LAM, "reduction": "mean", "layer": layer})
    loss, _ = defense.loss(model, x, y)
    head = model[:depth]
    norms = torch.stack([brute_jacobian(lambda v: head(v.unsqueeze(0))[0], xi).flatten(1).norm() for xi in x])
    expected = F.cross_entropy(model(x), y) + LAM * norms.mean()
    assert torch.allclose(loss, expected, atol=1e-10)
    # and its parameter gradients are those of the brute-force loss (double backpropagation)
    grad = torch.autograd.grad(loss, model[3].weight)[0]

    def brute(weight):
        def through(v):
            h = F.linear(model[:3](v), weight, model[3].bias)
            return model[4:depth](h)
        per = [brute_jacobian(lambda v: through(v.unsqueeze(0))[0], xi, create_graph=True).flatten(1).norm()
               for xi in x]
        logits = model[4:](F.linear(model[:3](x), weight, model[3].bias))
        return F.cross_entropy(logits, y) + LAM * torch.stack(per).mean()

    expected_grad = torch.autograd.grad(brute(model[3].weight), model[3].weight)[0]
    assert torch.allclose(grad, expected_grad, atol=1e-9)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("hidden")
    params = load_params(REPO / "params.yaml")
    params["profiles"]["smoke"].update(max_train=64, max_test=20)
    prepare_dataset(params, "data", root / "prepared")
    return params, root


def test_a_fixed_head_base_keeps_its_orthonormal_weights_through_fine_tuning(prepared, tmp_path):
    params, root = copy.deepcopy(prepared[0]), prepared[1]
    params["profiles"]["smoke"]["pretrain"]["epochs"] = 1
    params["profiles"]["smoke"]["finetune"]["epochs"] = 1
    params["pretrain"]["fixed_orthonormal"] = 1
    pretrain_base(params, "pretrain", root / "prepared", tmp_path / "base", name="fixed")
    base = load_torch(tmp_path / "base" / "model.pt")
    w = base["model"]["fc2.weight"]
    assert torch.allclose(w @ w.T, torch.eye(10), atol=1e-5) and base["config"]["fixed_orthonormal"] == 1
    params["defense"] = {"name": "jacobian", "lambda": 0.1, "reduction": "mean", "layer": "L-1", "projections": 2}
    finetune_run(params, "defense", "finetune", tmp_path / "base", root / "prepared", tmp_path / "run",
                 name="fixed-run", study="s")
    run = load_torch(tmp_path / "run" / "model.pt")
    assert torch.equal(run["model"]["fc2.weight"], w)  # never updated
    assert not torch.equal(run["model"]["fc1.weight"], base["model"]["fc1.weight"])  # the rest trains
    assert not torch.equal(run["model"]["fc2.bias"], base["model"]["fc2.bias"])
    assert run["config"]["fixed_orthonormal"] == 1
    params["pretrain"]["fixed_orthonormal"] = 3
    with pytest.raises(ConfigError, match=r"'pretrain.fixed_orthonormal'.*allowed: \[0, 2\]"):
        pretrain_base(params, "pretrain", root / "prepared", tmp_path / "bad", name="bad")


def test_a_defense_replaces_its_own_settings_for_one_profile(prepared):
    params = copy.deepcopy(prepared[0])
    params["defense"] = {"name": "jacobian", "lambda": 0.1, "projections": None,
                         "profiles": {"smoke": {"projections": 10}, "cpu": {"projections": 10}}}
    assert defense_config(params, "defense") == {"name": "jacobian", "lambda": 0.1, "projections": 10}
    params["profile"] = "paper"
    assert defense_config(params, "defense") == {"name": "jacobian", "lambda": 0.1, "projections": None}
    params["defense"]["profiles"]["paper"] = {"layer": "L-1"}  # a setting the defense does not state
    with pytest.raises(ConfigError, match=r"'defense.profiles.paper.layer'"):
        defense_config(params, "defense")
