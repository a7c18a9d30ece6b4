"""The trainer: it learns, it is deterministic, and a resumed run equals an uninterrupted one."""

import dataclasses
import math

import pytest
import torch

from robust.defenses import DEFENSES, Defense, build_defense
from robust.errors import ConfigError
from robust.io import save_torch
from robust.models import build_model
from robust.train import TrainConfig, accuracy, seed_everything, train


def _toy_data(n=256, seed=0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=generator)
    x = torch.rand(n, 1, 12, 12, generator=generator) * 0.3
    for label in range(4):  # one bright quadrant per class: learnable in a few epochs
        rows, cols = divmod(label, 2)
        x[y == label, :, rows * 6:(rows + 1) * 6, cols * 6:(cols + 1) * 6] += 0.6
    return x.clamp(0, 1), y


def _fresh_model(seed=0):
    seed_everything(seed)
    return build_model("jakubovitz-mnist", in_shape=(1, 12, 12), num_classes=4, width=0.25)


CONFIG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, optimizer="adam", l2=1e-4, milestones=(2,), gamma=0.5, seed=5)


def test_training_learns_and_reports_history():
    x, y = _toy_data()
    model = _fresh_model()
    before = accuracy(model, x, y)
    history, seconds = train(model, build_defense({"name": "none"}), x, y, CONFIG, held_out=(x, y))
    assert list(history.epoch) == [1, 2, 3] and len(seconds) == 3
    assert list(history.lr) == pytest.approx([3e-3, 3e-3, 1.5e-3])  # the milestone schedule
    assert history.loss.iloc[-1] < history.loss.iloc[0]
    assert history.held_out_accuracy.iloc[-1] > max(before, 0.9)
    assert not model.training


def test_same_seed_same_weights():
    x, y = _toy_data()
    models = []
    for _ in range(2):
        model = _fresh_model()
        train(model, build_defense({"name": "none"}), x, y, CONFIG)
        models.append(model.state_dict())
    for name in models[0]:
        assert torch.equal(models[0][name], models[1][name]), name


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    x, y = _toy_data()
    reference = _fresh_model()
    ref_history, _ = train(reference, build_defense({"name": "none"}), x, y, CONFIG)

    checkpoint = tmp_path / "resume.pt"
    interrupted = _fresh_model()
    crash_at = {"epoch": 2}
    import robust.train as train_module

    original_randperm = torch.randperm
    calls = {"n": 0}

    def crashing_randperm(*args, **kwargs):  # the third epoch's shuffle dies like a SIGKILL would
        calls["n"] += 1
        if calls["n"] > crash_at["epoch"]:
            raise KeyboardInterrupt
        return original_randperm(*args, **kwargs)

    monkeypatch.setattr(train_module.torch, "randperm", crashing_randperm)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, build_defense({"name": "none"}), x, y, CONFIG, checkpoint=checkpoint)
    monkeypatch.setattr(train_module.torch, "randperm", original_randperm)
    assert checkpoint.exists()

    resumed = _fresh_model(seed=123)  # different init: everything must come from the checkpoint
    history, seconds = train(resumed, build_defense({"name": "none"}), x, y, CONFIG, checkpoint=checkpoint)
    assert len(seconds) == 1  # only the missing epoch was trained
    assert not checkpoint.exists()
    assert history.equals(ref_history)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


@pytest.mark.parametrize("change", ["config", "tag"])
def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, change):
    x, y = _toy_data()
    checkpoint = tmp_path / "resume.pt"
    stale = {"config": dataclasses.replace(CONFIG, lr=CONFIG.lr * 2), "tag": CONFIG}[change]
    tag = "other defense" if change == "tag" else ""
    # the checkpoint an interrupted run of other settings leaves, one epoch before the end
    save_torch({"model": _fresh_model(seed=5).state_dict(), "optimizer": {}, "schedule": {}, "defense": {},
                "history": [], "epoch": CONFIG.epochs - 1, "settings": f"{stale!r} {tag}"}, checkpoint)
    reference = _fresh_model()
    ref_history, _ = train(reference, build_defense({"name": "none"}), x, y, CONFIG)
    model = _fresh_model()
    history, seconds = train(model, build_defense({"name": "none"}), x, y, CONFIG, checkpoint=checkpoint)
    assert len(seconds) == CONFIG.epochs  # trained from the start, not from the stale epoch
    assert history.equals(ref_history)


@pytest.mark.parametrize("field, value, key", [
    ("epochs", -1, "pretrain.epochs"), ("batch_size", "big", "pretrain.batch_size"),
    ("lr", -1.0, "pretrain.lr"), ("optimizer", "adamw9", "pretrain.optimizer"),
])
def test_bad_train_config(field, value, key):
    values = {"epochs": 1, "batch_size": 8, "lr": 0.1, "optimizer": "sgd", field: value}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TrainConfig.from_params(key="pretrain", seed=0, **values)


class _Diverging(Defense):
    """A GAN-style defense: cross-entropy plus a logged discriminator loss that goes bad at batch 3."""

    divergence_limits = {"disc_loss": 100.0}

    def __init__(self, bad_term: str, bad_value: float):
        super().__init__()
        self.calls, self.bad_term, self.bad_value = 0, bad_term, bad_value

    def training_step(self, model, x, y):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(model(x), y)
        logs = {"ce": float(loss.detach()), "disc_loss": 0.7}
        if self.calls == 3:
            if self.bad_term == "loss":
                loss = loss * self.bad_value
            else:
                logs[self.bad_term] = self.bad_value
        return loss, logs


@pytest.mark.parametrize("term, value, message", [
    ("loss", float("nan"), r"finetune r1: diverged at epoch 1 in loss \(loss=nan, ce=[0-9.]+, disc_loss=0.7\)"),
    ("disc_loss", float("inf"), r"finetune r1: diverged at epoch 1 in disc_loss \(loss=.*, disc_loss=inf; "),
    ("disc_loss", 1e6,
     r"finetune r1: diverged at epoch 1 in disc_loss \(.*disc_loss=1e\+06; \|disc_loss\| limit 100\)"),
])
def test_divergence_stops_training_naming_run_epoch_and_terms(tmp_path, term, value, message):
    x, y = _toy_data()
    checkpoint = tmp_path / "resume.pt"
    with pytest.raises(FloatingPointError, match=message):
        train(_fresh_model(), _Diverging(term, value), x, y, CONFIG, checkpoint=checkpoint, desc="finetune r1")
    assert not checkpoint.exists()  # no epoch completed: nothing to resume from, nothing half-written


class _Recording(Defense):
    """Plain cross-entropy that records what the trainer tells it at every epoch start."""

    def __init__(self):
        super().__init__()
        self.epochs_seen = []

    def loss(self, model, x, y):
        return torch.nn.functional.cross_entropy(model(x), y), {}

    def start_epoch(self, epoch, epochs, *, lr_factor):
        self.epochs_seen.append((epoch, epochs, lr_factor))


def test_defenses_hear_the_epoch_and_the_learning_rate_schedule():
    x, y = _toy_data()
    defense = _Recording()
    train(_fresh_model(), defense, x, y, CONFIG)
    assert defense.epochs_seen == [(0, 3, 1.0), (1, 3, 1.0), (2, 3, pytest.approx(0.5))]  # milestone 2, γ 0.5


def test_lr_decay_multiplies_the_learning_rate_after_every_epoch():
    x, y = _toy_data()
    defense = _Recording()
    config = TrainConfig.from_params(key="k", seed=5, epochs=3, batch_size=32, lr=3e-3, lr_decay=0.95)
    history, _ = train(_fresh_model(), defense, x, y, config)
    assert [factor for _, _, factor in defense.epochs_seen] == [1.0, pytest.approx(0.95), pytest.approx(0.95 ** 2)]
    assert history.lr.tolist() == pytest.approx([3e-3, 3e-3 * 0.95, 3e-3 * 0.95 ** 2])
    for values, message in (({"lr_decay": 1.5}, "k\\.lr_decay"), ({"lr_decay": 0.9, "milestones": [2]}, "not both")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_params(key="k", seed=0, epochs=3, batch_size=32, lr=3e-3, **values)


def test_momentum_beta1_and_rho_reach_the_optimizer_and_are_checked():
    sgd = TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.9)
    adam = TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=5e-4, optimizer="adam", beta1=0.5)
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert sgd.build_optimizer(params).param_groups[0]["momentum"] == 0.9
    assert adam.build_optimizer(params).param_groups[0]["betas"] == (0.5, 0.999)
    assert TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=0.1).build_optimizer(
        params).param_groups[0]["betas"] == (0.9, 0.999)  # torch's defaults when not set
    with pytest.raises(ConfigError, match=r"'k\.momentum'"):
        TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=0.1, optimizer="adam", momentum=0.9)
    with pytest.raises(ConfigError, match=r"'k\.beta1'"):
        TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=0.1, optimizer="sgd", beta1=0.5)
    rmsprop = TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=1e-4, optimizer="rmsprop", rho=0.9)
    assert rmsprop.build_optimizer(params).param_groups[0]["alpha"] == 0.9
    default = TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=1e-4, optimizer="rmsprop")
    assert default.build_optimizer(params).param_groups[0]["alpha"] == 0.99  # torch's default when not set
    with pytest.raises(ConfigError, match=r"'k\.rho'"):
        TrainConfig.from_params(key="k", seed=0, epochs=1, batch_size=8, lr=0.1, optimizer="adam", rho=0.9)


# ---- bf16 autocast (amp) ---------------------------------------------------------------

AMP = TrainConfig(epochs=3, batch_size=32, lr=3e-3, optimizer="adam", l2=1e-4, seed=5, amp=True, key="finetune")


class _AutocastProbe(Defense):
    """Cross-entropy that records the autocast state and the dtypes inside its step."""

    supports_amp = True

    def __init__(self):
        super().__init__()
        self.seen = set()

    def loss(self, model, x, y):
        logits = model(x)
        self.seen.add((torch.is_autocast_enabled("cpu"), logits.dtype, x.dtype))
        return torch.nn.functional.cross_entropy(logits, y), {}


def test_amp_runs_the_defense_step_in_bf16_and_keeps_float32_weights():
    x, y = _toy_data()
    model, probe = _fresh_model(), _AutocastProbe()
    history, _ = train(model, probe, x, y, AMP, held_out=(x, y))
    assert probe.seen == {(True, torch.bfloat16, torch.float32)}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the step
    assert history.held_out_accuracy.iloc[-1] > 0.9  # it still learns

    plain = _AutocastProbe()
    train(_fresh_model(), plain, x, y, CONFIG)
    assert plain.seen == {(False, torch.float32, torch.float32)}  # off by default


def test_amp_is_deterministic_and_changes_the_numbers():
    x, y = _toy_data()
    runs = []
    for config in (AMP, AMP, dataclasses.replace(AMP, amp=False)):
        model = _fresh_model()
        train(model, build_defense({"name": "none"}), x, y, config)
        runs.append(model.state_dict())
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name
    assert any(not torch.equal(runs[0][name], runs[2][name]) for name in runs[0])


@pytest.mark.parametrize("name", [n for n in DEFENSES.names() if DEFENSES.get(n).supports_amp])
def test_every_defense_that_allows_amp_trains_under_it(name):
    x, y = _toy_data(n=48)
    torch.manual_seed(0)  # a Sequential: the representation defenses (afd, rep_matching) split off its last layer
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 144, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    before = [p.detach().clone() for p in model.parameters()]
    params = {"name": name, **DEFENSES.get(name).example_params}
    history, _ = train(model, build_defense(params), x, y, dataclasses.replace(AMP, l2=0.0, epochs=1, batch_size=16))
    assert history.drop(columns=["epoch"]).map(math.isfinite).all().all()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", ["jacobian", "input_gradient", "jarn", "critic", "vat", "sgr"])
def test_amp_is_refused_where_the_defense_does_not_allow_it(name):
    x, y = _toy_data(n=16)
    defense = build_defense({"name": name, **DEFENSES.get(name).example_params})
    with pytest.raises(ConfigError, match=rf"^params key 'finetune\.amp': defense '{name}' does not allow bf16 "
                                          r"autocast .*\(allowed: false; true with defense .*\bnone\b.*\)$"):
        train(_fresh_model(), defense, x, y, AMP)


def test_amp_must_be_a_boolean():
    assert TrainConfig.from_params(key="pretrain", seed=0, epochs=1, batch_size=8, lr=0.1, amp=True).amp
    with pytest.raises(ConfigError, match=r"params key 'pretrain\.amp': must be true or false, got 'yes'"):
        TrainConfig.from_params(key="pretrain", seed=0, epochs=1, batch_size=8, lr=0.1, amp="yes")
