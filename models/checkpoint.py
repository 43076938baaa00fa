"""The lamp checkpoint: one self-describing safetensors file holding everything needed to dream."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from . import __version__, one_line
from .atomic import atomic_write_bytes
from .conv import ConvDecoder, ConvEncoder
from .grain import grain_pattern
from .header import (MAX_CHECKPOINT_BYTES, DataInfo, HeaderError, LampHeader, check_tensors,
                     parse_lamp, split_file)
from .latent import LatentStats
from .rnn import LatentRNN
from .upsample import Upsampler
from .vae import VAEConfig

FORMAT = "neural-lavalamp"
FORMAT_VERSION = 1
DEFAULT_LAMP_FILE = "default_lamp.safetensors"


class LampLoadError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem, in one
    short line whatever the file holds."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


@dataclass(kw_only=True)
class Lamp:
    """A complete lamp: decoder, latent RNN, latent statistics and where its footage came from.

    The RNN steps latents u in a standardized space; the decoder sees z = u * latent_std + latent_mean
    and makes frames of its own size; an upsampler, when the lamp has one, enlarges them to
    `frame_size` with learned detail.
    """

    name: str
    decoder_kind: str
    decoder_config: VAEConfig
    decoder: ConvDecoder
    rnn: LatentRNN
    latent_mean: torch.Tensor  # (D,)
    latent_std: torch.Tensor  # (D,)
    reference: LatentStats
    start_contexts: torch.Tensor  # (N,T,D) standardized latent windows of real footage
    data: DataInfo
    encoder: ConvEncoder | None = None
    upsampler: Upsampler | None = None
    training: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    """Sampling temperature calibrated after training so the dream moves like the footage."""
    grain: float = 0.0
    """Std (levels of 255) of the footage's fixed grain, added to every frame as one fixed pattern
    (grain.py; 0 = none)."""
    fixed_detail: torch.Tensor | None = None
    """(3,S,S) on the [0,1] pixel scale, added to every frame: what the footage shows at each pixel
    and the lamp's frames of it miss, on average (the glass's outline and highlights at full size;
    None = nothing)."""
    _grain: tuple[tuple, torch.Tensor] | None = field(default=None, init=False, repr=False,
                                                      compare=False)

    @property
    def frame_size(self) -> int:
        """Side of the square frames the lamp makes, in pixels."""
        return self.upsampler.config.out_size if self.upsampler is not None else self.base_size

    @property
    def base_size(self) -> int:
        """Side of the decoder's frames (and of the encoder's input), in pixels."""
        return self.decoder_config.frame_size

    @property
    def latent_size(self) -> int:
        """Dimensions of the latent."""
        return self.decoder_config.latent_size

    def to(self, device: torch.device | str) -> "Lamp":
        """Move every module and tensor to `device` (in place) and return self."""
        for name in ("decoder", "rnn", "encoder", "upsampler"):
            module = getattr(self, name)
            if module is not None:
                module.to(device)
        for name in ("latent_mean", "latent_std", "start_contexts", "fixed_detail"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        return self

    def decode_base(self, u: torch.Tensor) -> torch.Tensor:
        """Standardized latents (B,D) -> the decoder's frames (B,3,s,s) in [0,1], s = base_size."""
        return self.decoder(u * self.latent_std + self.latent_mean)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """Standardized latents (B,D) -> frames (B,3,S,S) in [0,1], S = frame_size."""
        frames = self.decode_base(u)
        return self.finish(self.upsampler(frames) if self.upsampler is not None else frames)

    def finish(self, frames: torch.Tensor) -> torch.Tensor:
        """The decoder's (and upsampler's) frames (B,3,S,S) with the lamp's fixed detail and grain."""
        if self.fixed_detail is not None:
            frames = (frames + self.fixed_detail.to(frames)).clamp(0.0, 1.0)
        return frames + self.grain_pattern(frames) if self.grain > 0 else frames

    def grain_pattern(self, frames: torch.Tensor) -> torch.Tensor:
        """The lamp's grain (3,S,S) for frames like `frames`: made once per size, device, dtype and
        grain std (a trainer sets a new std on a lamp that has decoded with the old one)."""
        key = (frames.shape[-1], frames.device, frames.dtype, self.grain)
        if self._grain is None or self._grain[0] != key:
            self._grain = key, grain_pattern(key[0], self.grain, device=key[1], dtype=key[2])
        return self._grain[1]


def default_lamp_path() -> Path:
    """The lamp shipped inside the package."""
    return Path(str(resources.files("lavalamp.models").joinpath(DEFAULT_LAMP_FILE)))


def save_lamp(lamp: Lamp, path: str | Path) -> None:
    """Write the lamp to `path` atomically (temporary file, then rename)."""
    tensors = {"latent.mean": lamp.latent_mean, "latent.std": lamp.latent_std,
               "latent.start_contexts": lamp.start_contexts}
    if lamp.fixed_detail is not None:
        tensors["fixed_detail"] = lamp.fixed_detail
    modules = {"decoder": lamp.decoder, "rnn": lamp.rnn, "encoder": lamp.encoder,
               "upsampler": lamp.upsampler}
    for prefix, module in modules.items():
        if module is not None:
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {
        "name": lamp.name,
        "decoder_kind": lamp.decoder_kind,
        "decoder_config": dataclasses.asdict(lamp.decoder_config),
        "rnn_config": dataclasses.asdict(lamp.rnn.config),
        "reference": lamp.reference._asdict(),
        "data": dataclasses.asdict(lamp.data),
        "has_encoder": lamp.encoder is not None,
        "upsampler_config": None if lamp.upsampler is None else dataclasses.asdict(lamp.upsampler.config),
        "temperature": lamp.temperature,
        "grain": lamp.grain,
        "has_fixed_detail": lamp.fixed_detail is not None,
        "training": lamp.training,
    }
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "package_version": __version__, "lamp": json.dumps(header)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_lamp(path: str | Path | None = None, device: torch.device | str = "cpu") -> Lamp:
    """Read a lamp (None = the shipped default) onto `device`, modules in eval mode, and prove that
    it can be shown (dream.prove_lamp): a lamp that would only ever show black is refused here.

    The whole header is validated (header.py: types, ranges, sizes, every tensor's dtype and shape
    against the architecture) before any module is built or any weight read; nothing is unpickled.
    """
    from .dream import prove_lamp  # the dream is built on the checkpoint

    path = Path(path) if path is not None else default_lamp_path()
    try:
        data = _read_file(path)
        try:
            header, index = _read_header(data)
            check_tensors(header, index)
            lamp = _build_lamp(header, _read_tensors(data)).to(device)
            prove_lamp(lamp)
        except (LampLoadError, HeaderError) as exc:
            raise LampLoadError(f"{path}: {exc}") from None
        return lamp
    except LampLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a checkpoint must never crash its reader
        raise LampLoadError(f"{path}: cannot use this checkpoint ({type(exc).__name__}: {exc})") from None


def _read_file(path: Path) -> bytes:
    """The whole file, read into memory (never memory-mapped: a checkpoint overwritten in place,
    `cp new old`, would kill a process still using the old tensors with SIGBUS), at most
    MAX_CHECKPOINT_BYTES of it."""
    if not path.is_file():
        raise LampLoadError(f"{path}: checkpoint not found")
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_CHECKPOINT_BYTES:
                raise LampLoadError(f"{path}: over {MAX_CHECKPOINT_BYTES // 2**30} GiB: not a lamp")
            data = f.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as exc:
        raise LampLoadError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise LampLoadError(f"{path}: over {MAX_CHECKPOINT_BYTES // 2**30} GiB: not a lamp")
    return data


def _read_header(data: bytes) -> tuple[LampHeader, dict]:
    try:
        metadata, index = split_file(data)
    except HeaderError as exc:
        raise LampLoadError(f"not a readable neural-lavalamp checkpoint (truncated, or not a "
                            f"safetensors file: {exc})") from None
    if metadata.get("format") != FORMAT:
        raise LampLoadError("a safetensors file, but not a neural-lavalamp checkpoint")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise LampLoadError(f"checkpoint format version {str(version)[:20]} (written by "
                            f"neural-lavalamp {metadata.get('package_version', '?')[:40]}); this is "
                            f"neural-lavalamp {__version__}, which reads version {FORMAT_VERSION}")
    if "lamp" not in metadata:
        raise LampLoadError("checkpoint header is damaged: no 'lamp' entry")
    return parse_lamp(metadata["lamp"]), index


def _read_tensors(data: bytes) -> dict[str, torch.Tensor]:
    try:
        return load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise LampLoadError(f"checkpoint weights are unreadable (truncated?): {exc}") from None


def _build_lamp(header: LampHeader, tensors: dict[str, torch.Tensor]) -> Lamp:
    """The lamp a validated header describes, its modules built and loaded strictly."""
    config = header.decoder
    decoder, rnn = config.decoder(), LatentRNN(header.rnn)
    encoder = config.encoder(2 * config.latent_size) if header.has_encoder else None
    upsampler = Upsampler(header.upsampler) if header.upsampler is not None else None
    modules = (("decoder", decoder), ("rnn", rnn), ("encoder", encoder), ("upsampler", upsampler))
    for prefix, module in modules:
        if module is not None:
            _load_weights(module, prefix, tensors)
            module.eval()
    return Lamp(name=header.name, decoder_kind=header.decoder_kind, decoder_config=config,
                decoder=decoder, rnn=rnn, latent_mean=tensors["latent.mean"],
                latent_std=tensors["latent.std"], reference=header.reference,
                start_contexts=tensors["latent.start_contexts"], data=header.data, encoder=encoder,
                upsampler=upsampler, training=dict(header.training), temperature=header.temperature,
                grain=header.grain, fixed_detail=tensors.get("fixed_detail"))


def _load_weights(module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        detail = " ".join(str(exc).split())[:400]
        raise LampLoadError(f"{prefix} weights do not match its architecture config ({first}: "
                            f"{detail})") from None
