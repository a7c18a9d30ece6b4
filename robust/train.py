"""The one training loop used for base training and for every defense.

The loop owns batching, optimisation, seeding, checkpoints and progress; a defense only
computes the loss of one batch (``Defense.training_step``). All randomness of epoch ``e``
(shuffling, dropout, attack random starts) is derived from ``(seed, e)``, so a run resumed
from the checkpoint of epoch ``e - 1`` continues exactly as an uninterrupted run would.

Device: the model's (``robust.device``); each batch is moved there. Mixed precision: a phase's
``amp: true`` runs the defense's step (forward passes, attacks, the defense's own updates)
under bf16 autocast on the model's device; the ``l2`` term, the backward pass of the returned
loss and the optimizer step stay in float32, on float32 weights. No gradient scaling: bf16
has float32's exponent range. Allowed only for defenses that set ``supports_amp`` (first-order
steps, ``robust.defenses.base``); off by default, since bf16 changes the numbers.

Several processes: when a process group is open (``robust.distributed``, launched with
torchrun) each process trains on its part of every global batch and the gradients are
averaged, so the run follows the one-process run on the same global batches; that module
says where it does not. Only rank 0 writes the resume checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from robust.augment import Augment
from robust.defenses import DEFENSES, Defense
from robust.device import bf16_autocast_available
from robust.distributed import Sync, rank_and_size
from robust.errors import ConfigError
from robust.io import load_torch, save_torch
from robust.params import require_number

log = logging.getLogger(__name__)

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    l2: float = 0.0  # official-code style penalty l2 · Σ‖w‖²/2 over ``model.l2_weights()``
    milestones: tuple[int, ...] = ()  # epochs after which the learning rate is multiplied by gamma
    gamma: float = 0.1
    lr_decay: float | None = None  # instead of milestones: the learning rate multiplied by this after every epoch
    seed: int = 0
    momentum: float | None = None  # sgd / rmsprop momentum (torch default 0 when None)
    beta1: float | None = None  # adam's first-moment decay (torch default 0.9 when None; the critic uses 0.5)
    rho: float | None = None  # rmsprop's squared-gradient decay (torch's alpha, default 0.99; TensorFlow's 0.9)
    augment: Augment | None = None  # random crops and flips of the training images (robust.augment)
    amp: bool = False  # bf16 autocast around the defense's step, where the defense allows it (module docstring)
    key: str = "train"  # the params key the values came from, named in errors found at training time

    @classmethod
    def from_params(cls, *, key: str, seed: int, **values) -> TrainConfig:
        """Build from params values; ``key`` prefixes the names in error messages."""
        config = cls(
            # 0 epochs: keep the model as it is (a run that evaluates a base trained with its defense)
            epochs=int(require_number(values["epochs"], f"{key}.epochs", low=0, integer=True)),
            batch_size=int(require_number(values["batch_size"], f"{key}.batch_size", low=1, integer=True)),
            lr=float(require_number(values["lr"], f"{key}.lr", low=0)),
            optimizer=values.get("optimizer", "adam"),
            l2=float(require_number(values.get("l2", 0.0), f"{key}.l2", low=0)),
            milestones=tuple(int(require_number(m, f"{key}.milestones", low=1, integer=True))
                             for m in values.get("milestones") or ()),
            gamma=float(require_number(values.get("gamma", 0.1), f"{key}.gamma", low=0)),
            lr_decay=None if values.get("lr_decay") is None else
            float(require_number(values["lr_decay"], f"{key}.lr_decay", low=0, high=1)),
            seed=seed,
            momentum=None if values.get("momentum") is None else
            float(require_number(values["momentum"], f"{key}.momentum", low=0, high=1)),
            beta1=None if values.get("beta1") is None else
            float(require_number(values["beta1"], f"{key}.beta1", low=0, high=1)),
            rho=None if values.get("rho") is None else
            float(require_number(values["rho"], f"{key}.rho", low=0, high=1)),
            augment=Augment.from_params(values.get("augment"), f"{key}.augment"),
            amp=values.get("amp", False),
            key=key,
        )
        if not isinstance(config.amp, bool):
            raise ConfigError(f"{key}.amp", f"must be true or false, got {config.amp!r}")
        if config.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{key}.optimizer", f"unknown optimizer {config.optimizer!r}", OPTIMIZERS)
        if config.momentum is not None and config.optimizer == "adam":
            raise ConfigError(f"{key}.momentum", "applies to sgd and rmsprop; adam's is beta1")
        if config.beta1 is not None and config.optimizer != "adam":
            raise ConfigError(f"{key}.beta1", f"applies to adam only, not {config.optimizer!r}")
        if config.rho is not None and config.optimizer != "rmsprop":
            raise ConfigError(f"{key}.rho", f"applies to rmsprop only, not {config.optimizer!r}")
        if config.lr_decay is not None and config.milestones:
            raise ConfigError(f"{key}.lr_decay", "decays after every epoch: give it or milestones, not both")
        return config

    def build_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_decay is not None:
            return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(self.milestones), gamma=self.gamma)

    def build_optimizer(self, parameters) -> torch.optim.Optimizer:
        extra = {}
        if self.momentum is not None:
            extra["momentum"] = self.momentum
        if self.beta1 is not None:
            extra["betas"] = (self.beta1, 0.999)
        if self.rho is not None:
            extra["alpha"] = self.rho
        return OPTIMIZERS[self.optimizer](parameters, lr=self.lr, **extra)


def seed_everything(seed: int) -> None:
    """Seed the global RNG (weight init, dropout) and make kernels deterministic (docs/determinism.md)."""
    # torch releases before 2.9 refuse deterministic cuBLAS without it; read when cuBLAS starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    # TF32 convolutions (on by default on Ampere and newer) round far beyond fp32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def autocast(config: TrainConfig, defense: Defense, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for the defense's step when ``config.amp``; a ConfigError where it is not allowed."""
    if not config.amp:
        return contextlib.nullcontext()
    if not defense.supports_amp:
        allowing = ", ".join(name for name in DEFENSES.names() if DEFENSES.get(name).supports_amp)
        name = getattr(defense, "name", type(defense).__name__)
        raise ConfigError(f"{config.key}.amp", f"defense {name!r} does not allow bf16 autocast (double "
                          "backpropagation, or a finite difference below bf16 resolution)",
                          f"false; true with defense {allowing}")
    if not bf16_autocast_available(device):
        raise ConfigError(f"{config.key}.amp", "bf16 autocast needs a GPU with native bfloat16 (Ampere or newer), "
                          f"not {torch.cuda.get_device_name(device)}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def check_divergence(loss: torch.Tensor, logs: Mapping[str, float], limits: Mapping[str, float], *, desc: str,
                     epoch: int) -> None:
    """Stop a diverged run before a broken model can be checkpointed or evaluated.

    Diverged means a non-finite objective or logged term (a defense's extra networks log their
    own losses, e.g. a discriminator's), or a term beyond the defense's ``divergence_limits``
    (an exploding discriminator). The message names the run, the epoch, the offending term and
    every term's value.
    """
    bad = [name for name, value in logs.items() if not math.isfinite(value)]
    if not torch.isfinite(loss):
        bad.insert(0, "loss")
    bad += [name for name, limit in limits.items() if name in logs and abs(logs[name]) > limit and name not in bad]
    if bad:
        terms = ", ".join(f"{name}={value:.4g}" for name, value in logs.items())
        limit_note = "".join(f"; |{name}| limit {limits[name]:g}" for name in bad if name in limits)
        raise FloatingPointError(f"{desc}: diverged at epoch {epoch} in {', '.join(bad)} "
                                 f"(loss={float(loss.detach()):.4g}, {terms}{limit_note})")


def train(model: nn.Module, defense: Defense, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, *,
          held_out: tuple[torch.Tensor, torch.Tensor] | None = None, checkpoint: Path | None = None,
          resume_tag: str = "", desc: str = "train") -> tuple[pd.DataFrame, list[float]]:
    """Train ``model`` in place; returns the per-epoch history and seconds per epoch.

    ``held_out`` (x, y) adds the clean accuracy after each epoch to the history.

    ``checkpoint`` (outside DVC's outputs) holds the state after the last complete epoch;
    training resumes from it and it is deleted once training finishes. A checkpoint written under
    another ``config`` or ``resume_tag`` (the caller's description of everything else that shapes
    the run: defense settings, starting weights, data) is ignored, not resumed.

    In a process group of several processes (``robust.distributed``) every process calls it
    with the same arguments; the history (logged terms averaged over all examples) is the same
    on every process.
    """
    device = next(model.parameters()).device
    autocast(config, defense, device)  # a refused ``amp`` stops the run before any work
    sync = Sync() if rank_and_size()[1] > 1 else None
    main = sync is None or sync.rank == 0
    optimizer = config.build_optimizer(model.parameters())
    schedule = config.build_schedule(optimizer)
    history: list[dict] = []
    start_epoch = 0
    settings = f"{config!r} {resume_tag}"
    state = load_torch(checkpoint) if checkpoint is not None and checkpoint.exists() else None
    if state is not None and state.get("settings") != settings:
        log.warning("%s: ignoring %s, written by a run with other settings", desc, checkpoint)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        defense.load_state_dict(state["defense"])
        history, start_epoch = state["history"], state["epoch"]
        log.info("%s: resuming after epoch %d from %s", desc, start_epoch, checkpoint)
    if sync is not None:
        sync.broadcast_module(model)  # every process starts from rank 0's weights, as DDP does
        defense.gradient_sync = sync.reduce_gradients
    has_buffers = any(True for _ in model.buffers())

    seconds: list[float] = []
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            torch.manual_seed(_epoch_seed(config.seed, epoch))
            generator = torch.Generator(device=device).manual_seed(_epoch_seed(config.seed, epoch))
            defense.generator = generator
            # defenses with their own networks and optimizers follow the model's schedule and progress
            defense.start_epoch(epoch, config.epochs, lr_factor=optimizer.param_groups[0]["lr"] / config.lr)
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)))
            draws = config.augment.draw(len(x), _epoch_seed(config.seed, epoch)) if config.augment else None
            totals: dict[str, float] = {}
            seen = 0
            model.train()
            batches = order.split(config.batch_size)
            # only rank 0 shows progress; otherwise tqdm's own defaults (and TQDM_* variables) hold
            bar = tqdm(batches, desc=f"{desc} epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch",
                       **({} if main else {"disable": True}))
            for index in bar:
                if sync is not None:
                    if len(index) < sync.size:
                        continue  # no example for some process: every process skips it
                    local = sync.shard(index)
                    sync.weight = len(local) / len(index)
                    index = local
                xb, yb = x[index].to(device), y[index].to(device)
                if draws is not None:
                    xb = config.augment.apply(xb, draws[index])
                optimizer.zero_grad(set_to_none=True)
                with autocast(config, defense, device):
                    loss, logs = defense.training_step(model, xb, yb)
                if config.l2 > 0:
                    loss = loss + config.l2 * sum(w.pow(2).sum() for w in model.l2_weights()) / 2
                _check_divergence_everywhere(sync, loss, logs, defense.divergence_limits, desc=desc, epoch=epoch + 1)
                loss.backward()
                if sync is not None:
                    sync.reduce_gradients(model.parameters())
                optimizer.step()
                if sync is not None and has_buffers:
                    sync.broadcast_module(model, parameters=False)
                seen += len(yb)
                for name, value in {**logs, "loss": float(loss.detach())}.items():  # loss: the full objective
                    totals[name] = totals.get(name, 0.0) + float(value) * len(yb)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if sync is not None:
                totals, seen = sync.sum_totals(totals, seen)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   **{name: total / seen for name, total in sorted(totals.items())}}
            schedule.step()
            if held_out is not None:
                row["held_out_accuracy"] = accuracy(model, *held_out, batch_size=config.batch_size)
            history.append(row)
            seconds.append(time.perf_counter() - started)
            if main:
                log.info("%s epoch %d: %s", desc, epoch + 1, {k: round(v, 4) for k, v in row.items()})
            if checkpoint is not None and main:
                save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "defense": defense.state_dict(),
                            "history": history, "epoch": epoch + 1, "settings": settings}, checkpoint)
    finally:
        defense.gradient_sync = None
    if checkpoint is not None and main:
        checkpoint.unlink(missing_ok=True)
    model.eval()
    return pd.DataFrame(history), seconds


def _check_divergence_everywhere(sync: Sync | None, loss: torch.Tensor, logs: Mapping[str, float],
                                 limits: Mapping[str, float], *, desc: str, epoch: int) -> None:
    """``check_divergence``; with several processes, all stop when one diverges (none waits forever)."""
    if sync is None:
        check_divergence(loss, logs, limits, desc=desc, epoch=epoch)
        return
    error = None
    try:
        check_divergence(loss, logs, limits, desc=desc, epoch=epoch)
    except FloatingPointError as caught:
        error = caught
    if sync.any(error is not None):
        raise error or FloatingPointError(f"{desc}: diverged at epoch {epoch} in another process")


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500) -> float:
    """Clean accuracy in eval mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(xb.to(device)).argmax(1) == yb.to(device)).sum())
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    model.train(was_training)
    return correct / len(y)
