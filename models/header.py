"""The checkpoint's header, validated whole before anything is built or read: the safetensors index
(sizes, dtypes, shapes, offsets) and the lamp's own JSON (types, ranges, sizes) into typed objects."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import torch

from .grain import MAX_GRAIN
from .latent import LatentStats
from .rnn import LatentRNN, LatentRNNConfig
from .upsample import Upsampler, UpsamplerConfig
from .vae import VAEConfig

MAX_CHECKPOINT_BYTES = 2 * 2**30  # a lamp is megabytes (the default 7.7 MB)
MAX_HEADER_BYTES = 16 * 2**20  # the safetensors header (tensor index and the lamp's JSON)
MAX_WEIGHT_BYTES = 2**30  # bytes of every module's weights together, from the configs alone
MAX_START_CONTEXTS = 100_000
MAX_CONTEXT_STEPS = 4096
MAX_NAME = 200  # characters of a lamp's name (it reaches logs and metric labels)
MAX_TEXT = 10_000  # characters of any other text field
# Bounds of every number an architecture config or the data section holds, by field name.
LIMITS: dict[str, tuple[float, float]] = {
    "latent_size": (1, 1024), "base_channels": (1, 1024), "max_channels": (1, 4096),
    "hidden_size": (1, 8192), "num_layers": (1, 16), "mixtures": (1, 256),
    "frame_size": (1, 4096), "in_size": (1, 4096), "out_size": (1, 4096),
    "channels": (1, 4096), "blocks": (1, 64), "fps": (1e-3, 1000.0), "frame_step": (1, 100_000),
}
TOP_LEVEL = {"name", "decoder_kind", "decoder_config", "rnn_config", "upsampler_config", "reference",
             "data", "has_encoder", "temperature", "grain", "has_fixed_detail", "training"}
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
ITEM_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1,
              "BOOL": 1, "I16": 2, "U16": 2, "U32": 4, "U64": 8}


class HeaderError(ValueError):
    """A checkpoint header that cannot describe a lamp; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class DataInfo:
    """The footage a lamp was trained on."""

    fps: float
    """Frame rate of the source footage in frames per second."""
    frame_step: int = 1
    """Training used every frame_step-th source frame; one generated frame spans this many."""
    description: str = ""
    """Where the footage came from, in words."""

    @property
    def lamp_fps(self) -> float:
        """Generated frames per second of real lamp time."""
        return self.fps / self.frame_step


@dataclass(frozen=True, kw_only=True)
class LampHeader:
    """Everything a checkpoint says about its lamp, each value of the type and range it must have."""

    name: str
    decoder: VAEConfig
    rnn: LatentRNNConfig
    upsampler: UpsamplerConfig | None
    reference: LatentStats
    data: DataInfo
    has_encoder: bool
    temperature: float
    grain: float = 0.0
    has_fixed_detail: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    decoder_kind: str = "vae"

    @property
    def frame_size(self) -> int:
        """Side of the frames the lamp makes: the upsampler's output, else the decoder's."""
        return self.upsampler.out_size if self.upsampler is not None else self.decoder.frame_size


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the safetensors index: dtype code, shape and where its bytes lie."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def split_file(data: bytes) -> tuple[dict[str, str], dict[str, TensorEntry]]:
    """The metadata and the tensor index of a safetensors file's bytes, every entry checked
    (sizes bounded, dtypes known, byte ranges matching shapes and inside the file)."""
    if len(data) < 8:
        raise HeaderError("not a safetensors file (shorter than its 8-byte header length)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER_BYTES or 8 + size > len(data):
        raise HeaderError(f"header length {size} does not fit (at most {MAX_HEADER_BYTES} bytes, "
                          f"within the file's {len(data)}): truncated, or not a safetensors file")
    try:
        index = json.loads(data[8:8 + size])
    except (ValueError, RecursionError) as exc:
        raise HeaderError(f"header is not JSON ({type(exc).__name__})") from None
    if not isinstance(index, dict):
        raise HeaderError("header is not a JSON object")
    metadata = index.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("header metadata is not a map of strings")
    body = len(data) - 8 - size
    return metadata, {name: _entry(name, value, body) for name, value in index.items()}


def _entry(name: str, value: Any, body: int) -> TensorEntry:
    where = f"tensor {name[:80]!r}"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise HeaderError(f"{where}: expected dtype, shape and data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in ITEM_BYTES:
        raise HeaderError(f"{where}: unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) and d >= 0 for d in shape):
        raise HeaderError(f"{where}: shape must be a list of at most 8 sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets) \
            or not 0 <= offsets[0] <= offsets[1] <= body:
        raise HeaderError(f"{where}: data_offsets lie outside the file (truncated?)")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEM_BYTES[dtype]:
        raise HeaderError(f"{where}: {offsets[1] - offsets[0]} bytes for shape {shape} {dtype}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def parse_lamp(text: str) -> LampHeader:
    """The lamp's JSON header as a LampHeader; HeaderError naming the first bad field."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise HeaderError(f"checkpoint header is damaged ({type(exc).__name__}: {exc})") from None
    obj = _object(raw, "checkpoint header")
    unknown = sorted(set(obj) - TOP_LEVEL)
    if unknown:
        raise HeaderError(f"checkpoint header: unknown field {unknown[0][:60]!r} (expected: "
                          f"{', '.join(sorted(TOP_LEVEL))})")
    if obj.get("decoder_kind", "vae") != "vae":
        raise HeaderError(f"unknown decoder kind {_quote(obj.get('decoder_kind'))} (expected 'vae')")
    decoder = typed(VAEConfig, obj.get("decoder_config"), "decoder_config")
    rnn = typed(LatentRNNConfig, obj.get("rnn_config"), "rnn_config")
    if decoder.latent_size != rnn.latent_size:
        raise HeaderError(f"decoder latent size {decoder.latent_size} and latent RNN latent size "
                          f"{rnn.latent_size} disagree")
    upsampler = None
    if obj.get("upsampler_config") is not None:
        upsampler = typed(UpsamplerConfig, obj["upsampler_config"], "upsampler_config")
        if upsampler.in_size != decoder.frame_size:
            raise HeaderError(f"upsampler takes {upsampler.in_size} px frames but the decoder makes "
                              f"{decoder.frame_size} px frames")
    training = obj.get("training") or {}
    if not isinstance(training, dict):
        raise HeaderError("training: expected a JSON object")
    return LampHeader(name=_text(obj.get("name", "lamp"), "name", MAX_NAME), decoder=decoder, rnn=rnn,
                      upsampler=upsampler, reference=_reference(obj.get("reference")),
                      data=typed(DataInfo, obj.get("data"), "data"),
                      has_encoder=_value(obj.get("has_encoder", False), bool, "has_encoder"),
                      temperature=_number(obj.get("temperature", 1.0), "temperature", 1e-4, 100.0),
                      grain=_number(obj.get("grain", 0.0), "grain", 0.0, MAX_GRAIN),
                      has_fixed_detail=_value(obj.get("has_fixed_detail", False), bool,
                                              "has_fixed_detail"),
                      training=training)


def typed(cls: type, values: Any, what: str) -> Any:
    """A config dataclass from a JSON object: known fields only, each of its declared type and
    within LIMITS, then the class's own checks; HeaderError naming the field."""
    obj = _object(values, what)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in obj.items():
        if key not in names:
            raise HeaderError(f"{what}: unknown field {key[:60]!r} (expected: {', '.join(sorted(names))})")
        kind = hints[key]
        if kind is float:
            lo, hi = LIMITS.get(key, (-math.inf, math.inf))
            obj[key] = _number(value, f"{what}.{key}", lo, hi)
        elif kind is int:
            lo, hi = LIMITS.get(key, (0, 2**31))
            if not _is_int(value) or not lo <= value <= hi:
                raise HeaderError(f"{what}.{key}: expected an integer in {lo:g}..{hi:g}, got {_quote(value)}")
        elif kind is str:
            obj[key] = _text(value, f"{what}.{key}", MAX_TEXT)
        else:
            _value(value, kind, f"{what}.{key}")
    try:
        return cls(**obj)
    except (TypeError, ValueError) as exc:
        raise HeaderError(f"invalid {what} {_quote(values)}: {exc}") from None


def expected_tensors(header: LampHeader) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of every tensor the header's lamp holds except the start contexts, from
    its modules built on the meta device (nothing allocated); HeaderError if they are too big."""
    with torch.device("meta"):
        modules = {"decoder": header.decoder.decoder(), "rnn": LatentRNN(header.rnn),
                   "encoder": header.decoder.encoder(2 * header.decoder.latent_size)
                   if header.has_encoder else None,
                   "upsampler": Upsampler(header.upsampler) if header.upsampler else None}
    out = {f"{prefix}.{k}": (tuple(v.shape), DTYPES.get(v.dtype, str(v.dtype)))
           for prefix, module in modules.items() if module is not None
           for k, v in module.state_dict().items()}
    size = sum(math.prod(shape) * ITEM_BYTES.get(dtype, 8) for shape, dtype in out.values())
    if size > MAX_WEIGHT_BYTES:
        raise HeaderError(f"the architecture asks for {size / 2**30:.1f} GiB of weights (at most "
                          f"{MAX_WEIGHT_BYTES / 2**30:g} GiB)")
    d = header.decoder.latent_size
    out["latent.mean"] = out["latent.std"] = ((d,), "F32")
    if header.has_fixed_detail:
        out["fixed_detail"] = ((3, header.frame_size, header.frame_size), "F32")
    return out


def check_tensors(header: LampHeader, index: dict[str, TensorEntry]) -> None:
    """The file holds exactly the tensors the header's lamp needs, of the right dtypes and shapes."""
    expected = expected_tensors(header)
    names = set(index) - {"latent.start_contexts"}
    for name in sorted(set(expected) - names)[:1]:
        raise HeaderError(f"tensor {name!r} is missing")
    for name in sorted(names - set(expected))[:1]:
        raise HeaderError(f"tensor {name[:80]!r} belongs to no module of this lamp")
    for name, (shape, dtype) in expected.items():
        entry = index[name]
        if (entry.shape, entry.dtype) != (shape, dtype):
            raise HeaderError(f"tensor {name!r} is {entry.dtype} {list(entry.shape)}; the architecture "
                              f"config needs {dtype} {list(shape)}")
    contexts = index.get("latent.start_contexts")
    if contexts is None:
        raise HeaderError("tensor 'latent.start_contexts' is missing")
    n, t, d = (contexts.shape + (0, 0, 0))[:3] if len(contexts.shape) == 3 else (0, 0, 0)
    if contexts.dtype != "F32" or d != header.decoder.latent_size or not \
            (1 <= n <= MAX_START_CONTEXTS and 1 <= t <= MAX_CONTEXT_STEPS):
        raise HeaderError(f"tensor 'latent.start_contexts' is {contexts.dtype} {list(contexts.shape)}; "
                          f"expected F32 [N, T, {header.decoder.latent_size}] with N in "
                          f"1..{MAX_START_CONTEXTS} and T in 1..{MAX_CONTEXT_STEPS}")


def _reference(values: Any) -> LatentStats:
    obj = _object(values, "reference")
    if set(obj) != set(LatentStats._fields):
        raise HeaderError(f"reference: expected exactly {', '.join(LatentStats._fields)}")
    stats = LatentStats(**{k: _number(obj[k], f"reference.{k}", -1e6, 1e6) for k in LatentStats._fields})
    if not stats.std > 0:
        raise HeaderError(f"reference.std must be positive, got {stats.std}")
    return stats


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HeaderError(f"{what}: expected a JSON object, got {_quote(value)}")
    return dict(value)


def _value(value: Any, kind: Any, what: str) -> Any:
    if kind is bool and not isinstance(value, bool):
        raise HeaderError(f"{what}: expected true or false, got {_quote(value)}")
    return value


def _number(value: Any, what: str, lo: float, hi: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value) and lo <= value <= hi
    except OverflowError:
        ok = False
    if not ok:
        raise HeaderError(f"{what}: expected a number in {lo:g}..{hi:g}, got {_quote(value)}")
    return float(value)


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or \
            any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value):
        raise HeaderError(f"{what}: expected text of at most {limit} characters without control "
                          f"characters, got {_quote(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quote(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "an enormous integer"
    return text if len(text) <= 60 else text[:57] + "..."
