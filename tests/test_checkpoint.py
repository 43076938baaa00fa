"""The checkpoint format: bit-identical round trip, strict refusals, atomic saves."""

import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from lavalamp.models import checkpoint
from lavalamp.models.checkpoint import LampLoadError, load_lamp, save_lamp
from lavalamp.models.dream import Dream
from lavalamp.models.rnn import LatentRNN, LatentRNNConfig

from .fakes import make_lamp


def all_tensors(lamp):
    out = {"mean": lamp.latent_mean, "std": lamp.latent_std, "ctx": lamp.start_contexts}
    for name in ("decoder", "rnn", "encoder", "upsampler"):
        if getattr(lamp, name) is not None:
            out.update({f"{name}.{k}": v for k, v in getattr(lamp, name).state_dict().items()})
    return out


@pytest.mark.parametrize("head", ["mdn", "deterministic"])
def test_round_trip_is_bit_identical(tmp_path, head):
    lamp = make_lamp(head=head, cell="lstm" if head == "deterministic" else "gru")
    lamp.temperature = 0.35
    save_lamp(lamp, tmp_path / "lamp.safetensors")
    back = load_lamp(tmp_path / "lamp.safetensors")
    a, b = all_tensors(lamp), all_tensors(back)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert back.decoder_config == lamp.decoder_config and back.rnn.config == lamp.rnn.config
    assert back.reference == lamp.reference and back.data == lamp.data and back.name == lamp.name
    assert back.data.lamp_fps == 5.0 and back.training == {"note": "test"}
    assert back.temperature == 0.35
    assert oct((tmp_path / "lamp.safetensors").stat().st_mode & 0o777) == oct(0o644)
    assert not back.decoder.training and not back.rnn.training
    z = torch.randn(3, lamp.latent_size)
    with torch.inference_mode():
        assert torch.equal(lamp.decode(z), back.decode(z))


def test_an_upsampled_lamp_round_trips_at_its_own_size(tmp_path):
    lamp = make_lamp(upsample_to=256)
    save_lamp(lamp, tmp_path / "big.safetensors")
    back = load_lamp(tmp_path / "big.safetensors")
    assert back.frame_size == 256 and back.base_size == 64
    assert back.upsampler.config == lamp.upsampler.config and not back.upsampler.training
    a, b = all_tensors(lamp), all_tensors(back)
    assert a.keys() == b.keys() and any(k.startswith("upsampler.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    z = torch.randn(2, lamp.latent_size)
    with torch.inference_mode():
        frames = back.decode(z)
        assert frames.shape == (2, 3, 256, 256) and torch.equal(frames, lamp.decode(z))
        assert back.decode_base(z).shape == (2, 3, 64, 64)


def test_an_upsampler_for_another_decoder_size_is_refused(tmp_path):
    lamp = make_lamp(upsample_to=256)
    save_lamp(lamp, tmp_path / "big.safetensors")
    raw = (tmp_path / "big.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    inner = json.loads(header["__metadata__"]["lamp"])
    inner["upsampler_config"]["in_size"] = 128
    header["__metadata__"]["lamp"] = json.dumps(inner)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])
    with pytest.raises(LampLoadError, match="upsampler takes 128 px frames but the decoder makes 64"):
        load_lamp(tmp_path / "bad.safetensors")


def test_header_is_self_describing(tmp_path):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    raw = (tmp_path / "lamp.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    lamp = json.loads(meta["lamp"])
    assert meta["format"] == "neural-lavalamp" and meta["format_version"] == "1"
    assert meta["package_version"]
    assert lamp["decoder_config"]["frame_size"] == 64 and lamp["data"]["fps"] == 30.0
    assert set(lamp["reference"]) == {"mean", "std", "skew", "kurtosis"}
    assert lamp["rnn_config"]["latent_size"] == lamp["decoder_config"]["latent_size"]


def test_missing_file(tmp_path):
    with pytest.raises(LampLoadError, match=r"nope\.safetensors: checkpoint not found"):
        load_lamp(tmp_path / "nope.safetensors")


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "lamp.safetensors"
    save_lamp(make_lamp(), path)
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(LampLoadError) as err:
            load_lamp(path)
        assert str(path) in str(err.value)


def test_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.safetensors"
    torch.save({"weights": Evil()}, path)
    with pytest.raises(LampLoadError, match="not a readable neural-lavalamp checkpoint"):
        load_lamp(path)
    assert not marker.exists()


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, path, metadata={"format": "neural-lavalamp",
                                                     "format_version": "99",
                                                     "package_version": "9.0", "lamp": "{}"})
    with pytest.raises(LampLoadError, match="format version 99 .*reads version 1"):
        load_lamp(path)
    save_file({"x": torch.zeros(1)}, path, metadata={"format": "something-else"})
    with pytest.raises(LampLoadError, match="not a neural-lavalamp checkpoint"):
        load_lamp(path)


def test_latent_size_disagreement_is_refused(tmp_path):
    lamp = make_lamp(latent_size=8)
    lamp.rnn = LatentRNN(LatentRNNConfig(latent_size=6, hidden_size=16))
    save_lamp(lamp, tmp_path / "bad.safetensors")
    with pytest.raises(LampLoadError, match="decoder latent size 8 and latent RNN latent size 6"):
        load_lamp(tmp_path / "bad.safetensors")


def test_weights_not_matching_config_are_refused(tmp_path, monkeypatch):
    lamp = make_lamp()
    path = tmp_path / "lamp.safetensors"
    save_lamp(lamp, path)
    real = checkpoint._read_tensors
    monkeypatch.setattr(checkpoint, "_read_tensors",
                        lambda p: {k: v for k, v in real(p).items() if "head" not in k})
    with pytest.raises(LampLoadError, match="rnn weights do not match"):
        load_lamp(path)


def test_crash_during_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "lamp.safetensors"
    save_lamp(make_lamp(seed=1), path)
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        save_lamp(make_lamp(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lamp.safetensors"]


@pytest.mark.slow
def test_killed_writer_leaves_old_checkpoint(tmp_path):
    """A process killed -9 in the middle of saving leaves the previous file readable."""
    import signal
    import subprocess
    import sys
    import textwrap
    path = tmp_path / "lamp.safetensors"
    save_lamp(make_lamp(seed=1), path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(os.path.dirname(os.path.dirname(__file__)))!r})
        from lavalamp.models import atomic
        real_fdopen = os.fdopen
        class Dying:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): return False
            def write(self, data):
                self.f.write(data[: len(data) // 2]); self.f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        os.fdopen = lambda fd, mode: Dying(real_fdopen(fd, mode))
        from tests.fakes import make_lamp
        from lavalamp.models.checkpoint import save_lamp
        save_lamp(make_lamp(seed=2), {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    load_lamp(path)


def test_dream_runs_from_a_loaded_lamp(tmp_path):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    lamp = load_lamp(tmp_path / "lamp.safetensors")
    a, b = Dream(lamp, seed=5), Dream(lamp, seed=5)
    za, zb = a.advance(10), b.advance(10)
    assert torch.equal(za, zb) and za.shape == (10, 8)
    frames = a.decode(za[:4])
    assert frames.shape == (4, 64, 64, 3) and frames.dtype.name == "uint8"
    a.reseed(6)
    assert a.steps == 0 and not torch.equal(a.advance(10), zb)
