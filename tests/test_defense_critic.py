"""The adversary-critic defense (Matyasko & Chau 2018): gradients through the attack, the
successful-only terms, the gradient penalty, the confidence EMA, generator-only noise, resume,
and a short run of the real trainer."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from prototypes import prototype_batch
from torch import nn
from torch.autograd.functional import jacobian

import robust.defenses.critic as critic_module
from robust.defenses import build_defense
from robust.defenses.critic import critic_objective, cycle_loss, fool_loss
from robust.errors import ConfigError
from robust.models.critic import AdversaryCritic
from robust.train import TrainConfig, train

K = 4


def batch(n: int = 24, seed: int = 1, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return prototype_batch(n, side=6, classes=K, seed=seed, dtype=dtype)


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, K)).to(dtype)


def critic_defense(seed: int = 0, **params) -> critic_module.AdversaryCriticDefense:
    defense = build_defense({"name": "critic", "lambda": 0.5, "critic_width": 16, **params})
    defense.generator = torch.Generator().manual_seed(seed)
    return defense


def param_grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


# ---- gradients through the attack --------------------------------------------------------


@pytest.mark.parametrize("term", ["gan", "cycle"])
def test_classifier_gradients_flow_through_the_attack(term, monkeypatch):
    # same forward values with x_adv detached, different parameter gradients: the second-order path
    params = {"lambda": 0.5, "lambda_rec": 0.0} if term == "gan" else {"lambda": 0.0, "lambda_rec": 1.0}
    x, y = batch()
    model = mlp()
    loss, logs = critic_defense(**params).training_step(model, x, y)
    assert logs["attack_success"] > 0 and logs[term] > 0
    through = param_grads(model, loss)

    original = critic_module.high_confidence_path

    def detached_path(*args, **kwargs):
        x_adv, reached = original(*args, **kwargs)
        return x_adv.detach(), reached

    monkeypatch.setattr(critic_module, "high_confidence_path", detached_path)
    loss_d, logs_d = critic_defense(**params).training_step(model, x, y)
    assert loss_d.item() == pytest.approx(loss.item(), rel=1e-6)
    assert logs_d[term] == pytest.approx(logs[term], rel=1e-6)
    detached = param_grads(model, loss_d)
    difference = sum((a - b).abs().sum() for a, b in zip(through, detached))
    assert difference > 1e-3 * sum(a.abs().sum() for a in through)


def test_no_gradient_of_the_critic_update_reaches_the_classifier():
    x, y = batch()
    model = mlp()
    defense = critic_defense()
    loss, _ = defense.training_step(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    # the classifier's backward must not feed the critic's next update
    assert all(p.grad is None for p in defense.critic.parameters())


# ---- only successful attacks enter the fooling and cycle terms ----------------------------


def test_no_successful_attack_means_zero_gan_and_cycle_terms():
    # logits independent of x: the attack cannot move, no prediction changes
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, K))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([3.0, 0.0, -1.0, 0.5]))
    x, y = batch()
    loss, logs = critic_defense().training_step(model, x, y)
    assert logs["attack_success"] == 0
    assert logs["gan"] == 0 and logs["cycle"] == 0 and logs["adv_l2"] == 0
    assert loss.item() == F.cross_entropy(model(x), y).item()
    assert math.isfinite(logs["critic_loss"])


def test_fool_and_cycle_terms_ignore_unsuccessful_examples():
    critic = AdversaryCritic(36, K, hidden=[8, 8], input_noise=0.1, hidden_noise=0.5,
                             init_generator=torch.Generator().manual_seed(0))
    x_adv, y_adv = batch(8)
    success = torch.tensor([True, False, True, False, False, True, False, False])
    other = x_adv.clone()
    other[~success] = 1 - other[~success]

    def fool(points):
        return fool_loss(critic, points, y_adv, success, torch.Generator().manual_seed(3))

    assert fool(x_adv).item() == fool(other).item()
    z = critic(x_adv[success], torch.Generator().manual_seed(3)).gather(1, y_adv[success, None]).squeeze(1)
    torch.testing.assert_close(fool(x_adv), F.binary_cross_entropy_with_logits(z, torch.ones_like(z)))
    assert fool_loss(critic, x_adv, y_adv, torch.zeros(8, dtype=torch.bool), None).item() == 0
    x, _ = batch(3, seed=2)
    assert cycle_loss(x, x + 0.5).item() == pytest.approx(36 * 0.25)
    assert cycle_loss(x[:0], x[:0]).item() == 0


# ---- the critic objective --------------------------------------------------------------


def test_gradient_penalty_is_taken_at_real_and_adversarial_points_separately():
    critic = AdversaryCritic(6, 3, hidden=[5, 5], input_noise=0.0, hidden_noise=0.0,
                             init_generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x, x_adv = torch.rand(4, 1, 2, 3, generator=g, dtype=torch.float64), torch.rand(4, 1, 2, 3, generator=g,
                                                                                     dtype=torch.float64)
    y, y_adv = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 2, 0, 1])

    def by_hand(points, classes):
        norms = torch.stack([jacobian(lambda p, c=c: critic(p[None])[0, c], p).norm() for p, c in zip(points, classes)])
        return (norms - 1).square().mean()

    lam = 10.0
    loss, parts = critic_objective(critic, x, y, x_adv, y_adv, lambda_grad=lam, generator=None)
    penalty = by_hand(x, y) + by_hand(x_adv, y_adv)
    z_data = critic(x).gather(1, y[:, None]).squeeze(1)
    z_adv = critic(x_adv).gather(1, y_adv[:, None]).squeeze(1)
    bce = F.softplus(-z_data).mean() + F.softplus(z_adv).mean()  # BCE(z, 1) and BCE(z, 0)
    torch.testing.assert_close(parts["critic_penalty"], penalty, rtol=1e-10, atol=0)
    torch.testing.assert_close(loss, bce + lam * penalty, rtol=1e-10, atol=0)
    # an interpolating penalty (WGAN-GP) would differ
    mid = by_hand((x + x_adv) / 2, y)
    assert not torch.isclose(penalty, 2 * mid)


def test_critic_step_lowers_the_critic_objective_on_a_fixed_batch():
    x, y = batch()
    model = mlp()
    defense = critic_defense(lambda_grad=0.0)
    values = [defense.training_step(model, x, y)[1]["critic_data"] + 0 for _ in range(15)]
    assert values[-1] < values[0]


# ---- running confidence ---------------------------------------------------------------


def test_running_confidence_is_a_per_class_ema_over_predictions():
    model, defense = mlp(), critic_defense(warmup_epochs=1)
    defense.start_epoch(0, 3, lr_factor=1.0)  # warm-up: NLL only, the EMA still runs
    expected = torch.ones(K)
    for seed in (1, 2):
        x, y = batch(10, seed=seed)
        with torch.no_grad():
            conf, pred = model(x).softmax(1).max(1)
        loss, _ = defense.training_step(model, x, y)
        assert loss.item() == F.cross_entropy(model(x), y).item()
        for k in range(K):
            if (pred == k).any():
                expected[k] = 0.5 * expected[k] + 0.5 * conf[pred == k].mean()
        torch.testing.assert_close(defense.confidence, expected)
    assert len(set(pred.tolist())) < K, "the batch should leave a class unpredicted (kept at its old mean)"
    assert defense.critic is None


# ---- randomness and state -------------------------------------------------------------


def test_critic_noise_and_init_come_from_the_generator_only():
    x, y = batch()
    model = mlp()
    state = torch.get_rng_state()
    first = critic_defense(seed=0).training_step(model, x, y)[1]
    assert torch.equal(torch.get_rng_state(), state)
    assert critic_defense(seed=0).training_step(model, x, y)[1] == first
    assert critic_defense(seed=1).training_step(model, x, y)[1]["critic_loss"] != first["critic_loss"]


def run_steps(model, optimizer, defense, seed: int, steps: int = 2) -> None:
    defense.generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x, y = batch(seed=10 + step)
        optimizer.zero_grad()
        loss, _ = defense.training_step(model, x, y)
        loss.backward()
        optimizer.step()


def test_state_dict_round_trip_continues_identically():
    model, defense = mlp(), critic_defense()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    run_steps(model, optimizer, defense, seed=0)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "defense": defense.state_dict()},
               buffer)

    run_steps(model, optimizer, defense, seed=5)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = mlp(seed=7)
    resumed_model.load_state_dict(saved["model"])
    resumed_optimizer = torch.optim.Adam(resumed_model.parameters(), lr=1e-2)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed = critic_defense(seed=99)
    resumed.load_state_dict(saved["defense"])
    assert resumed.state_dict().keys() == saved["defense"].keys()
    run_steps(resumed_model, resumed_optimizer, resumed, seed=5)

    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(defense.critic.parameters(), resumed.critic.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(defense.confidence, resumed.confidence)


def test_critic_learning_rate_follows_the_model_schedule():
    x, y = batch()
    defense = critic_defense(critic_lr=1e-3)
    defense.start_epoch(1, 3, lr_factor=0.5)
    defense.training_step(mlp(), x, y)
    assert defense.critic_optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert defense.critic_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    defense.start_epoch(2, 3, lr_factor=0.25)
    assert defense.critic_optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_load_state_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unexpected state"):
        critic_defense().load_state_dict({"disc": {}})


# ---- the real trainer -------------------------------------------------------------------


def test_short_training_with_the_trainer_is_finite_and_warms_up_first():
    x, y = batch(192, seed=3)
    model = mlp()
    defense = build_defense({"name": "critic", "lambda": 0.5, "critic_width": 32, "warmup_epochs": 1})
    config = TrainConfig(epochs=4, batch_size=32, lr=5e-3, seed=1)
    history, _ = train(model, defense, x, y, config, held_out=batch(96, seed=4))
    numbers = history.drop(columns=["epoch"]).to_numpy(dtype=float)
    assert not any(math.isnan(v) for v in numbers[~(history.isna().to_numpy()[:, 1:])])
    assert math.isnan(history["gan"].iloc[0]) and history["gan"].iloc[1:].notna().all()
    assert (history["attack_success"].iloc[1:] > 0).all()
    # measured: accuracy 0.44 → 0.68 (plain training 0.93; the critic slows early learning), CE falling
    assert history["ce"].is_monotonic_decreasing
    assert history["held_out_accuracy"].iloc[-1] > 0.5
    assert torch.isfinite(defense.confidence).all() and (defense.confidence <= 1).all()


# ---- params ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({}, "defense.lambda"),
        ({"lambda": -1}, "defense.lambda"),
        ({"lambda": 0.5, "lambda_rec": -0.1}, "defense.lambda_rec"),
        ({"lambda": 0.5, "lambda_grad": float("inf")}, "defense.lambda_grad"),
        ({"lambda": 0.5, "steps": 0}, "defense.steps"),
        ({"lambda": 0.5, "steps": 2.0}, "defense.steps"),
        ({"lambda": 0.5, "critic_lr": 0}, "defense.critic_lr"),
        ({"lambda": 0.5, "critic_width": 0}, "defense.critic_width"),
        ({"lambda": 0.5, "input_noise": -0.1}, "defense.input_noise"),
        ({"lambda": 0.5, "hidden_noise": "0.5"}, "defense.hidden_noise"),
        ({"lambda": 0.5, "confidence_decay": 1.0}, "defense.confidence_decay"),
        ({"lambda": 0.5, "ste_slope": -1}, "defense.ste_slope"),
        ({"lambda": 0.5, "warmup_epochs": -1}, "defense.warmup_epochs"),
        ({"lambda": 0.5, "critic_steps": 2}, "defense.critic_steps"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError) as error:
        build_defense({"name": "critic", **params})
    assert error.value.key == key


def test_example_params_build_a_working_defense():
    defense = copy.deepcopy(critic_defense())
    loss, logs = defense.training_step(mlp(), *batch())
    assert torch.isfinite(loss) and set(logs) >= {"ce", "gan", "cycle", "critic_loss", "critic_penalty"}
