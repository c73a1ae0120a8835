"""Throughput of a ``fid50k_full`` evaluation: generating the images, extracting their Inception
features, and both together as an evaluation runs them, in images per second.

The generator is the recipe's G in eval mode with the protocol's sampling (G_ema-style, truncation 1,
the protocol's noise mode and seeding); its weights are a fresh initialization, which costs the same as
trained ones. The Inception weights are the standard file when it resolves offline, else a seeded
stand-in of the same architecture (same cost, meaningless features), and the result says which. The
reference statistics of the dataset are cached after their first computation, so they are not timed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degan_bench.bench.timing import Deadline, spread, synchronize, timed
from degan_bench.errors import WeightsError
from degan_bench.metrics.evaluate import fp32_math, generated_batches
from degan_bench.metrics.features import feature_model
from degan_bench.metrics.protocols import get_protocol
from degan_bench.metrics.standin import write_standin_weights
from degan_bench.metrics.weights import WEIGHTS, ResolvedWeights, file_sha256, resolve_weights
from degan_bench.models import build_models
from degan_bench.recipes.loader import ResolvedRecipe


def inception_weights(key: str, workdir: Path) -> ResolvedWeights:
    """The standard weights when they resolve without a download, else a seeded stand-in file."""
    try:
        return resolve_weights(key, None, allow_download=False)
    except WeightsError:
        path = workdir / WEIGHTS[key].file_name
        write_standin_weights(key, path)
        return ResolvedWeights(WEIGHTS[key], path, file_sha256(path), standard=False, source="stand-in")


def measure_fid_throughput(
    resolved: ResolvedRecipe,
    device: torch.device,
    *,
    images: int,
    batch_size: int,
    reps: int,
    deadline: Deadline | None = None,
    protocol_id: str = "fid50k_full",
) -> dict[str, Any]:
    """Images per second of generation, features and both (median and IQR over ``reps``), the projected
    seconds of the protocol's full image count, and the peak GPU memory."""
    protocol = get_protocol(protocol_id)
    with tempfile.TemporaryDirectory() as tmp, fp32_math():
        weights = inception_weights(protocol.weights, Path(tmp))
        model = feature_model(protocol.feature_extractor, [protocol.feature_layer], weights, device)
        torch.manual_seed(0)
        G, _D = build_models(resolved.model, resolved.recipe.data.resolution)
        G = G.to(device).eval().requires_grad_(False)
        c_dim = int(getattr(G, "c_dim", 0) or 0)
        labels = np.arange(c_dim) if c_dim else None  # uniform over the classes

        def batches() -> Iterator[torch.Tensor]:
            return generated_batches(
                G,
                images,
                batch_size=batch_size,
                seed=protocol.eval_seed,
                truncation_psi=protocol.truncation_psi,
                noise_mode=protocol.noise_mode,
                device=device,
                labels=labels,
            )

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fakes = torch.cat([b.cpu() for b in batches()])  # warm-up, and the inputs of the feature timing
        model(fakes[:batch_size])
        synchronize(device)
        samples: dict[str, list[float]] = {"generation": [], "features": [], "generation_plus_features": []}
        chunks = [fakes[i : i + batch_size] for i in range(0, images, batch_size)]
        for rep in range(reps):
            if rep and deadline is not None and deadline.left() < sum(s[-1] for s in samples.values()):
                break
            samples["generation"].append(timed(lambda: [None for _ in batches()], device))
            samples["features"].append(timed(lambda: [model(chunk) for chunk in chunks], device))
            samples["generation_plus_features"].append(timed(lambda: [model(b) for b in batches()], device))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    rates = {name: spread(values).scaled(images) for name, values in samples.items()}
    both = rates["generation_plus_features"]
    return {
        "protocol": protocol.id,
        "n_gen": protocol.n_gen,
        "feature_extractor": protocol.feature_extractor,
        "inception_weights": "standard" if weights.standard else "stand-in (same architecture, seeded)",
        "generator": f"{resolved.model.arch} at {resolved.recipe.data.resolution} px (fresh weights)",
        "images_per_rep": images,
        "batch_size": batch_size,
        "img_per_s": {name: rate.to_dict(2) for name, rate in rates.items()},
        "projected_seconds": {
            "median": round(protocol.n_gen / both.median, 1),
            "q1": round(protocol.n_gen / both.q3, 1),
            "q3": round(protocol.n_gen / both.q1, 1),
        },
        "seconds": {name: [round(v, 4) for v in values] for name, values in samples.items()},
        "peak_gpu_mem_gib": None if peak is None else round(peak, 2),
    }
