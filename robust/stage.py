"""Shared plumbing of the ``stages/*.py`` entry points: params loading, the CPU thread count and
one-line errors."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click
import torch

from robust.errors import ConfigError
from robust.params import load_params, require_number

GLOBAL_PARAMS = Path("params.yaml")
# CPU threads per stage, like `device` a params.yaml key that no stage tracks: how many threads
# split a floating-point reduction changes its rounding, so CPU bytes are reproducible only at one
# count (docs/determinism.md); null leaves torch's default (one per core)
THREADS_KEY = "threads"


def stage_params(params_file: str | Path) -> dict:
    """params.yaml (profile, seed, the main run) overlaid with a study's own params file."""
    params = load_params(GLOBAL_PARAMS)
    if Path(params_file) != GLOBAL_PARAMS:
        params.update(load_params(params_file))
    return params


def stage_threads(params_path: Path = GLOBAL_PARAMS) -> int | None:
    """The thread count params.yaml pins (None: torch's default, or no params.yaml here)."""
    if not params_path.exists():
        return None
    threads = load_params(params_path).get(THREADS_KEY)
    return None if threads is None else int(require_number(threads, THREADS_KEY, low=1, integer=True))


def stage(func: Callable) -> Callable:
    """Run a stage body: progress logging on, the CPU threads params.yaml pins, bad params reported as
    one line with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        previous = torch.get_num_threads()
        try:
            threads = stage_threads()
            if threads is not None:
                torch.set_num_threads(threads)
            return func(*args, **kwargs)
        except ConfigError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except FloatingPointError as error:  # a diverged training run: nothing is written
            click.echo(f"error: {error}", err=True)
            sys.exit(3)
        finally:  # a stage called in-process (tests, notebooks) leaves the caller's setting alone
            torch.set_num_threads(previous)

    return wrapper
