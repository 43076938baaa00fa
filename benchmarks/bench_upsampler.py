"""Why 256 px lamps use an upsampler: decode cost per frame of three ways to a frame, side by side."""

import argparse
import time

import torch

from lavalamp.models.conv import ConvConfig
from lavalamp.models.upsample import Upsampler, UpsamplerConfig


def multiply_adds(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass through the module's convolutions and linear layers."""
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if isinstance(layer, torch.nn.Conv2d):
            total += output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.Linear):
            total += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    with torch.inference_mode():
        module(x)
    for hook in hooks:
        hook.remove()
    return total // len(x)


def ms_per_frame(module: torch.nn.Module, x: torch.Tensor, rounds: int) -> float:
    """Median milliseconds per frame of batched forward passes."""
    times = []
    with torch.inference_mode():
        module(x)
        for _ in range(rounds):
            start = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - start) / len(x))
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    """Print cost per frame of: the 64 px decoder, the same plus the upsampler, a 256 px decoder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    z = torch.randn(args.batch, 32)
    small = ConvConfig(frame_size=64).decoder().eval()
    up = Upsampler(UpsamplerConfig(in_size=64, out_size=256)).eval()
    big = ConvConfig(frame_size=256).decoder().eval()
    both = torch.nn.Sequential(small, up)
    rows = [("64 px VAE decoder", small), ("64 px decoder + upsampler to 256", both),
            ("256 px VAE decoder (same widths)", big)]
    print(f"{args.threads} threads, batches of {args.batch}, median of {args.rounds} rounds")
    for name, module in rows:
        print(f"{name:34s} {multiply_adds(module, z) / 1e6:8.0f} M multiply-adds/frame "
              f"{ms_per_frame(module, z, args.rounds):7.2f} ms/frame "
              f"{sum(p.numel() for p in module.parameters()) / 1e6:6.2f} M parameters")


if __name__ == "__main__":
    main()
