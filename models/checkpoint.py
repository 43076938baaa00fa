"""The lamp checkpoint: one self-describing safetensors file holding everything needed to dream."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save

from . import __version__, one_line
from .atomic import atomic_write_bytes
from .conv import ConvDecoder, ConvEncoder
from .latent import LatentStats
from .rnn import LatentRNN, LatentRNNConfig
from .upsample import Upsampler, UpsamplerConfig
from .vae import VAEConfig

FORMAT = "neural-lavalamp"
FORMAT_VERSION = 1
DEFAULT_LAMP_FILE = "default_lamp.safetensors"
DECODER_CONFIGS = {"vae": VAEConfig}


class LampLoadError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem, in one
    short line whatever the file holds."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


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
        for name in ("latent_mean", "latent_std", "start_contexts"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def decode_base(self, u: torch.Tensor) -> torch.Tensor:
        """Standardized latents (B,D) -> the decoder's frames (B,3,s,s) in [0,1], s = base_size."""
        return self.decoder(u * self.latent_std + self.latent_mean)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """Standardized latents (B,D) -> frames (B,3,S,S) in [0,1], S = frame_size."""
        frames = self.decode_base(u)
        return self.upsampler(frames) if self.upsampler is not None else frames


def default_lamp_path() -> Path:
    """The lamp shipped inside the package."""
    return Path(str(resources.files("lavalamp.models").joinpath(DEFAULT_LAMP_FILE)))


def save_lamp(lamp: Lamp, path: str | Path) -> None:
    """Write the lamp to `path` atomically (temporary file, then rename)."""
    tensors = {"latent.mean": lamp.latent_mean, "latent.std": lamp.latent_std,
               "latent.start_contexts": lamp.start_contexts}
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
        "training": lamp.training,
    }
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "package_version": __version__, "lamp": json.dumps(header)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_lamp(path: str | Path | None = None, device: torch.device | str = "cpu") -> Lamp:
    """Read a lamp (None = the shipped default) onto `device`, modules in eval mode, and prove that
    it can be shown (dream.prove_lamp): a lamp that would only ever show black is refused here."""
    from .dream import prove_lamp  # the dream is built on the checkpoint

    path = Path(path) if path is not None else default_lamp_path()
    try:
        header = _read_header(path)
        try:
            lamp = _build_lamp(header, _read_tensors(path)).to(device)
            prove_lamp(lamp)
        except LampLoadError as exc:
            raise LampLoadError(f"{path}: {exc}") from None
        return lamp
    except LampLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a checkpoint must never crash its reader
        raise LampLoadError(f"{path}: cannot use this checkpoint ({type(exc).__name__}: {exc})") from None


def _read_header(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LampLoadError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise LampLoadError(f"{path}: not a readable neural-lavalamp checkpoint "
                            f"(truncated, or not a safetensors file: {exc})") from None
    if metadata.get("format") != FORMAT:
        raise LampLoadError(f"{path}: a safetensors file, but not a neural-lavalamp checkpoint")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise LampLoadError(f"{path}: checkpoint format version {version} (written by "
                            f"neural-lavalamp {metadata.get('package_version', '?')}); this is "
                            f"neural-lavalamp {__version__}, which reads version {FORMAT_VERSION}")
    try:
        header = json.loads(metadata["lamp"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise LampLoadError(f"{path}: checkpoint header is damaged: {exc}") from None
    header["package_version"] = metadata.get("package_version", "?")
    return header


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    # Read into memory, never memory-map: a checkpoint overwritten in place (`cp new old`) would
    # otherwise kill a process still using the old tensors with SIGBUS.
    try:
        return load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise LampLoadError(f"{path}: checkpoint weights are unreadable (truncated?): {exc}") from None


def _build_lamp(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Lamp:
    kind = header.get("decoder_kind")
    if kind not in DECODER_CONFIGS:
        raise LampLoadError(f"unknown decoder kind {kind!r} (expected 'vae')")
    decoder_config = _config(DECODER_CONFIGS[kind], header.get("decoder_config"), "decoder")
    rnn_config = _config(LatentRNNConfig, header.get("rnn_config"), "rnn")
    if decoder_config.latent_size != rnn_config.latent_size:
        raise LampLoadError(f"decoder latent size {decoder_config.latent_size} and latent RNN "
                            f"latent size {rnn_config.latent_size} disagree")
    upsampler_config = _upsampler_config(header.get("upsampler_config"), decoder_config.frame_size)
    decoder, rnn = decoder_config.decoder(), LatentRNN(rnn_config)
    encoder = decoder_config.encoder(2 * decoder_config.latent_size) if header.get("has_encoder") else None
    upsampler = Upsampler(upsampler_config) if upsampler_config is not None else None
    modules = (("decoder", decoder), ("rnn", rnn), ("encoder", encoder), ("upsampler", upsampler))
    for prefix, module in modules:
        if module is not None:
            _load_weights(module, prefix, tensors)
    latent = {k: _tensor(tensors, f"latent.{k}") for k in ("mean", "std", "start_contexts")}
    d = decoder_config.latent_size
    if latent["mean"].shape != (d,) or latent["std"].shape != (d,) or \
            latent["start_contexts"].dim() != 3 or latent["start_contexts"].shape[-1] != d:
        raise LampLoadError(f"latent statistics do not have latent size {d}")
    try:
        reference = LatentStats(**header["reference"])
        data = DataInfo(**header["data"])
    except (KeyError, TypeError) as exc:
        raise LampLoadError(f"checkpoint header is incomplete: {exc}") from None
    for _, m in modules:
        if m is not None:
            m.eval()
    return Lamp(name=str(header.get("name", "lamp")), decoder_kind=kind, decoder_config=decoder_config,
                decoder=decoder, rnn=rnn, latent_mean=latent["mean"], latent_std=latent["std"],
                reference=reference, start_contexts=latent["start_contexts"], data=data,
                encoder=encoder, upsampler=upsampler, training=dict(header.get("training") or {}),
                temperature=_positive(header.get("temperature", 1.0), "temperature"))


def _upsampler_config(values: Any, base_size: int) -> UpsamplerConfig | None:
    if values is None:
        return None
    config = _config(UpsamplerConfig, values, "upsampler")
    if config.in_size != base_size:
        raise LampLoadError(f"upsampler takes {config.in_size} px frames but the decoder makes "
                            f"{base_size} px frames")
    return config


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise LampLoadError(f"checkpoint header: {what} must be a positive number, got {value!r}")
    return float(value)


def _config(cls: type, values: Any, what: str) -> Any:
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise LampLoadError(f"invalid {what} architecture config {values!r}: {exc}") from None


def _tensor(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise LampLoadError(f"tensor {key!r} is missing")
    return tensors[key]


def _load_weights(module: torch.nn.Module, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        module.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        detail = " ".join(str(exc).split())[:400]
        raise LampLoadError(f"{prefix} weights do not match its architecture config ({first}: "
                            f"{detail})") from None
