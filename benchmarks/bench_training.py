"""Training throughput of every registered defense relative to plain training, in one run.

The comparison of JARN's Table 4 (Chan et al. 2020, arXiv 1912.10185: training time of JARN
against adversarial training and standard training), for all defenses here: each defense
trains the same model on the same data on the same device through ``robust.train.train``
(the pipeline's loop, so its overheads count), and the table gives images/s and the ratio to
``none`` (> 1: slower than standard training).

Settings are each defense's ``example_params`` (the smallest valid settings, e.g. 2 TRADES
steps, a 32-wide critic), with the schedule-dependent ones switched on from the first step:
JARN's ``start_fraction: 0`` (otherwise its first 75% is plain training) and the critic's
``warmup_epochs: 0``. Named variants add the rows of Table 4 that are settings of another
defense: ``pgd-at7`` (Madry et al.'s 7-step PGD adversarial training, every example
adversarial), ``fgsm-at1`` (every example replaced by its FGSM example at the same ε),
``jarn-d10`` (JARN with the paper's discriminator and update interval for the input) and
``jarn-at1`` (``jarn-d10`` on the ``fgsm-at1`` batch; the paper gives the fraction for neither
data set: the whole batch, as studies/chan2020-cifar10.yaml chose). ``--input mnist`` (default) uses 1×28×28
inputs, ε = 0.3 with PGD steps of 0.1 ≈ 2.5ε/7 and JARN's MNIST discriminator every 10 steps
(§4.1); ``--input cifar10`` uses 3×32×32 inputs, Madry's CIFAR-10 budget (ε = 8/255, steps of
2/255) and JARN's CIFAR-10 discriminator every 20 steps (§4). For Jakubovitz & Giryes, ``jacobian`` (exact: one
double-backward pass per class) is set against ``jacobian-proj1`` (one random projection,
Hoffman et al. 2019) and the Appendix D penalty on layer L − 1, exact (``jacobian-l1``: one pass
per unit of that layer) and estimated (``jacobian-l1-proj10``). The model is a small CNN (``--arch small``) or any
registered architecture (``--arch jarn-mnist``: JARN's MNIST CNN) with 10 classes; data are
noisy class prototypes. Each defense runs ``repeats`` one-epoch trainings of
``steps`` batches after one warm-up epoch; the best time is kept, so a burst of load from
elsewhere hits every defense alike. A ratio depends on the model, the batch and the device:
quote it with them.

Table 4 ("Average wall-clock time per training epoch for CIFAR-10 adversarial defenses"; its
numbers are lost from the seed text; §4.3: JARN-AT1 "takes less than half the time of 7-step PGD
adversarial training"). Wall-clock time cannot enter the pipeline's deterministic results, so
the claim is checked here, all rows measured in one run on the same machine:

    python -m benchmarks.bench_training --arch jarn-mnist --defenses none,jarn-d10,fgsm-at1,jarn-at1,pgd-at7

The claim holds if the ``time ÷ pgd-at7`` column is ≤ 0.5 for ``jarn-d10`` and ``jarn-at1``. That
compares an epoch with JARN on; Table 4's caption reads "average ... time per training epoch", and
JARN is on only for the last 25% of training (§3), its epochs before it plain (JARN) or FGSM-AT1
(JARN-AT1). A second table gives those averages against PGD-AT7, from the same measurements
(``jarn-at1``'s needs ``fgsm-at1`` in ``--defenses``).
The paper's own setting, the Madry wide ResNet on CIFAR-10 (narrowed to fit a CPU; width 1 is
WRN-34-10 itself, for a GPU):

    python -m benchmarks.bench_training --input cifar10 --arch wrn-34-10 --width 0.25 \
        --defenses none,jarn-d10,fgsm-at1,jarn-at1,pgd-at7

The cost of each gradient regularizer of Jakubovitz & Giryes against a plain step:

    python -m benchmarks.bench_training --arch jakubovitz-mnist --width 0.25 \
        --defenses input_gradient,cross_lipschitz,jacobian,jacobian-proj1,jacobian-l1-proj10,jacobian-l1
JARN runs from its first step here, as a JARN epoch of the paper does (the paper trains with
JARN only over the last 25% of epochs, which makes a whole training cheaper still). The ratio
depends on the architecture: JARN's extra cost is one double backward pass through the
classifier plus the discriminator on 2B inputs, PGD-AT7's is seven forward-backward passes
through the classifier, so a classifier much cheaper than the discriminator (jarn-mnist's
strided convolutions against the 2-layer discriminator at full resolution) favours PGD-AT7,
and a wide ResNet (the paper's CIFAR-10 Table 4) favours JARN.

    python -m benchmarks.bench_training [--device auto] [--batch 64] [--steps 10] [--repeats 3]
                                        [--threads 1] [--amp] [--arch small] [--width 1.0]
                                        [--input mnist|cifar10]
                                        [--defenses none,jarn,...]

``--amp`` runs the defenses that allow it under bf16 autocast (``supports_amp``) and the
others in float32, marked in the table. ``--defenses`` keeps the named entries (registered
defenses and the variants above), in the order given; ``none`` is always measured first as
the reference.
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
from robust.models import ARCHS, build_model
from robust.train import TrainConfig, seed_everything, train

CLASSES = 10
# params that make a defense do its full work from the first step of a short benchmark
ACTIVE_FROM_THE_START = {"jarn": {"start_fraction": 0.0}, "critic": {"warmup_epochs": 0}}
# The inputs a benchmark can train on, with the budgets each paper uses there: MNIST's ε = 0.3 (PGD
# steps of 0.1 ≈ 2.5ε/7) and JARN's MNIST discriminator updated every 10 steps (§4.1); CIFAR-10's
# Madry budget (ε = 8/255, 7 steps of 2/255) and JARN's CIFAR-10 discriminator every 20 steps (§4).
INPUTS = {
    "mnist": {"shape": (1, 28, 28), "eps": 0.3, "step_size": 0.1, "discriminator": "mnist", "disc_every": 10},
    "cifar10": {"shape": (3, 32, 32), "eps": 8 / 255, "step_size": 2 / 255, "discriminator": "cifar10",
                "disc_every": 20},
}

# §3: JARN is on for the last 25% of training; the epochs before it train as the entry named here
JARN_SHARE = 0.25
TRAINS_BEFORE_JARN = {"jarn-d10": "none", "jarn-at1": "fgsm-at1"}


def variants(inputs: str) -> dict[str, dict]:
    """Rows of JARN's Table 4 and Jakubovitz's cost comparison that are settings of a registered defense."""
    budget = INPUTS[inputs]
    jarn = {"name": "jarn", "discriminator": budget["discriminator"], "disc_every": budget["disc_every"]}
    fgsm = {"fraction": 1.0, "attack": {"name": "fgsm", "eps": budget["eps"]}}
    return {
        "pgd-at7": {"name": "at", "adversarial": {"fraction": 1.0, "attack": {
            "name": "pgd", "eps": budget["eps"], "steps": 7, "step_size": budget["step_size"], "random_start": True}}},
        "fgsm-at1": {"name": "at", "adversarial": fgsm},
        "jarn-d10": jarn,
        "jarn-at1": {**jarn, "adversarial": fgsm},
        # Jakubovitz & Giryes: the exact penalty (``jacobian``, one double-backward pass per logit)
        # against the random-projection estimate, and the hidden-layer penalties of Appendix D
        "jacobian-proj1": {"name": "jacobian", "projections": 1},
        "jacobian-l1-proj10": {"name": "jacobian", "layer": "L-1", "projections": 10},
        "jacobian-l1": {"name": "jacobian", "layer": "L-1"},
    }


def small_cnn(in_shape: tuple[int, int, int]) -> nn.Sequential:
    """A Sequential ending in a linear layer, so the representation defenses (AFD) find E and Dc."""
    channels, height, width = in_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 64), nn.ReLU(), nn.Linear(64, CLASSES),
    )


def task(n: int, seed: int,
         in_shape: tuple[int, int, int] = INPUTS["mnist"]["shape"]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(CLASSES, *in_shape, generator=generator)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    return (prototypes[y] + 0.2 * torch.randn(n, *in_shape, generator=generator)).clamp(0, 1), y


def defense_params(entry: str, inputs: str = "mnist") -> dict:
    """The params an entry trains with: a variant's, or the registered defense's example params."""
    variant = variants(inputs).get(entry, {"name": entry})
    name = variant["name"]
    return {"name": name, **DEFENSES.get(name).example_params, **ACTIVE_FROM_THE_START.get(name, {}), **variant}


def make_model(arch: str, width: float, in_shape: tuple[int, int, int]) -> nn.Module:
    if arch == "small":
        return small_cnn(in_shape)
    return build_model(arch, in_shape=in_shape, num_classes=CLASSES, width=width)


def images_per_second(entry: str, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, device: torch.device,
                      repeats: int, arch: str = "small", width: float = 1.0, inputs: str = "mnist") -> float:
    params = defense_params(entry, inputs)
    best = math.inf
    for attempt in range(repeats + 1):  # the first is a warm-up: allocator, kernels, lazy networks
        seed_everything(0)
        model = make_model(arch, width, INPUTS[inputs]["shape"]).to(device)
        _, seconds = train(model, build_defense(params), x, y, config, desc=entry)
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
    parser.add_argument("--arch", default="small", help="small | a registered architecture, e.g. jarn-mnist")
    parser.add_argument("--width", type=float, default=1.0, help="width of a registered architecture")
    parser.add_argument("--input", default="mnist", choices=sorted(INPUTS),
                        help="mnist: 1×28×28 with MNIST budgets; cifar10: 3×32×32 with CIFAR-10 budgets")
    parser.add_argument("--defenses", default=None,
                        help="comma-separated entries to measure (defenses and variants); default: every defense")
    args = parser.parse_args()
    entries = select_entries(args.defenses)
    if args.arch != "small":
        ARCHS.get(args.arch)  # an unknown name fails here, listing the registered ones
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, key="--device")
    x, y = task(args.batch * args.steps, seed=0, in_shape=INPUTS[args.input]["shape"])
    base = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-3, seed=0)

    rates = {}
    for entry in entries:
        amp = args.amp and DEFENSES.get(defense_params(entry, args.input)["name"]).supports_amp
        config = TrainConfig(**{**base.__dict__, "amp": amp})
        rates[entry] = (images_per_second(entry, x, y, config, device, args.repeats, args.arch, args.width,
                                          args.input), amp)
    reference, pgd_at7 = rates["none"][0], rates.get("pgd-at7", (None,))[0]
    rows = []
    for entry, (rate, amp) in rates.items():
        row = [entry + (" (bf16)" if amp else ""), f"{rate:.0f}", f"{reference / rate:.2f}"]
        rows.append(row + ([f"{pgd_at7 / rate:.2f}"] if pgd_at7 else []))
    where = f"{device}" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else
                           f", {args.threads} thread(s)")
    model = "small CNN" if args.arch == "small" else f"{args.arch} (width {args.width:g})"
    shape = "×".join(map(str, INPUTS[args.input]["shape"]))
    print(f"Training throughput on {where}: {model} {shape} → {CLASSES}, batch {args.batch}, "
          f"{args.steps} batches per epoch, best of {args.repeats}, torch {torch.__version__}")
    headers = ["defense", "images/s", "time ÷ none"] + (["time ÷ pgd-at7"] if pgd_at7 else [])
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                   colalign=("left", *["right"] * (len(headers) - 1))))
    averages = schedule_averages({entry: 1 / rate for entry, (rate, _) in rates.items()})
    if pgd_at7 and averages:
        print(f"\nTable 4's average epoch: JARN on for the last {JARN_SHARE:.0%} of training, "
              "the epochs before it as the entry named")
        rows = [[entry, TRAINS_BEFORE_JARN[entry], f"{seconds * pgd_at7:.2f}"] for entry, seconds in averages.items()]
        print(tabulate(rows, headers=["defense", "before JARN", "average time ÷ pgd-at7"], tablefmt="github",
                       disable_numparse=True, colalign=("left", "left", "right")))


def schedule_averages(seconds: dict[str, float]) -> dict[str, float]:
    """Each measured JARN entry's time per epoch averaged over a training with JARN in its last
    ``JARN_SHARE`` (needs the entry that trains before it, measured in the same run)."""
    return {entry: (1 - JARN_SHARE) * seconds[before] + JARN_SHARE * seconds[entry]
            for entry, before in TRAINS_BEFORE_JARN.items() if entry in seconds and before in seconds}


def select_entries(wanted: str | None) -> list[str]:
    """``none`` first, then the wanted entries (default: every registered defense) in their order."""
    known = [*DEFENSES.names(), *variants("mnist")]
    names = [n for n in DEFENSES.names() if n != "none"] if wanted is None else \
        [n.strip() for n in wanted.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise SystemExit(f"--defenses: unknown entry {name!r} (allowed: {', '.join(known)})")
    return ["none", *dict.fromkeys(n for n in names if n != "none")]


if __name__ == "__main__":
    main()
