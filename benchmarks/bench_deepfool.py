"""Time the batched DeepFool of robust.attacks against torchattacks.DeepFool (a per-example loop).

Both attack the fixed model of bench_attacks (a small CNN on 28×28 grey input, K classes)
on the same batch with the same steps and overshoot; every example is attacked (labels
are the model's own predictions). Same thread count for both; the median ratio over
``rounds`` alternating rounds, with its range, measured within one run (see bench_attacks).
Our default ``slack`` 1e-4 and ``slack=0`` (what torchattacks computes) are both compared.

Besides the row at the model as it is, a second row freezes the model's parameters
(``requires_grad_(False)``): torchattacks' ``backward()`` then no longer computes parameter
gradients, which is its fastest possible setting; ours never computes them.

    python -m benchmarks.bench_deepfool [--batch 64] [--classes 10] [--steps 50] [--rounds 7] [--threads 1 [2 ...]] [--keep-freed-memory]
"""

from __future__ import annotations

import torch
import torchattacks

from benchmarks.bench_attacks import common_arguments, compare, header, print_rows, setup
from robust.attacks.deepfool import STEP_SLACK, deepfool


def main() -> None:
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--overshoot", type=float, default=0.02)
    args = parser.parse_args()
    model, x, y, device = setup(args)

    def ours(slack: float = STEP_SLACK):
        return lambda: deepfool(model, x, y, steps=args.steps, overshoot=args.overshoot, slack=slack)

    reference = torchattacks.DeepFool(model, steps=args.steps, overshoot=args.overshoot)

    def comparisons():
        yield compare("DeepFool L2", ours(), lambda: reference(x, y), model, x, y, args.rounds, device)
        yield compare("DeepFool L2 slack 0", ours(0.0), lambda: reference(x, y), model, x, y, args.rounds, device)
        model.requires_grad_(False)
        try:
            yield compare("DeepFool L2 frozen", ours(), lambda: reference(x, y), model, x, y, args.rounds, device)
        finally:
            model.requires_grad_(True)

    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"{header(args, device)} steps={args.steps} overshoot={args.overshoot}")
        print_rows(comparisons())


if __name__ == "__main__":
    main()
