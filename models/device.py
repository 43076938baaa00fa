"""Torch device choice: `auto` picks cuda, then mps, then cpu; an absent device is a clear error."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N (the Nth GPU) or mps"


class DeviceError(RuntimeError):
    """The requested torch device does not exist on this machine."""


def device_name_problem(name: Any) -> str | None:
    """Why `name` is not a device name (auto, cpu, cuda, cuda:N, mps), or None; needs no torch,
    so a config is checked on a machine without the device."""
    if isinstance(name, str) and DEVICE_NAME.fullmatch(name):
        return None
    return f"unknown device {name!r}: expected {DEVICE_HELP}"


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device for a name such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'."""
    import torch

    problem = device_name_problem(name)
    if problem:
        raise DeviceError(problem)
    kind = name.split(":", 1)[0]
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available "
                              "(is this the CPU build of torch? see the README)")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
    if kind == "mps" and not _mps_available():
        raise DeviceError("device 'mps' requested but Apple Metal (MPS) is not available here")
    return torch.device(name)
