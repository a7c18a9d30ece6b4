"""JARN: the adversarial Jacobian term, its gradient path, the discriminator's schedule and state."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks.base import uniform_noise
from robust.defenses import build_defense
from robust.defenses.jarn import Discriminator, input_jacobian, normalize_per_example
from robust.errors import ConfigError
from robust.train import TrainConfig, train

K = 4
_PROTOS = 0.5 + 0.15 * (2 * torch.rand((K, 1, 8, 8), generator=torch.Generator().manual_seed(0)) - 1)
BASE = {"name": "jarn", "lambda": 1.0, "noise_eps": 0.05, "discriminator": "mnist", "disc_every": 2,
        "disc_lr": 0.05, "adaptor_lr": 0.05, "start_fraction": 0.0}


def task(n: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    return (_PROTOS[y] + 0.1 * torch.randn((n, 1, 8, 8), generator=g)).clamp(0, 1).to(dtype), y


def cnn(dtype: torch.dtype = torch.float32, batch_norm: bool = False) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        norm = [nn.BatchNorm2d(6)] if batch_norm else []
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), *norm, nn.Softplus(), nn.Flatten(),
                             nn.Linear(6 * 64, 16), nn.Softplus(), nn.Linear(16, K)).to(dtype)


def jarn(seed: int = 0, **params):
    defense = build_defense({**BASE, **params})
    defense.generator = torch.Generator().manual_seed(seed)
    return defense


def run(defense, model, opt, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, _ = defense.training_step(model, x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_loss_is_ce_plus_lambda_adv_with_finite_logs():
    model, (x, y) = cnn(), task(16, 1)
    loss, logs = jarn(**{"lambda": 0.7}).training_step(model, x, y)
    assert torch.isfinite(loss) and loss.requires_grad
    assert loss.item() == pytest.approx(logs["ce"] + 0.7 * logs["adv"], rel=1e-6)
    assert logs["adv"] == pytest.approx(-logs["disc_loss"])
    assert 0 <= logs["disc_acc"] <= 1 and logs["jacobian_norm"] > 0 and logs["jarn_active"] == 1.0
    assert all(type(v) is float and math.isfinite(v) for v in logs.values())


def test_adversarial_term_reaches_every_classifier_parameter_through_the_input_gradient():
    # the discriminator and adaptor steps do not depend on λ, so the loss gradient is affine in λ
    x, y = task(8, 2, torch.float64)

    def grads(lam: float) -> list[torch.Tensor]:
        model = cnn(torch.float64)
        loss, _ = jarn(**{"lambda": lam}).training_step(model, x, y)
        return torch.autograd.grad(loss, list(model.parameters()))

    g0, g1, g2 = grads(0.0), grads(1.0), grads(2.0)
    for a, b, c in zip(g0, g1, g2):
        adv = b - a
        # the first convolution touches the adversarial term only through ∇ₓ (double backprop)
        assert adv.abs().max() > 1e-6 * (a.abs().max() + 1e-12)
        torch.testing.assert_close(c - a, 2 * adv, rtol=1e-7, atol=1e-12)


def test_classifier_gradient_is_that_of_ce_plus_lambda_adv_recomputed_from_scratch():
    # the loss carries L_adv through a surrogate (one backward pass through the discriminator):
    # its gradient must be that of L_adv itself, built here from the step's adaptor and discriminator
    x, y = task(8, 5, torch.float64)
    model, defense = cnn(torch.float64), jarn(noise_eps=0.0, disc_every=100, **{"lambda": 0.7})
    defense.training_step(model, x, y)  # builds the networks; the discriminator's one update
    adaptor, discriminator = (copy.deepcopy(defense.nets[name]) for name in ("adaptor", "discriminator"))
    loss, _ = defense.training_step(model, x, y)
    got = torch.autograd.grad(loss, list(model.parameters()))

    inputs = x.clone().requires_grad_(True)
    logits = model(inputs)
    fake = torch.tanh(adaptor(normalize_per_example(input_jacobian(logits, inputs, y, "ce"))))
    target = torch.cat([torch.zeros(8), torch.ones(8)]).double()
    d_xent = F.binary_cross_entropy_with_logits(discriminator(torch.cat([fake, x])), target)
    want = torch.autograd.grad(F.cross_entropy(logits, y) - 0.7 * d_xent, list(model.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_steps_leave_no_gradient_on_model_adaptor_or_discriminator():
    model, (x, y) = cnn(batch_norm=True), task(16, 3)
    defense = jarn(disc_every=1)
    loss, _ = defense.training_step(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    for name in ("adaptor", "discriminator"):
        assert all(p.grad is None for p in defense.nets[name].parameters()), name


def test_discriminator_is_updated_exactly_every_n_steps_and_the_adaptor_every_step():
    model, (x, y) = cnn(), task(16, 4)
    defense = jarn(disc_every=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    disc_changed, adaptor_changed = [], []
    for _ in range(7):
        before = (flat(defense.nets["discriminator"]), flat(defense.nets["adaptor"])) if defense.nets else None
        run(defense, model, opt, x, y, 1)
        if before is not None:
            disc_changed.append(not torch.equal(before[0], flat(defense.nets["discriminator"])))
            adaptor_changed.append(not torch.equal(before[1], flat(defense.nets["adaptor"])))
    # steps 1..6 after the first (which builds the networks and updates the discriminator)
    assert disc_changed == [False, False, True, False, False, True]
    assert all(adaptor_changed)
    assert defense.steps == 7


def test_start_fraction_gates_the_adversarial_term_and_noise_is_always_on():
    model, (x, y) = cnn(), task(16, 5)
    defense = jarn(start_fraction=0.5)
    defense.start_epoch(1, 4, lr_factor=1.0)
    loss, logs = defense.training_step(model, x, y)
    noisy = (x + uniform_noise(x, -0.05, 0.05, torch.Generator().manual_seed(0))).clamp(0, 1)
    assert loss.item() == F.cross_entropy(model(noisy), y).item()
    assert loss.item() != F.cross_entropy(model(x), y).item()
    assert logs["jarn_active"] == 0.0 and "adv" not in logs and defense.state_dict() == {}

    defense.start_epoch(2, 4, lr_factor=1.0)
    loss, logs = defense.training_step(model, x, y)
    assert logs["jarn_active"] == 1.0 and logs["adv"] != 0
    assert loss.item() == pytest.approx(logs["ce"] + logs["adv"], rel=1e-6)


def test_epochs_before_jarn_switches_on_do_not_depend_on_lambda_or_the_update_interval():
    # Runs that differ only in these settings share their pre-JARN epochs (docs/results/chan2020.md, Fig. 5)
    x, y = task(32, 15)
    ends = []
    for settings in ({"lambda": 0.5, "disc_every": 5}, {"lambda": 2.0, "disc_every": 40}):
        model, defense = cnn(), jarn(start_fraction=0.75, **settings)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for epoch in range(3):
            defense.start_epoch(epoch, 4, lr_factor=1.0)
            losses += run(defense, model, opt, x, y, 2)
        assert defense.state_dict() == {} and defense.steps == 0
        ends.append((losses, flat(model), defense.generator.get_state()))
    (losses, weights, generator), (other_losses, other_weights, other_generator) = ends
    assert losses == other_losses
    assert torch.equal(weights, other_weights) and torch.equal(generator, other_generator)


@pytest.mark.parametrize(("fraction", "epochs", "first"), [(0.75, 4, 3), (0.75, 200, 150), (0.7, 10, 7),
                                                            (0.99, 4, 3), (0.0, 5, 0), (0.875, 8, 7)])
def test_first_jarn_epoch(fraction, epochs, first):
    defense = jarn(start_fraction=fraction)
    active = []
    for epoch in range(epochs):
        defense.start_epoch(epoch, epochs, lr_factor=1.0)
        active.append(defense.active)
    assert active == [epoch >= first for epoch in range(epochs)]


def test_lr_factor_scales_both_optimizers():
    model, (x, y) = cnn(), task(8, 6)
    defense = jarn(disc_optimizer="adam", disc_lr=1e-3, adaptor_lr=0.1)
    defense.training_step(model, x, y)
    defense.start_epoch(3, 4, lr_factor=0.01)
    assert defense.nets["discriminator_optimizer"].param_groups[0]["lr"] == pytest.approx(1e-5)
    assert defense.nets["adaptor_optimizer"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert isinstance(defense.nets["discriminator_optimizer"], torch.optim.Adam)


def test_state_round_trip_continues_exactly_as_an_uninterrupted_run():
    x, y = task(16, 7)
    model, defense = cnn(batch_norm=True), jarn(disc_every=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    run(defense, model, opt, x, y, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "defense": defense.state_dict(),
                "generator": defense.generator.get_state()}, buffer)
    uninterrupted = run(defense, model, opt, x, y, 2)  # includes a discriminator update (step 4 of 0..4)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored_model = cnn(batch_norm=True)
    restored_model.load_state_dict(saved["model"])
    restored_opt = torch.optim.Adam(restored_model.parameters(), lr=1e-2)
    restored_opt.load_state_dict(saved["opt"])
    restored = jarn(seed=123, disc_every=2)
    restored.load_state_dict(saved["defense"])
    assert restored.state_dict().keys() == saved["defense"].keys()
    restored.generator.set_state(saved["generator"])
    assert run(restored, restored_model, restored_opt, x, y, 2) == uninterrupted
    assert torch.equal(flat(restored_model), flat(model))
    for name in ("adaptor", "discriminator"):
        assert torch.equal(flat(restored.nets[name]), flat(defense.nets[name])), name
    assert restored.steps == defense.steps == 5


def test_loading_state_for_another_input_shape_or_with_unknown_keys_fails():
    defense = jarn()
    defense.training_step(cnn(), *task(4, 8))
    state = copy.deepcopy(defense.state_dict())
    other = jarn()
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="saved networks are for inputs"):
        other.training_step(nn.Sequential(nn.Flatten(), nn.Linear(100, K)), torch.rand(4, 1, 10, 10), torch.zeros(4).long())
    with pytest.raises(ValueError, match="state keys"):
        jarn().load_state_dict({"critic": {}})


def test_same_generator_seed_same_run_other_seed_other_run():
    x, y = task(16, 9)

    def losses(seed: int) -> list[float]:
        model = cnn()
        return run(jarn(seed=seed), model, torch.optim.SGD(model.parameters(), lr=0.05), x, y, 3)

    assert losses(0) == losses(0)
    assert losses(0) != losses(1)


def test_noise_needs_a_generator():
    defense = build_defense(BASE)
    with pytest.raises(ValueError, match="generator"):
        defense.training_step(cnn(), *task(4, 10))


def test_true_prob_jacobian_is_the_negated_ce_jacobian_after_normalisation():
    model, (x, y) = cnn(torch.float64), task(8, 11, torch.float64)
    x = x.requires_grad_(True)
    logits = model(x)
    ce = normalize_per_example(input_jacobian(logits, x, y, "ce"))
    prob = normalize_per_example(input_jacobian(logits, x, y, "true_prob"))
    torch.testing.assert_close(prob, -ce)
    assert ce.flatten(1).norm(dim=1).sub(1).abs().max() < 1e-12
    assert ce.flatten(1).mean(1).abs().max() < 1e-15


@pytest.mark.parametrize(("setting", "channels", "in_shape"),
                         [("mnist", [64, 128], (1, 28, 28)), ("svhn", [16, 32, 64, 128, 256], (3, 32, 32)),
                          ("cifar10", [32, 64, 128, 256, 512], (3, 32, 32))])
def test_discriminators_have_the_paper_sizes(setting, channels, in_shape):
    from robust.defenses.jarn import DISCRIMINATORS

    torch.manual_seed(0)
    net = Discriminator(in_shape, *DISCRIMINATORS[setting])
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    side = math.ceil(in_shape[1] / 2 ** len(channels))
    assert net.head.in_features == channels[-1] * side * side
    assert net(torch.rand(3, *in_shape)).shape == (3,)


def test_jarn_at1_mixes_fgsm_examples_into_the_batch():
    params = {"adversarial": {"fraction": 0.5, "attack": {"name": "fgsm", "eps": 0.1}}}
    loss, logs = jarn(**params).training_step(cnn(), *task(16, 12))
    assert torch.isfinite(loss) and logs["adv_fraction"] == 0.5 and "adv" in logs


@pytest.mark.parametrize(("params", "key"), [
    ({"lambda": -1.0}, "defense.lambda"),
    ({"noise_eps": 1.5}, "defense.noise_eps"),
    ({"noise_eps": -0.1}, "defense.noise_eps"),
    ({"discriminator": "imagenet"}, "defense.discriminator"),
    ({"disc_every": 0}, "defense.disc_every"),
    ({"disc_every": 2.0}, "defense.disc_every"),
    ({"disc_lr": 0.0}, "defense.disc_lr"),
    ({"adaptor_lr": -1.0}, "defense.adaptor_lr"),
    ({"disc_optimizer": "rmsprop"}, "defense.disc_optimizer"),
    ({"start_fraction": 1.0}, "defense.start_fraction"),
    ({"start_fraction": -0.1}, "defense.start_fraction"),
    ({"jacobian": "logits"}, "defense.jacobian"),
    ({"aux_l2": -1e-4}, "defense.aux_l2"),
    ({"beta": 1.0}, "defense.beta"),
])
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense({**BASE, **params})
    assert error.value.key == key


def test_short_training_with_the_trainer_switches_jarn_on_late_and_fools_the_discriminator():
    # measured: held-out accuracy 0.93 / 1.0, last-epoch disc_acc 0.67 / 0.93 (λ = 1 / λ = 0)
    x, y = task(256, 13)
    x_test, y_test = task(256, 14)

    def fit(lam: float):
        model = cnn(batch_norm=True)
        defense = build_defense({**BASE, "lambda": lam, "start_fraction": 0.5, "aux_l2": 2e-4})
        config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, seed=3)
        history, _ = train(model, defense, x, y, config, held_out=(x_test, y_test))
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert defense.steps == 3 * 8
        return history

    history, reference = fit(1.0), fit(0.0)
    assert history["jarn_active"].tolist() == [0.0] * 3 + [1.0] * 3
    assert history["adv"].isna().tolist() == [True] * 3 + [False] * 3
    jarn_rows = history.iloc[3:]
    assert jarn_rows[["adv", "disc_loss", "disc_acc", "jacobian_norm"]].notna().all().all()
    assert history["held_out_accuracy"].iloc[-1] > 0.8
    # the discriminator learns to separate Jacobians from images unless the classifier fights it
    assert reference["disc_acc"].iloc[-1] > 0.85
    assert history["disc_acc"].iloc[-1] < reference["disc_acc"].iloc[-1] - 0.15
