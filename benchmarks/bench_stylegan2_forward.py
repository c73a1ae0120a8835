"""Throughput and peak memory of the StyleGAN2 networks (not a test).

Phases, each timed after warm-up and run in its own process so peak memory is per phase:

- ``G inference``: G_ema-style generation (eval mode, no grad, fused modulated conv), as metrics do.
- ``G step``: G forward (training mode) + D forward on the fakes + backward of the non-saturating loss.
- ``D step``: D forward on reals and detached fakes (generated without grad) + backward.
- ``D step + R1``: the same with the R1 penalty (gradient of D w.r.t. the reals, double backward), as
  DiffAugment's StyleGAN2 runs every minibatch.

Images/s counts the images of the minibatch (``--batch``). Peak memory is the CUDA allocator peak on
GPUs and the process peak RSS on the CPU (both minus the memory held after building the networks).

    PYTHONPATH=. python benchmarks/bench_stylegan2_forward.py --device cpu --batch 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from degan_bench.models.stylegan2.config import REFERENCE_CONFIGS
from degan_bench.models.stylegan2.networks import build

PHASES = ("G inference", "G step", "D step", "D step + R1")


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_phase(phase: str, config: str, device: torch.device, batch: int, iters: int, warmup: int) -> dict:
    torch.manual_seed(0)
    cfg, resolution = REFERENCE_CONFIGS[config]
    G, D = build(cfg, resolution)
    G, D = G.to(device), D.to(device)
    c = F.one_hot(torch.arange(batch, device=device) % max(cfg.c_dim, 1), max(cfg.c_dim, 1)).float()
    c = c if cfg.c_dim else None
    reals = torch.randn(batch, 3, resolution, resolution, device=device)

    def z() -> torch.Tensor:
        return torch.randn(batch, cfg.z_dim, device=device)

    def g_inference() -> None:
        with torch.no_grad():
            G(z(), c, noise_mode="const")

    def g_step() -> None:
        fakes = G.synthesis(G.mapping(z(), c, update_w_avg=True))
        F.softplus(-D(fakes, c)).mean().backward()

    def d_step(r1: bool) -> None:
        with torch.no_grad():
            fakes = G(z(), c)
        loss = F.softplus(D(fakes, c)).mean()
        x = reals.detach().requires_grad_(r1)
        real_logits = D(x, c)
        loss = loss + F.softplus(-real_logits).mean()
        if r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
            loss = loss + 5.0 * grad.square().sum(dim=[1, 2, 3]).mean()
        loss.backward()

    steps: dict[str, Callable[[], None]] = {
        "G inference": g_inference,
        "G step": g_step,
        "D step": lambda: d_step(False),
        "D step + R1": lambda: d_step(True),
    }
    G.train(phase != "G inference")
    D.train()
    step = steps[phase]
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = _peak_bytes(device)
    for _ in range(warmup):
        step()
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
    _sync(device)
    seconds = (time.perf_counter() - start) / iters
    return {
        "phase": phase,
        "sec_per_batch": seconds,
        "img_per_sec": batch / seconds,
        "peak_mib": (_peak_bytes(device) - baseline) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4, help="minibatch (the low-shot runs use 16)")
    parser.add_argument("--config", default="diffaugment-tf-low-shot", choices=sorted(REFERENCE_CONFIGS))
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per phase")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per phase")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated subset of: " + ", ".join(PHASES)
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase, print JSON
    args = parser.parse_args()
    device = torch.device(args.device)

    if args.phase:
        print(json.dumps(run_phase(args.phase, args.config, device, args.batch, args.iters, args.warmup)))
        return

    cfg, resolution = REFERENCE_CONFIGS[args.config]
    G, D = build(cfg, resolution)
    n_params = sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"{args.config}: {resolution}px, G {n_params[0]:,} / D {n_params[1]:,} params, batch {args.batch}")
    print(f"device: {name}; torch {torch.__version__}; {args.warmup} warm-up + {args.iters} timed iterations")
    print(f"{'phase':<14} {'s/batch':>9} {'img/s':>9} {'peak MiB':>9}")
    for phase in args.phases.split(","):
        if phase not in PHASES:
            parser.error(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--device",
            args.device,
            "--batch",
            str(args.batch),
        ]
        cmd += ["--config", args.config, "--iters", str(args.iters), "--warmup", str(args.warmup)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(
            f"{phase:<14} {r['sec_per_batch']:>9.3f} {r['img_per_sec']:>9.2f} {r['peak_mib']:>9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
