"""The committed dvc.lock records every stage dvc.yaml defines, and nothing else.

DVC rewrites dvc.lock in place: a `dvc repro` interrupted while it updates the lock leaves a
truncated file that still parses, with whole stages missing (docs/scale-out.md). Committed, such
a lock loses the record of which params and code made the committed metrics. The expected names
are expanded from the index (robust/index.py), the maps dvc.yaml's `foreach` loops iterate over.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from robust.index import load_index

ROOT = Path(__file__).resolve().parents[1]
FOREACH = re.compile(r"\$\{(\w+)\}")


def load_yaml(path: Path) -> dict:
    # the C loader: the lock is megabytes of YAML, which the pure-Python one reads in tens of seconds
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def defined_stages(root: Path) -> set[str]:
    index, _ = load_index(root)
    names = set()
    for stage, definition in load_yaml(root / "dvc.yaml")["stages"].items():
        if "foreach" not in definition:
            names.add(stage)
            continue
        section = FOREACH.fullmatch(definition["foreach"]).group(1)
        names.update(f"{stage}@{item}" for item in index[section])
    return names


def test_lock_records_exactly_the_stages_dvc_yaml_defines():
    recorded = set(load_yaml(ROOT / "dvc.lock")["stages"])
    defined = defined_stages(ROOT)
    missing, stale = sorted(defined - recorded), sorted(recorded - defined)
    assert not missing, (
        f"dvc.lock lacks {len(missing)} of {len(defined)} stages (first: {missing[:3]}): run them, or "
        "restore a lock an interrupted `dvc repro` truncated (git checkout dvc.lock)"
    )
    assert not stale, f"dvc.lock records {len(stale)} stages dvc.yaml no longer defines (first: {stale[:3]})"

