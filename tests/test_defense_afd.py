"""AFD (three updates per batch, discriminator, checkpoints), its TRADES and representation-matching
baselines, and the ResNet-18 they train."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from prototypes import accuracy, trained_classifier
from torch import nn

import robust.defenses.trades as trades_module
from robust.defenses import build_defense
from robust.defenses.afd import Discriminator, apgd_ce
from robust.errors import ConfigError
from robust.models import build_model
from robust.train import TrainConfig, train

K = 4
SHAPE = (1, 8, 8)
PGD = {"name": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.05}
_MEANS = torch.rand((K, *SHAPE), generator=torch.Generator().manual_seed(0))


def batch(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    return (_MEANS[y] + 0.15 * torch.randn((n, *SHAPE), generator=g)).clamp(0, 1), y


def small_resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet18-mnist", in_shape=SHAPE, num_classes=K, width=0.25).train()


def afd(seed: int = 0, **params):
    defense = build_defense({"name": "afd", "attack": PGD, "lr_embed": 0.5, "lr_disc": 0.5, **params})
    defense.generator = torch.Generator().manual_seed(seed)
    return defense


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> dict[str, bool]:
    return {name: not torch.equal(before[name], p) for name, p in module.named_parameters()}


# ---- AFD: the three updates --------------------------------------------------------------


def test_discriminator_step_changes_only_the_discriminator(monkeypatch):
    model, (x, y), defense = small_resnet(), batch(), afd()
    defense.training_step(model, x, y)  # builds Da
    model_before, disc_before = snapshot(model), snapshot(defense.disc)
    monkeypatch.setattr(defense, "_embedding_step", lambda *args: 0.0)
    defense.training_step(model, x, y)
    assert not any(changed(model_before, model).values())
    assert all(changed(disc_before, defense.disc).values())


def test_embedding_step_changes_embed_not_head_and_returned_loss_is_clean_ce():
    model, (x, y), defense = small_resnet(), batch(), afd()
    defense.training_step(model, x, y)
    model.zero_grad(set_to_none=True)
    before = snapshot(model)
    loss, logs = defense.training_step(model, x, y)
    moved = changed(before, model)
    assert not moved["head.weight"] and not moved["head.bias"]
    assert all(moved[name] for name in moved if not name.startswith("head."))
    # nothing left on the model's .grad, nor on Da's, from the two inner updates
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in defense.disc.parameters())
    # the returned loss is the clean CE of the updated model; its gradient reaches E and Dc
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, msg=name)
    assert grads["head.weight"].abs().sum() > 0 and grads["conv1.weight"].abs().sum() > 0
    assert logs["loss"] == logs["ce"] == pytest.approx(loss.item())


def test_gradients_the_trainer_already_holds_are_left_alone():
    model, (x, y), defense = small_resnet(), batch(), afd()
    held = {name: torch.full_like(p, 0.25) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = held[name].clone()
    defense.training_step(model, x, y)
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, held[name]), name


@pytest.mark.parametrize("gan_loss", ["softplus", "wgan"])
def test_logs_are_finite_floats_and_the_accuracy_is_a_fraction(gan_loss):
    model, (x, y) = small_resnet(), batch()
    _, logs = afd(gan_loss=gan_loss).training_step(model, x, y)
    assert {"ce", "disc_loss", "embed_loss", "disc_acc", "disc_clean", "disc_adv", "adv_acc", "loss"} <= set(logs)
    assert all(type(v) is float and math.isfinite(v) for v in logs.values())
    assert 0 <= logs["disc_acc"] <= 1
    if gan_loss == "softplus":  # both terms start near softplus(0) = log 2
        assert logs["disc_loss"] == pytest.approx(2 * math.log(2), abs=0.5)


def test_apgd_attacks_correct_points_within_the_ball_and_returns_the_others_unchanged():
    model, x, y = trained_classifier(64, 0.75)
    y = y.clone()
    y[:4] = (y[:4] + 1) % 4  # four points the model now gets wrong
    x_adv = apgd_ce(model, x, y, eps=0.1, steps=10, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1).abs().amax(1)
    assert delta.max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv[:4], x[:4])  # as AutoAttack's wrapper in the official code
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.3


def test_afd_trains_with_apgd():
    model, (x, y) = small_resnet(), batch()
    _, logs = afd(attack={"name": "apgd", "eps": 0.1, "steps": 3}).training_step(model, x, y)
    assert all(math.isfinite(v) for v in logs.values())


# ---- AFD: the discriminator ---------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "projection"), [(2, True), (2, False), (0, True)], ids=["fc3-pd", "fc3", "fc1-pd"])
def test_every_discriminator_layer_is_spectrally_normalised(hidden, projection):
    torch.manual_seed(0)
    disc = Discriminator(16, K, 24, hidden, projection)
    layers = [m for m in disc.modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    assert len(layers) == hidden + 1 + projection
    h, y = torch.randn(8, 16), torch.arange(8) % K
    with torch.no_grad():  # raw weights far from unit norm: normalisation has work to do on every layer
        for layer in layers:
            original = layer.parametrizations.weight.original
            original.mul_(3 / torch.linalg.matrix_norm(original, 2))
    disc.train()
    for _ in range(50):  # power iterations run in training-mode forwards
        disc(h, y)
    disc.eval()
    for layer in layers:
        assert torch.linalg.matrix_norm(layer.weight.detach(), 2).item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize(("hidden", "projection"), [(2, True), (0, True), (2, False)])
def test_projection_discriminator_reads_the_label(hidden, projection):
    torch.manual_seed(0)
    disc = Discriminator(16, K, 16, hidden, projection).eval()
    h, y = torch.randn(8, 16), torch.arange(8) % K
    other = disc(h, (y + 1) % K)
    assert disc(h, y).shape == (8,)
    assert (not torch.allclose(disc(h, y), other)) == projection


def test_discriminator_width_defaults_to_the_feature_dimension():
    model, (x, y), defense = small_resnet(), batch(), afd()
    defense.training_step(model, x, y)
    assert defense.disc.body[0].parametrizations.weight.original.shape == (16, 16)
    wide = afd(disc_width=40)
    wide.training_step(model, x, y)
    assert wide.disc.body[0].parametrizations.weight.original.shape == (40, 16)


# ---- AFD: checkpoints and schedule ---------------------------------------------------------


def _run(model, defense, opt, steps: int, seed: int):
    x, y = batch(16, seed=seed)
    logs = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, log = defense.training_step(model, x, y)
        loss.backward()
        opt.step()
        logs.append(log)
    return logs


def test_state_dict_round_trip_continues_identically():
    model, defense = small_resnet(), afd(seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    _run(model, defense, opt, 2, seed=1)
    saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "defense": defense.state_dict()})
    assert set(saved["defense"]) == {"disc", "disc_optimizer", "embed_optimizer"}

    def resume(state: dict | None):
        resumed, again = small_resnet(seed=9), afd(seed=7)
        resumed.load_state_dict(saved["model"])
        resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
        resumed_opt.load_state_dict(saved["opt"])
        if state is not None:
            again.load_state_dict(copy.deepcopy(state))
        again.start_epoch(1, 2, lr_factor=0.5)
        again.generator = torch.Generator().manual_seed(11)
        return resumed, again, _run(resumed, again, resumed_opt, 2, seed=2)

    defense.start_epoch(1, 2, lr_factor=0.5)
    defense.generator = torch.Generator().manual_seed(11)
    expected_logs = _run(model, defense, opt, 2, seed=2)
    resumed, again, logs = resume(saved["defense"])
    assert logs == expected_logs
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(defense.disc.state_dict().values(), again.disc.state_dict().values()):
        assert torch.equal(a, b)
    assert again.embed_optimizer.param_groups[0]["lr"] == 0.25 and again.disc_optimizer.param_groups[0]["lr"] == 0.25
    # without the defense's state the continuation differs: the check above can fail
    assert resume(None)[2] != expected_logs


def test_state_of_an_unbuilt_defense_is_empty_and_wrong_keys_are_refused():
    defense = afd()
    assert defense.state_dict() == {}
    defense.load_state_dict({})
    with pytest.raises(ValueError, match="afd"):
        defense.load_state_dict({"critic": {}})


@pytest.mark.parametrize("gan_loss", ["softplus", "wgan"])
def test_short_training_stays_finite_and_learns(gan_loss):
    # measured held-out accuracy after 4 epochs: about 0.8 for both losses (chance 0.25)
    x, y = batch(64, seed=4)
    model = small_resnet()
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05, optimizer="sgd", milestones=(3,))
    defense = afd(gan_loss=gan_loss, lr_embed=0.1, lr_disc=0.1)
    history, _ = train(model, defense, x, y, config, held_out=batch(64, seed=5))
    assert np.isfinite(history.to_numpy(dtype=float)).all()
    assert {"disc_loss", "disc_acc", "embed_loss"} <= set(history.columns)
    assert history["held_out_accuracy"].iloc[-1] > 0.6
    assert defense.disc_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1)  # the milestone reached Da


# ---- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"attack": None}, "defense.attack"),
        ({"attack": {"name": "pgdd", "eps": 0.1}}, "defense.attack.name"),
        ({"attack": {"name": "pgd", "eps": -0.1, "steps": 1, "step_size": 0.1}}, "defense.attack.eps"),
        ({"attack": {"name": "apgd", "eps": 0.1}}, "defense.attack.steps"),
        ({"attack": {"name": "apgd", "eps": 0.1, "steps": 0}}, "defense.attack.steps"),
        ({"attack": {"name": "apgd", "eps": 0.1, "steps": 2, "rho": 0.7}}, "defense.attack.rho"),
        ({"lr_embed": 0}, "defense.lr_embed"),
        ({"lr_disc": -1.0}, "defense.lr_disc"),
        ({"discriminator": "fc2"}, "defense.discriminator"),
        ({"disc_width": 0}, "defense.disc_width"),
        ({"gan_loss": "hinge"}, "defense.gan_loss"),
        ({"momentum": 1.0}, "defense.momentum"),
        ({"normalize_features": 1}, "defense.normalize_features"),
        ({"adversarial": {"fraction": 0.5, "attack": PGD}}, "defense.adversarial"),
    ],
)
def test_bad_afd_params_name_their_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense({"name": "afd", "attack": PGD, "lr_embed": 0.5, "lr_disc": 0.1, **params})
    assert error.value.key == key


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"name": "trades", "beta": -1, "eps": 0.1, "steps": 2, "step_size": 0.1}, "defense.beta"),
        ({"name": "trades", "beta": 6, "eps": 0, "steps": 2, "step_size": 0.1}, "defense.eps"),
        ({"name": "trades", "beta": 6, "eps": 0.1, "steps": 0, "step_size": 0.1}, "defense.steps"),
        ({"name": "trades", "beta": 6, "eps": 0.1, "steps": 2}, "defense.step_size"),
        ({"name": "rep_matching", "lambda": -1, "attack": PGD}, "defense.lambda"),
        ({"name": "rep_matching", "lambda": 1, "attack": {"name": "fgsm"}}, "defense.attack.eps"),
    ],
)
def test_bad_baseline_params_name_their_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense(params)
    assert error.value.key == key


# ---- TRADES ---------------------------------------------------------------------------------


def trades(**params):
    defense = build_defense({"name": "trades", "beta": 6.0, "eps": 0.1, "steps": 5, "step_size": 0.03, **params})
    defense.generator = torch.Generator().manual_seed(0)
    return defense


def test_trades_kl_term_is_zero_at_x_and_positive_at_the_attack(monkeypatch):
    model, (x, y) = small_resnet().eval(), batch()
    loss, logs = trades().training_step(model, x, y)
    assert logs["kl"] > 0 and loss.item() == pytest.approx(logs["ce"] + 6.0 * logs["kl"], rel=1e-6)
    monkeypatch.setattr(trades_module, "trades_pgd", lambda model, x, **settings: x.clone())
    loss, logs = trades().training_step(model, x, y)
    assert logs["kl"] == pytest.approx(0.0, abs=1e-7)
    assert loss.item() == pytest.approx(logs["ce"], rel=1e-6)


def test_trades_pgd_maximises_the_kl_within_the_ball():
    model, x, _ = trained_classifier(32, 0.75)
    eps = 0.1
    with torch.no_grad():
        clean = model(x)
    generator = torch.Generator().manual_seed(0)
    start = x + trades_module.START_STD * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x_adv = trades_module.trades_pgd(model, x, eps=eps, steps=10, step_size=0.02, generator=generator)
    with torch.no_grad():
        kl_start = trades_module.kl_per_example(clean, model(start)).mean()
        kl_adv = trades_module.kl_per_example(clean, model(x_adv)).mean()
    assert kl_adv > 100 * kl_start and kl_adv > 0.1
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_trades_gradient_flows_through_the_clean_and_the_adversarial_logits(monkeypatch):
    model, (x, y) = small_resnet().eval(), batch()
    x_adv = (x + 0.05).clamp(0, 1)
    monkeypatch.setattr(trades_module, "trades_pgd", lambda model, x, **settings: x_adv)
    loss, _ = trades(beta=2.0).training_step(model, x, y)
    got = torch.autograd.grad(loss, list(model.parameters()))
    p = F.softmax(model(x), 1)
    expected = F.cross_entropy(model(x), y) + 2.0 * (p * (p.log() - F.log_softmax(model(x_adv), 1))).sum(1).mean()
    for a, b in zip(got, torch.autograd.grad(expected, list(model.parameters()))):
        torch.testing.assert_close(a, b)


# ---- representation matching ----------------------------------------------------------------


def test_rep_matching_loss_and_gradient_match_the_formula():
    model, (x, y) = small_resnet().eval(), batch()
    fgsm = {"name": "fgsm", "eps": 0.1}
    defense = build_defense({"name": "rep_matching", "lambda": 0.7, "attack": fgsm})
    loss, logs = defense.training_step(model, x, y)
    from robust.attacks import run_attack

    x_adv = run_attack("fgsm", model, x, y, eps=0.1)
    distance = (model.embed(x) - model.embed(x_adv)).norm(dim=1).mean()
    expected = F.cross_entropy(model(x), y) + 0.7 * distance
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and logs["rep_distance"] > 0
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params)):
        torch.testing.assert_close(a, b)


# ---- ResNet-18 ------------------------------------------------------------------------------


def test_cifar_resnet18_has_the_standard_parameter_count():
    model = build_model("resnet18", in_shape=(3, 32, 32), num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(11.2e6, rel=0.02)
    assert count == 11_173_962  # the common CIFAR ResNet-18 (kuangliu/pytorch-cifar, AFD's resnet_cifar.py)


@pytest.mark.parametrize(("arch", "in_shape", "features"), [
    ("resnet18", (3, 32, 32), 512), ("resnet18-norm", (3, 32, 32), 512),
    ("resnet18-mnist", (1, 28, 28), 64), ("resnet18-mnist-norm", (1, 28, 28), 64),
])
def test_resnet_embed_and_head_compose_to_the_model(arch, in_shape, features):
    torch.manual_seed(0)
    model = build_model(arch, in_shape=in_shape, num_classes=7).eval()
    x = torch.rand(3, *in_shape)
    h = model.embed(x)
    assert h.shape == (3, features) and model(x).shape == (3, 7)
    torch.testing.assert_close(model.head(h), model(x))
    norms = h.norm(dim=1)
    assert torch.allclose(norms, torch.ones(3)) == arch.endswith("-norm")


def test_resnet_width_scales_every_stage():
    model = build_model("resnet18", in_shape=(3, 32, 32), num_classes=10, width=0.25)
    assert model.embed(torch.rand(2, 3, 32, 32)).shape == (2, 128)
    assert len(model.l2_weights()) == len(list(model.parameters()))
