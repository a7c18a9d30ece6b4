"""Where a stage computes: the params key ``device`` (``auto | cpu | cuda | cuda:N``).

``auto`` (also used when the key is absent) takes the first visible GPU when CUDA is
available and the CPU otherwise. ``cuda`` and ``cuda:N`` are requests, not preferences: when
CUDA (or GPU N) is not there the stage stops with one line naming the key, instead of
silently training for days on the CPU.

Everything a stage computes follows the model: it is moved to the device once, the trainer
moves each batch to the model's device, and attacks and defenses create their tensors,
generators and extra networks (discriminators, critics, adaptors) on the device of the batch
they are given. The shuffle order and the evaluation subset are drawn on the CPU, so they do
not depend on the device; the numbers themselves do (docs/determinism.md).

In a multi-process run (``robust.distributed``) each process uses the GPU of its local rank:
``auto`` and ``cuda`` then mean ``cuda:<LOCAL_RANK>``.
"""

from __future__ import annotations

import re

import torch

from robust.errors import ConfigError

KEY = "device"
CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(value: object, key: str = KEY) -> torch.device:
    """The ``torch.device`` a params value names; a ConfigError naming ``key`` for anything else."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {value!r}", CHOICES)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(value)
    if match is None:
        raise ConfigError(key, f"unknown device {value!r}", CHOICES)
    if not torch.cuda.is_available():
        raise ConfigError(key, f"{value!r} asked for, but CUDA is not available to torch {torch.__version__} "
                               "on this machine", ["auto", "cpu"])
    if match.group(1) is not None:
        index, count = int(match.group(1)), torch.cuda.device_count()
        if index >= count:
            raise ConfigError(key, f"{value!r} asked for, but only {count} GPU(s) are visible",
                              [f"cuda:{i}" for i in range(count)] + ["auto", "cpu", "cuda"])
    return torch.device(value)


def bf16_autocast_available(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (any CPU; GPUs from Ampere on)."""
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False))


def describe(device: torch.device) -> dict:
    """What a wall-clock time was measured on: the device's name, the torch build and the CPU threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads()}
