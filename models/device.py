"""Torch device choice: `auto` picks cuda, then mps, then cpu; an absent device is a clear error."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(RuntimeError):
    """The requested torch device does not exist on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device for a name such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'."""
    kind = name.split(":", 1)[0]
    if kind not in DEVICE_CHOICES or (kind in ("auto", "cpu", "mps") and ":" in name):
        raise DeviceError(f"unknown device {name!r}: expected one of {', '.join(DEVICE_CHOICES)}"
                          " (or cuda:N)")
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
