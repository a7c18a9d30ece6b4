"""Time the batched DeepFool of robust.attacks against torchattacks.DeepFool (a per-example loop).

Both attack the same small CNN (28×28 grey input, K classes), briefly fit to noisy class
prototypes so that it has real decision boundaries (an untrained ReLU net has flat, tied
logit regions where no linearisation attack makes progress), on the same batch with the
same steps/overshoot; every example is attacked (labels are the model's own predictions).
The speed ratio is measured within one run, so it does not depend on the machine's speed.

    python -m benchmarks.bench_deepfool [--batch 64] [--classes 10] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from robust.attacks.deepfool import deepfool


def small_cnn(n_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, n_classes),
    )


def best_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--overshoot", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=30)
    args = parser.parse_args()

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = small_cnn(args.classes).to(device)
    protos = 0.5 + 0.2 * (2 * torch.rand(args.classes, 1, 28, 28, generator=gen) - 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, args.classes, (n,), generator=gen)
        images = (protos[labels] + 0.2 * torch.randn(n, 1, 28, 28, generator=gen)).clamp(0, 1)
        return images.to(device), labels.to(device)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(args.train_steps):
        images, labels = sample(128)
        opt.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        opt.step()
    model.eval().zero_grad(set_to_none=True)
    x, _ = sample(args.batch)
    with torch.no_grad():
        y = model(x).argmax(1)

    ours = deepfool(model, x, y, steps=args.steps, overshoot=args.overshoot)  # warm-up
    reference = torchattacks.DeepFool(model, steps=args.steps, overshoot=args.overshoot)
    theirs = reference(x, y)
    model.zero_grad(set_to_none=True)  # torchattacks backpropagates into the parameters

    t_ours = best_time(lambda: deepfool(model, x, y, steps=args.steps, overshoot=args.overshoot),
                       args.repeats, device)
    t_theirs = best_time(lambda: reference(x, y), args.repeats, device)

    with torch.no_grad():
        flip_ours = (model(ours).argmax(1) != y).float().mean().item()
        flip_theirs = (model(theirs).argmax(1) != y).float().mean().item()
    norm_ours = (ours - x).flatten(1).norm(dim=1).mean().item()
    norm_theirs = (theirs - x).flatten(1).norm(dim=1).mean().item()

    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} "
          f"classes={args.classes} steps={args.steps} overshoot={args.overshoot}")
    print(f"robust.attacks.deepfool : {t_ours:8.3f} s  fooled {flip_ours:6.1%}  mean L2 {norm_ours:.4f}")
    print(f"torchattacks.DeepFool   : {t_theirs:8.3f} s  fooled {flip_theirs:6.1%}  mean L2 {norm_theirs:.4f}")
    print(f"speed-up (torchattacks time / ours): {t_theirs / t_ours:.1f}x")


if __name__ == "__main__":
    main()
