"""Training throughput of every registered defense relative to plain training, in one run.

The comparison of JARN's Table 4 (Chan et al. 2020, arXiv 1912.10185: training time of JARN
against adversarial training and standard training), for all defenses here: each defense
trains the same model on the same data on the same device through ``robust.train.train``
(the pipeline's loop, so its overheads count), and the table gives images/s and the ratio to
``none`` (> 1: slower than standard training).

Settings are each defense's ``example_params`` (the smallest valid settings, e.g. 2 TRADES
steps, a 32-wide critic), with the schedule-dependent ones switched on from the first step:
JARN's ``start_fraction: 0`` (otherwise its first 75% is plain training) and the critic's
``warmup_epochs: 0``. The model is a small CNN on 1×28×28 inputs with 10 classes; data are
noisy class prototypes. Each defense runs ``repeats`` one-epoch trainings of ``steps``
batches after one warm-up epoch; the best time is kept, so a burst of load from elsewhere
hits every defense alike. A ratio depends on the model, the batch and the device: quote it
with them.

    python -m benchmarks.bench_training [--device auto] [--batch 64] [--steps 10] [--repeats 3]
                                        [--threads 1] [--amp]

``--amp`` runs the defenses that allow it under bf16 autocast (``supports_amp``) and the
others in float32, marked in the table.
"""

from __future__ import annotations

import argparse
import logging
import math
import os

# the trainer's progress bars would bury the table; tqdm reads this when it is imported
os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from tabulate import tabulate
from torch import nn

from robust.defenses import DEFENSES, build_defense
from robust.device import resolve_device
from robust.train import TrainConfig, seed_everything, train

CLASSES = 10
# params that make a defense do its full work from the first step of a short benchmark
ACTIVE_FROM_THE_START = {"jarn": {"start_fraction": 0.0}, "critic": {"warmup_epochs": 0}}


def small_cnn() -> nn.Sequential:
    """A Sequential ending in a linear layer, so the representation defenses (AFD) find E and Dc."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, CLASSES),
    )


def task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(CLASSES, 1, 28, 28, generator=generator)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    return (prototypes[y] + 0.2 * torch.randn(n, 1, 28, 28, generator=generator)).clamp(0, 1), y


def images_per_second(name: str, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, device: torch.device,
                      repeats: int) -> float:
    params = {"name": name, **DEFENSES.get(name).example_params, **ACTIVE_FROM_THE_START.get(name, {})}
    best = math.inf
    for attempt in range(repeats + 1):  # the first is a warm-up: allocator, kernels, lazy networks
        seed_everything(0)
        model = small_cnn().to(device)
        _, seconds = train(model, build_defense(params), x, y, config, desc=name)
        if attempt > 0:
            best = min(best, seconds[0])
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast where the defense allows it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, key="--device")
    x, y = task(args.batch * args.steps, seed=0)
    base = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-3, seed=0)

    rows, reference = [], None
    for name in ["none", *(n for n in DEFENSES.names() if n != "none")]:
        amp = args.amp and DEFENSES.get(name).supports_amp
        config = TrainConfig(**{**base.__dict__, "amp": amp})
        rate = images_per_second(name, x, y, config, device, args.repeats)
        reference = reference or rate
        rows.append([name + (" (bf16)" if amp else ""), f"{rate:.0f}", f"{reference / rate:.2f}"])
    where = f"{device}" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else
                           f", {args.threads} thread(s)")
    print(f"Training throughput on {where}: small CNN 1×28×28 → {CLASSES}, batch {args.batch}, "
          f"{args.steps} batches per epoch, best of {args.repeats}, torch {torch.__version__}")
    print(tabulate(rows, headers=["defense", "images/s", "time ÷ none"], tablefmt="github", disable_numparse=True,
                   colalign=("left", "right", "right")))


if __name__ == "__main__":
    main()
