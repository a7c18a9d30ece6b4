"""Time what `dvc repro` does with dvc.lock around every stage it runs.

DVC reads the lock with ruamel.yaml's safe loader to collect the stage, then rewrites the whole file:
a round-trip parse (which keeps comments and layout, in pure Python) and a dump. Each is timed on the
given lock, the read with ruamel.yaml's C loader (package ruamel.yaml.clib, a dependency) and with its
pure-Python loader in the same run; reported as the median of ``rounds`` and as the ratio pure / C.
The lock's size sets these seconds, which every stage of a `dvc repro` pays (README, Profiles).

    python -m benchmarks.bench_dvc_lock [--lock dvc.lock] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML
from tabulate import tabulate


def median_seconds(operation: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        operation()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def c_loader_installed() -> bool:
    return YAML(typ="safe").Parser.__module__.startswith("ruamel.yaml.clib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    text = args.lock.read_text()

    def read(pure: bool) -> object:
        return YAML(typ="safe", pure=pure).load(text)

    def rewrite() -> None:
        yaml = YAML()
        yaml.dump(yaml.load(text), io.StringIO())

    pure_read = median_seconds(lambda: read(pure=True), args.rounds)
    c_read = median_seconds(lambda: read(pure=False), args.rounds) if c_loader_installed() else None
    rewrite_seconds = median_seconds(rewrite, args.rounds)
    rows = [
        ["read, C loader", c_read, None if c_read is None else 1.0],
        ["read, pure Python", pure_read, None if c_read is None else pure_read / c_read],
        ["rewrite (round-trip parse + dump)", rewrite_seconds, None],
    ]
    stages = len(read(pure=c_read is None).get("stages", {}))
    print(f"{args.lock}: {len(text.encode()) / 1e6:.2f} MB, {stages} stages, median of {args.rounds} rounds")
    print(tabulate(rows, headers=["operation", "seconds", "× C loader"], floatfmt=".2f", missingval="—"))
    if c_read is None:
        print("ruamel.yaml.clib is not installed: DVC reads the lock in pure Python")


if __name__ == "__main__":
    main()
