"""Throughput of robust.attacks against torchattacks: PGD-40 L∞, DeepFool-L2 and C&W-L2.

Everything is measured in one run, on one fixed model (the small CNN of bench_deepfool,
28×28 grey input, briefly fit to noisy class prototypes) and one batch whose labels are the
model's own predictions, so every example is attacked and the ratios do not depend on the
machine's speed. Each row gives the best-of-``repeats`` wall time of both implementations,
their ratio (torchattacks time / ours: > 1 means ours is faster) and what each achieved:
the fooling rate (1 − robust accuracy for PGD) and the median ‖δ‖₂ over the fooled examples.
One CPU thread by default: both libraries then run the same serial kernels, and the timings
survive other processes sharing the machine (OpenMP threads waiting for a busy core can
make a multi-threaded run many times slower).

C&W is compared at torchattacks' setting (one c, no binary search; ``binary_steps=1``
here), and once more with our binary search over c starting at the same c: its first
binary step is that same run, and the ``binary_steps − 1`` further values of c can only
shrink the best perturbation found, at ``binary_steps`` times the iterations.

    python -m benchmarks.bench_attacks [--batch 64] [--repeats 3] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
from math import nan
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from benchmarks.bench_deepfool import best_time, small_cnn
from robust.attacks.cw import cw
from robust.attacks.deepfool import deepfool
from robust.attacks.pgd import pgd


def fixed_model(classes: int, seed: int, train_steps: int, device: torch.device):
    """The model and a sampler of its task: noisy copies of one random prototype per class."""
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


def compare(name: str, ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor],
            model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int, device: torch.device) -> dict:
    x_ours, x_theirs = ours(), theirs()  # also the warm-up
    model.zero_grad(set_to_none=True)  # torchattacks backpropagates into the parameters
    t_ours = best_time(ours, repeats, device)
    t_theirs = best_time(theirs, repeats, device)
    model.zero_grad(set_to_none=True)
    row = {"attack": name, "ours_s": t_ours, "theirs_s": t_theirs, "ratio": t_theirs / t_ours}
    with torch.no_grad():
        for who, x_adv in (("ours", x_ours), ("theirs", x_theirs)):
            fooled = model(x_adv).argmax(1) != y
            row[f"fooled_{who}"] = fooled.float().mean().item()
            row[f"l2_{who}"] = (x_adv - x)[fooled].flatten(1).norm(dim=1).median().item() if fooled.any() else nan
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.1, help="PGD L∞ radius")
    parser.add_argument("--cw-steps", type=int, default=100)
    parser.add_argument("--cw-const", type=float, default=100.0, help="large enough for torchattacks to succeed")
    parser.add_argument("--cw-binary-steps", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, sample = fixed_model(args.classes, args.seed, args.train_steps, device)
    x, _ = sample(args.batch)
    with torch.no_grad():
        y = model(x).argmax(1)

    eps, step = args.eps, args.eps / 10
    ta_pgd = torchattacks.PGD(model, eps=eps, alpha=step, steps=40, random_start=False)
    ta_deepfool = torchattacks.DeepFool(model, steps=50, overshoot=0.02)
    ta_cw = torchattacks.CW(model, c=args.cw_const, kappa=0, steps=args.cw_steps, lr=0.01)
    rows = [
        compare("PGD-40 Linf", lambda: pgd(model, x, y, eps=eps, steps=40, step_size=step, random_start=False),
                lambda: ta_pgd(x, y), model, x, y, args.repeats, device),
        compare("DeepFool L2", lambda: deepfool(model, x, y, steps=50, overshoot=0.02),
                lambda: ta_deepfool(x, y), model, x, y, args.repeats, device),
        compare(f"C&W c={args.cw_const:g}", lambda: cw(model, x, y, steps=args.cw_steps, binary_steps=1,
                                                      initial_const=args.cw_const),
                lambda: ta_cw(x, y), model, x, y, args.repeats, device),
        compare(f"C&W search x{args.cw_binary_steps}",
                lambda: cw(model, x, y, steps=args.cw_steps, binary_steps=args.cw_binary_steps,
                           initial_const=args.cw_const),
                lambda: ta_cw(x, y), model, x, y, args.repeats, device),
    ]

    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} classes={args.classes} "
          f"pgd eps={eps} step={step} cw steps={args.cw_steps}")
    print(f"{'attack':<18}{'ours s':>9}{'theirs s':>10}{'ratio':>8}{'fooled ours/theirs':>21}"
          f"{'median L2 (fooled) ours/theirs':>33}")
    for r in rows:
        print(f"{r['attack']:<18}{r['ours_s']:9.3f}{r['theirs_s']:10.3f}{r['ratio']:7.2f}x"
              f"{r['fooled_ours']:11.1%} /{r['fooled_theirs']:7.1%}{r['l2_ours']:23.4f} /{r['l2_theirs']:8.4f}")
    print("ratio = torchattacks time / ours (> 1: ours faster); PGD 'fooled' = 1 − robust accuracy")


if __name__ == "__main__":
    main()
