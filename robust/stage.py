"""Shared plumbing of the ``stages/*.py`` entry points: params loading and one-line errors."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from robust.errors import ConfigError
from robust.params import load_params

GLOBAL_PARAMS = Path("params.yaml")


def stage_params(params_file: str | Path) -> dict:
    """params.yaml (profile, seed, the main run) overlaid with a study's own params file."""
    params = load_params(GLOBAL_PARAMS)
    if Path(params_file) != GLOBAL_PARAMS:
        params.update(load_params(params_file))
    return params


def stage(func: Callable) -> Callable:
    """Run a stage body: progress logging on, bad params reported as one line with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return func(*args, **kwargs)
        except ConfigError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except FloatingPointError as error:  # a diverged training run: nothing is written
            click.echo(f"error: {error}", err=True)
            sys.exit(3)

    return wrapper
