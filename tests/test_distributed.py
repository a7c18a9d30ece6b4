"""Data-parallel training over two gloo processes on the CPU (robust.distributed, robust.train).

Two processes are spawned the way torchrun would start them (its environment variables), each
opens the process group with ``process_group`` and trains with ``train``. Checked: every rank
ends with the same weights, a loss that is a mean over examples gives the one-process run on
the whole global batches (plain cross-entropy, with and without crops and flips, and AFD with its
discriminator and embedding steps), and a defense with extra networks and BatchNorm (JARN) is identical across ranks and
repeats itself.
"""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from robust.augment import Augment
from robust.defenses import build_defense
from robust.distributed import Launch, is_main, launch_from_env, process_group
from robust.train import TrainConfig, seed_everything, train

WORLD = 2
# 37 examples in batches of 8: four even batches and a last one of 5 split 3/2, so unequal shares are weighed
N_EXAMPLES, CLASSES = 37, 3
CONFIG = TrainConfig(epochs=2, batch_size=8, lr=0.05, optimizer="sgd", momentum=0.5, l2=1e-3, seed=3)
# each example's crop and flip are drawn for the whole training set, so sharding a batch keeps them
AUGMENTED = dataclasses.replace(CONFIG, augment=Augment(crop=2, flip=True))
DEFENSES = {
    "none": {"name": "none"},
    "afd": {"name": "afd", "attack": {"name": "fgsm", "eps": 0.1}, "lr_embed": 0.05, "lr_disc": 0.05,
            "disc_width": 16},
    "jarn": {"name": "jarn", "lambda": 1.0, "noise_eps": 0.03, "discriminator": "mnist", "disc_every": 2,
             "disc_lr": 0.01, "adaptor_lr": 0.01, "start_fraction": 0.0},
}


def _model(batchnorm: bool) -> nn.Sequential:
    """An MLP (no batch statistics: shards add up to the whole batch) or a CNN with BatchNorm."""
    torch.manual_seed(0)
    if batchnorm:
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                              nn.Linear(4 * 64, CLASSES))
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, CLASSES))
    model.l2_weights = lambda: [m.weight for m in model if isinstance(m, nn.Linear)]  # the trainer's l2 term
    return model


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(N_EXAMPLES, 1, 8, 8, generator=generator), torch.randint(0, CLASSES, (N_EXAMPLES,),
                                                                               generator=generator)


def _state(model: nn.Module, defense) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers, and the parameters of the defense's networks.

    Their buffers are per process (robust.distributed): JARN's discriminator runs in training
    mode only, so its BatchNorm statistics are never used.
    """
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    nets = {"jarn": lambda: {"adaptor": defense.nets["adaptor"], "discriminator": defense.nets["discriminator"]},
            "afd": lambda: {"disc": defense.disc}}.get(defense.name, dict)()
    for net_name, net in nets.items():
        state |= {f"{net_name}.{k}": v.detach().clone() for k, v in net.named_parameters()}
    return state


def _run(name: str, batchnorm: bool, config: TrainConfig = CONFIG) -> tuple[dict[str, torch.Tensor], list[dict]]:
    seed_everything(0)
    model = _model(batchnorm)
    defense = build_defense(DEFENSES[name])
    history, _ = train(model, defense, *_data(), config)
    return _state(model, defense), history.to_dict("records")


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD),
                   "RANK": str(rank), "LOCAL_RANK": str(rank)}
    with process_group(torch.device("cpu")) as launch:
        assert launch == Launch(rank, WORLD, rank) and is_main() == (rank == 0)
        results = {"none": _run("none", False), "afd": _run("afd", False),
                   "none_augmented": _run("none", False, AUGMENTED),
                   "jarn": _run("jarn", True), "jarn_again": _run("jarn", True)}
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("name", ["none", "afd", "jarn"])
def test_every_rank_ends_with_the_same_weights_and_history(ranks, name):
    (state0, history0), (state1, history1) = ranks[0][name], ranks[1][name]
    assert state0.keys() == state1.keys()
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
    assert history0 == history1


@pytest.mark.parametrize("name", ["none", "afd", "none_augmented"])
def test_two_processes_equal_one_process_on_the_whole_batches(ranks, name):
    state, history = ranks[0][name]
    reference, reference_history = _run(*{"none_augmented": ("none", False, AUGMENTED)}.get(name, (name, False)))
    assert state.keys() == reference.keys()
    for key in state:
        torch.testing.assert_close(state[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)
    for row, expected in zip(history, reference_history, strict=True):
        assert row.keys() == expected.keys()
        for term in row:  # logged terms: means over all examples of the epoch
            assert row[term] == pytest.approx(expected[term], rel=1e-5, abs=1e-6), term


def test_a_distributed_run_repeats_itself(ranks):
    (state, history), (again, history_again) = ranks[0]["jarn"], ranks[0]["jarn_again"]
    for key in state:
        assert torch.equal(state[key], again[key]), key
    assert history == history_again
    assert history[-1]["jarn_active"] == 1.0  # the discriminator and adaptor took part


def test_launch_is_read_from_torchruns_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch_from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch_from_env() is None  # torchrun with one process: a plain run
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(RuntimeError, match="RANK, LOCAL_RANK is not"):
        launch_from_env()
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_from_env() == Launch(rank=5, world_size=4, local_rank=1)
