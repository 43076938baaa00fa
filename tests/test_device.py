"""Device choice: auto falls back to cpu here; absent devices are clear errors."""

import pytest
import torch

from lavalamp.models.device import DeviceError, resolve_device


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("lavalamp.models.device._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr("lavalamp.models.device._mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_absent_devices_are_clear_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("lavalamp.models.device._mps_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_names_that_are_not_devices_are_refused_before_torch_is_asked():
    for name in ("cuda:x", "cpu:0", "cuda:"):
        with pytest.raises(DeviceError, match=f"unknown device '{name}': expected auto"):
            resolve_device(name)
