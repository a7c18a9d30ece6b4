"""Which of dvc.yaml's stages dvc.lock records.

DVC rewrites dvc.lock in place: a `dvc repro` interrupted while it updates the lock leaves a
truncated file that still parses, with whole stages missing (docs/scale-out.md). The stage names
are expanded from the pipeline index (``robust.index``), the maps dvc.yaml's ``foreach`` loops
iterate over, so the check needs neither DVC's own (slow) loading nor the stages' outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from robust.params import load_params

FOREACH = re.compile(r"\$\{(\w+)\}")


def defined_stages(root: Path, index: Mapping[str, Mapping]) -> set[str]:
    """Every stage name dvc.yaml defines: ``name`` or, for a ``foreach`` over an index map, ``name@item``."""
    names = set()
    for stage, definition in load_params(root / "dvc.yaml").get("stages", {}).items():
        if "foreach" not in definition:
            names.add(stage)
            continue
        loop = FOREACH.fullmatch(str(definition["foreach"]))
        if loop is None or loop.group(1) not in index:
            raise ValueError(f"dvc.yaml stage {stage!r}: foreach {definition['foreach']!r} is not an index map "
                             f"(allowed: {', '.join('${' + name + '}' for name in index)})")
        names.update(f"{stage}@{item}" for item in index[loop.group(1)])
    return names


def recorded_stages(root: Path) -> set[str]:
    """The stages dvc.lock records (none where there is no lock yet)."""
    path = root / "dvc.lock"
    return set(load_params(path).get("stages", {})) if path.exists() else set()


def lock_coverage(defined: set[str], recorded: set[str]) -> tuple[list[str], list[str]]:
    """The defined stages the lock does not record, and the recorded ones dvc.yaml no longer defines."""
    return sorted(defined - recorded), sorted(recorded - defined)
