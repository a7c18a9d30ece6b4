"""Reading params files: dotted keys, profiles and type checks with one-line errors.

Stages read only the keys dvc.yaml declares for them; these helpers keep that reading
uniform and turn every bad value into a ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robust.errors import ConfigError

PROFILES = ("smoke", "cpu", "paper")
_MISSING = object()


# a multi-megabyte file (dvc.lock) takes libyaml a second and the pure-Python parser tens of seconds
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_params(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "params file not found")
    loader = SAFE_LOADER(path.read_text())  # yaml.safe_load, with libyaml's parser where it is installed
    try:
        params = loader.get_single_data() or {}
    finally:
        loader.dispose()
    if not isinstance(params, dict):
        raise ConfigError(str(path), "params file must hold a mapping")
    return params


def lookup(params: Mapping, key: str, default: Any = _MISSING) -> Any:
    """``params["a"]["b"]`` for ``key="a.b"``; a missing key is a ConfigError unless a default is given."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not _MISSING:
                return default
            raise ConfigError(key, "missing")
        node = node[part]
    return node


def require_number(value: Any, key: str, *, low: float | None = None, high: float | None = None,
                   integer: bool = False) -> float | int:
    """Check a numeric params value and its range; booleans and strings are rejected."""
    kind = "an integer" if integer else "a number"
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not valid_type:
        raise ConfigError(key, f"must be {kind}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(key, f"{value!r} is out of range", bounds)
    return value


def require_mapping(value: Any, key: str) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {value!r}")
    return dict(value)


def check_keys(config: Mapping, key: str, allowed: set[str], required: set[str] = frozenset()) -> None:
    """Reject unknown keys (typos silently ignored are the worst kind of bug) and missing ones."""
    for name in config:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", "unknown key", allowed)
    for name in required:
        if name not in config:
            raise ConfigError(f"{key}.{name}", "missing")


def profile_settings(params: Mapping) -> tuple[str, dict]:
    """The active profile's name and its settings block ``profiles.<name>``."""
    name = lookup(params, "profile")
    if name not in PROFILES:
        raise ConfigError("profile", f"unknown profile {name!r}", PROFILES)
    return name, require_mapping(lookup(params, f"profiles.{name}"), f"profiles.{name}")


def profile_overrides(config: Mapping, key: str, profile: str, allowed: set[str]) -> dict:
    """A config's own replacements for one profile, ``<key>.profiles.<profile>`` (empty when absent)."""
    overrides = require_mapping(lookup(config, f"profiles.{profile}", {}), f"{key}.profiles.{profile}")
    check_keys(overrides, f"{key}.profiles.{profile}", allowed)
    return overrides


def seed_of(params: Mapping) -> int:
    return int(require_number(lookup(params, "seed"), "seed", low=0, integer=True))
