"""Safe loading: params are data, never code; checkpoints load without unpickling arbitrary objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from robust.errors import ConfigError
from robust.evaluate import parse_suite
from robust.io import load_torch, save_torch
from robust.params import load_params

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "robust").rglob("*.py")) + sorted((REPO / "stages").glob("*.py"))
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
UNSAFE_ATTRIBUTES = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("pickle", "load"),
                     ("pickle", "loads")}


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_path_evaluates_strings_or_unpickles(path):
    for call in _calls(path):
        func = call.func
        if isinstance(func, ast.Name):
            assert func.id not in UNSAFE_CALLS, f"{path.name}:{call.lineno} calls {func.id}"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            assert (func.value.id, func.attr) not in UNSAFE_ATTRIBUTES, f"{path.name}:{call.lineno}"
            if (func.value.id, func.attr) == ("torch", "load"):
                flags = {kw.arg: kw.value for kw in call.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{path.name}:{call.lineno}: torch.load without weights_only=True"


def test_code_in_a_params_value_stays_a_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "attack:\n  suite:\n    - {name: \"__import__('pathlib').Path('pwned').touch()\", eps: 0.1}\n"
        "other: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(Exception, match="could not determine a constructor|python/object"):
        load_params(tmp_path / "params.yaml")  # safe_load refuses Python tags
    (tmp_path / "params.yaml").write_text(
        "attack:\n  suite:\n    - {name: \"__import__('pathlib').Path('pwned').touch()\", eps: 0.1}\n")
    params = load_params(tmp_path / "params.yaml")
    with pytest.raises(ConfigError, match=r"attack\.suite\[0\]\.name"):
        parse_suite(params["attack"]["suite"])
    assert not (tmp_path / "pwned").exists()


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("pwned"),))


def test_checkpoints_refuse_arbitrary_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": _Payload()}, tmp_path / "evil.pt")  # what a tampered checkpoint could hold
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        load_torch(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    save_torch({"model": {"w": torch.ones(2)}, "config": {"arch": "x"}}, tmp_path / "good.pt")
    assert torch.equal(load_torch(tmp_path / "good.pt")["model"]["w"], torch.ones(2))
