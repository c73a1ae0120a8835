"""Evaluation throughput: generation, Inception features, and both together (images/s).

    PYTHONPATH=. python benchmarks/bench_metrics.py --device cpu --n 128 --resolution 256
    PYTHONPATH=. python benchmarks/bench_metrics.py --device cuda --n 5000 --batch-size 64

Uses the standard Inception weights when they resolve (cache, $DEGAN_BENCH_INCEPTION_WEIGHTS or
--weights) and otherwise a seeded stand-in of the same architecture (same cost, numbers meaningless;
printed as such). ``--generator small`` is a cheap upsampling network, so the result measures the
evaluation pipeline; ``--generator stylegan2`` builds the project's StyleGAN2 G (once the models
package provides it) for end-to-end numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from degan_bench.errors import WeightsError
from degan_bench.metrics.evaluate import fp32_math, generated_batches
from degan_bench.metrics.features import CLEAN_FID, TORCH_FIDELITY, feature_model
from degan_bench.metrics.protocols import EXTRACTOR_WEIGHTS
from degan_bench.metrics.standin import write_standin_weights
from degan_bench.metrics.weights import WEIGHTS, ResolvedWeights, file_sha256, resolve_weights


class SmallGenerator(nn.Module):
    """z -> 4x4 features -> nearest upsampling + 3x3 convs to ``resolution`` (model contract)."""

    def __init__(self, resolution: int, z_dim: int = 512, channels: int = 32) -> None:
        super().__init__()
        self.z_dim, self.c_dim = z_dim, 0
        self.stem = nn.Linear(z_dim, channels * 16)
        blocks: list[nn.Module] = []
        size = 4
        while size < resolution:
            blocks += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.LeakyReLU(0.2),
            ]
            size *= 2
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(channels, 3, 1)
        self.channels = channels

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random"
    ) -> torch.Tensor:
        x = self.stem(z).view(-1, self.channels, 4, 4)
        return torch.tanh(self.to_rgb(self.blocks(x)))


def build_generator(kind: str, resolution: int, device: torch.device) -> nn.Module:
    if kind == "small":
        return SmallGenerator(resolution).to(device).eval()
    from degan_bench.models import build_models
    from degan_bench.models.stylegan2.config import StyleGAN2Config

    G, _D = build_models(StyleGAN2Config(), resolution)
    return G.to(device).eval()


def weights_for(extractor: str, weights_path: str | None, workdir: Path) -> ResolvedWeights:
    key = EXTRACTOR_WEIGHTS[extractor]
    try:
        return resolve_weights(key, weights_path, allow_download=False)
    except WeightsError:
        path = workdir / WEIGHTS[key].file_name
        write_standin_weights(key, path)
        print(
            f"standard {WEIGHTS[key].file_name} not available: timing a seeded stand-in (same architecture)"
        )
        return ResolvedWeights(WEIGHTS[key], path, file_sha256(path), standard=False, source="stand-in")


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=128, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--generator", choices=("small", "stylegan2"), default="small")
    parser.add_argument("--extractor", choices=("legacy", "clean"), default="legacy")
    parser.add_argument("--weights", default=None, help="Inception weights file or folder")
    args = parser.parse_args()

    device = torch.device(args.device)
    extractor = TORCH_FIDELITY if args.extractor == "legacy" else CLEAN_FID
    with tempfile.TemporaryDirectory() as tmp, fp32_math():
        weights = weights_for(extractor, args.weights, Path(tmp))
        model = feature_model(extractor, ["2048"], weights, device)
        G = build_generator(args.generator, args.resolution, device)

        def batches() -> Iterator[torch.Tensor]:
            return generated_batches(
                G,
                args.n,
                batch_size=args.batch_size,
                seed=0,
                truncation_psi=1.0,
                noise_mode="random",
                device=device,
            )

        images = torch.cat([b.cpu() for b in batches()])  # warm-up, and the inputs of the feature timing
        model(images[: min(len(images), args.batch_size)])
        gen_s = timed(lambda: [None for _ in batches()], device)
        feat_s = timed(
            lambda: [model(images[i : i + args.batch_size]) for i in range(0, args.n, args.batch_size)],
            device,
        )
        both_s = timed(lambda: [model(b) for b in batches()], device)
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "generator": args.generator,
        "extractor": extractor,
        "standard_weights": weights.standard,
        "resolution": args.resolution,
        "n": args.n,
        "batch_size": args.batch_size,
        "generation_images_per_s": round(args.n / gen_s, 1),
        "features_images_per_s": round(args.n / feat_s, 1),
        "generation_plus_features_images_per_s": round(args.n / both_s, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
