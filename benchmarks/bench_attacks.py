"""Throughput of robust.attacks against torchattacks: PGD-40 L∞, DeepFool-L2 and C&W-L2.

Everything is measured in one run, on one fixed model (a small CNN on 28×28 grey input,
briefly fit to noisy class prototypes) and one batch whose labels are the model's own
predictions, so every example is attacked and the ratios do not depend on the machine's
speed. Both libraries run with the same number of CPU threads; ``--threads 1 2`` measures
each count in turn. One thread is the steadier figure: both then run the same serial
kernels, while on a machine shared with other processes OpenMP threads waiting for a busy
core can make a multi-threaded run many times slower.

Timing: ``rounds`` rounds, each timing both implementations once, back to back, the order
swapped every round (neither always runs second, after the other has warmed or filled the
caches and the allocator). Each round gives one ratio, torchattacks time / ours (> 1 means
ours is faster), so a burst of load from elsewhere shifts both times of a round alike. The
table gives the median ratio over the rounds with its range (lowest–highest round), and the
median time of each. Load still moves the ratios from run to run, so quote the range of a
few runs.

Each row also gives what each achieved: how many of the attacked examples are fooled (for
PGD: 1 − robust accuracy) and the median ‖δ‖₂ over the examples each one fooled, and over
the examples that both fooled (the like-for-like comparison when the fooled sets differ).
torchattacks calls ``backward()``, which also computes the parameters' gradients: that is
part of its cost as shipped. Our PGD-L∞ and DeepFool hand the model CPU image batches laid
out channels-last (``robust.attacks.base.channels_last``), torchattacks the caller's NCHW
batches: a difference of implementation, timed with the rest (copies included).

Memory: a batched attack allocates and frees tensors of megabytes in every backward pass,
and glibc's malloc by default gives such blocks back to the system when they are freed
(mmap threshold, heap trimming), so every pass page-faults its memory in again; the
batch-1 tensors of torchattacks stay below those thresholds. ``--keep-freed-memory`` sets
glibc's thresholds so that freed memory is kept for reuse, as jemalloc and tcmalloc (the
allocators PyTorch's CPU performance guide recommends) do; both implementations then run
under it. The header says which allocator setting a table was measured with.

DeepFool is compared twice: with our default, every step going 1e-4 beyond the linearised
boundary as the authors' reference code does (it flips examples torchattacks leaves on the
boundary, at a 1e-4 larger ‖δ‖), and with ``slack=0``, Algorithm 2 as printed, which is what
torchattacks computes. Without the slack, iterates converge onto curved boundaries from the
original side, and floating-point rounding decides when (or whether, within the 50 steps)
each of them counts as flipped, for us and for torchattacks alike: that row's time and
fooled count depend on rounding, not only on the implementation.

C&W is compared at torchattacks' setting (one c, no binary search; ``binary_steps=1``
here), and once more with our binary search over c starting at the same c: its first
binary step is that same run, and the ``binary_steps − 1`` further values of c can only
shrink the best perturbation found, at ``binary_steps`` times the iterations.

    python -m benchmarks.bench_attacks [--batch 64] [--rounds 7] [--threads 1 [2 ...]] [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time
from collections.abc import Callable, Iterable
from math import nan
from statistics import median

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from robust.attacks.cw import cw
from robust.attacks.deepfool import deepfool
from robust.attacks.pgd import pgd


def small_cnn(n_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, n_classes),
    )


def fixed_model(classes: int, seed: int, train_steps: int, device: torch.device):
    """The model and a sampler of its task: noisy copies of one random prototype per class.

    Fit briefly so that it has real decision boundaries: an untrained ReLU net has flat, tied
    logit regions where no linearisation attack makes progress.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = small_cnn(classes).to(device)
    protos = 0.5 + 0.2 * (2 * torch.rand(classes, 1, 28, 28, generator=gen) - 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, classes, (n,), generator=gen)
        images = (protos[labels] + 0.2 * torch.randn(n, 1, 28, 28, generator=gen)).clamp(0, 1)
        return images.to(device), labels.to(device)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(train_steps):
        images, labels = sample(128)
        opt.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        opt.step()
    model.eval().zero_grad(set_to_none=True)
    return model, sample


def keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters, from glibc's malloc.h
    # 32 MiB is the largest mmap threshold glibc accepts; blocks below it come from the heap
    if not (libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)):
        raise RuntimeError("mallopt refused the thresholds: --keep-freed-memory needs glibc")


def round_times(fns: list[Callable[[], object]], rounds: int, device: torch.device) -> list[list[float]]:
    """Wall time of each function in each of ``rounds`` rounds, every other round in reverse order."""
    times = [[] for _ in fns]
    for r in range(rounds):
        order = list(zip(fns, times))
        for fn, spent in order if r % 2 == 0 else reversed(order):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            spent.append(time.perf_counter() - start)
    return times


def _median_l2(delta: torch.Tensor, where: torch.Tensor) -> float:
    return delta[where].flatten(1).norm(dim=1).median().item() if where.any() else nan


def compare(name: str, ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor],
            model: nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int, device: torch.device) -> dict:
    x_ours, x_theirs = ours(), theirs()  # also the warm-up
    model.zero_grad(set_to_none=True)  # torchattacks backpropagates into the parameters
    t_ours, t_theirs = round_times([ours, theirs], rounds, device)
    model.zero_grad(set_to_none=True)
    ratios = [theirs_s / ours_s for ours_s, theirs_s in zip(t_ours, t_theirs)]
    with torch.no_grad():
        fooled_ours, fooled_theirs = (model(x_adv).argmax(1) != y for x_adv in (x_ours, x_theirs))
    both = fooled_ours & fooled_theirs
    return {
        "attack": name, "n": len(y), "ours_s": median(t_ours), "theirs_s": median(t_theirs),
        "ratio": median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "fooled_ours": int(fooled_ours.sum()), "fooled_theirs": int(fooled_theirs.sum()),
        "l2_ours": _median_l2(x_ours - x, fooled_ours), "l2_theirs": _median_l2(x_theirs - x, fooled_theirs),
        "both": int(both.sum()), "l2_both_ours": _median_l2(x_ours - x, both),
        "l2_both_theirs": _median_l2(x_theirs - x, both),
    }


def print_rows(rows: Iterable[dict]) -> None:
    """One line per comparison, each printed as it finishes, so a run cut short still reports its rows."""
    print(f"{'attack':<20}{'ours s':>8}{'theirs s':>9}{'ratio':>8}{'range':>14}{'fooled ours/theirs':>20}"
          f"{'median L2 own fooled':>22}{'median L2 both fooled':>29}", flush=True)
    for r in rows:
        fooled = f"{r['fooled_ours']}/{r['n']} / {r['fooled_theirs']}/{r['n']}"
        spread = f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}x"
        print(f"{r['attack']:<20}{r['ours_s']:8.3f}{r['theirs_s']:9.3f}{r['ratio']:7.2f}x{spread:>14}{fooled:>20}"
              f"{r['l2_ours']:12.4f} /{r['l2_theirs']:8.4f}"
              f"{r['both']:>6}:{r['l2_both_ours']:11.4f} /{r['l2_both_theirs']:8.4f}", flush=True)
    print("times: medians over the rounds; ratio = torchattacks time / ours (> 1: ours faster), median over "
          "the rounds, range = lowest–highest round; PGD 'fooled' = 1 − robust accuracy; "
          "'both fooled' = count: medians over the examples both fooled")


def setup(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.device]:
    """Allocator, the fixed model and the batch to attack (labelled by the model itself)."""
    if args.keep_freed_memory:
        keep_freed_memory()
    device = torch.device(args.device)
    # trained on one thread whatever the counts measured: its weights, and so every attack's
    # result, would otherwise change with the reduction order of more threads
    torch.set_num_threads(1)
    model, sample = fixed_model(args.classes, args.seed, args.train_steps, device)
    x, _ = sample(args.batch)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, device


def common_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7,
                        help="timed rounds, each running both implementations once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="CPU thread counts, each measured in turn, the same for both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc malloc keeps freed memory instead of page-faulting it in again")
    return parser


def header(args: argparse.Namespace, device: torch.device) -> str:
    malloc = "keep-freed" if args.keep_freed_memory else "default"
    return (f"device={device} threads={torch.get_num_threads()} malloc={malloc} batch={args.batch} "
            f"classes={args.classes} rounds={args.rounds}")


def main() -> None:
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.1, help="PGD L∞ radius")
    parser.add_argument("--cw-steps", type=int, default=100)
    parser.add_argument("--cw-const", type=float, default=100.0, help="large enough for torchattacks to succeed")
    parser.add_argument("--cw-binary-steps", type=int, default=5)
    args = parser.parse_args()
    model, x, y, device = setup(args)

    eps, step = args.eps, args.eps / 10
    ta_pgd = torchattacks.PGD(model, eps=eps, alpha=step, steps=40, random_start=False)
    ta_deepfool = torchattacks.DeepFool(model, steps=50, overshoot=0.02)
    ta_cw = torchattacks.CW(model, c=args.cw_const, kappa=0, steps=args.cw_steps, lr=0.01)
    for threads in args.threads:
        torch.set_num_threads(threads)
        comparisons = [
            ("PGD-40 Linf", lambda: pgd(model, x, y, eps=eps, steps=40, step_size=step, random_start=False),
             lambda: ta_pgd(x, y)),
            ("DeepFool L2", lambda: deepfool(model, x, y, steps=50, overshoot=0.02), lambda: ta_deepfool(x, y)),
            ("DeepFool L2 slack 0", lambda: deepfool(model, x, y, steps=50, overshoot=0.02, slack=0.0),
             lambda: ta_deepfool(x, y)),
            (f"C&W c={args.cw_const:g}", lambda: cw(model, x, y, steps=args.cw_steps, binary_steps=1,
                                                    initial_const=args.cw_const),
             lambda: ta_cw(x, y)),
            (f"C&W search x{args.cw_binary_steps}",
             lambda: cw(model, x, y, steps=args.cw_steps, binary_steps=args.cw_binary_steps,
                        initial_const=args.cw_const),
             lambda: ta_cw(x, y)),
        ]
        print(f"{header(args, device)} pgd eps={eps} step={step} cw steps={args.cw_steps}")
        print_rows(compare(name, ours, theirs, model, x, y, args.rounds, device) for name, ours, theirs in comparisons)


if __name__ == "__main__":
    main()
