"""Training throughput of a recipe through the real training loop: img/s, sec/kimg, peak memory.

    PYTHONPATH=. python benchmarks/bench_train.py          # stylegan2 obama-100 (256 px, paper recipe)
    PYTHONPATH=. python benchmarks/bench_train.py diffaugment obama-100 --device cuda --minibatches 60
    PYTHONPATH=. python benchmarks/bench_train.py ada ffhq-2k --set performance.amp=bf16 --json out.json
    PYTHONPATH=. python benchmarks/bench_train.py stylegan2 shapes-100 --preset smoke --device cpu \
        --threads auto,1,2,default

The real images are replaced by seeded random ones of the recipe's resolution (the loop's cost does
not depend on their content), so no dataset has to be prepared. The first ``--warmup`` minibatches
(cuDNN autotuning, allocator growth, compilation) are excluded from the timing. No evaluation.

``--threads auto,1,2,default`` repeats the measurement with each torch CPU thread count (``auto`` is what
``degan-bench run`` picks, :func:`degan_bench.core.threads.choose_cpu_threads`, measured first so the
benchmark's own load does not sway it; ``default`` is torch's own choice, one thread per core), one after
the other in this process, and prints img/s per count: the numbers behind ``performance.cpu_threads``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from degan_bench.core.threads import choose_cpu_threads
from degan_bench.data.store import PreparedDataset
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.loop import TrainingSetup, train
from degan_bench.training.runner import plan_run, select_device


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("method", nargs="?", default="stylegan2")
    parser.add_argument("dataset", nargs="?", default="obama-100")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--backbone", default=None, help="stylegan2 | biggan (default: the dataset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--minibatches", type=int, default=None, help="timed minibatches (default: 40 GPU, 3 CPU)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed minibatches (default: 10 GPU, 1 CPU)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument(
        "--threads",
        default=None,
        help="comma-separated torch CPU thread counts to measure one after the other, e.g. 1,2,auto",
    )
    args = parser.parse_args()

    device = select_device(args.device)
    cuda = device.type == "cuda"
    timed = args.minibatches or (40 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    base = resolve_recipe(args.method, args.dataset, args.preset, args.overrides, backbone=args.backbone)
    # real images one minibatch consumes: BigGAN's hinge objective runs d_steps D steps on their own reals
    batch = base.recipe.training.batch * (base.recipe.loss.d_steps if base.recipe.loss.kind == "hinge" else 1)
    length = [] if base.recipe.training.epochs is None else ["training.epochs=null"]
    # Ticks at the warm-up boundary and at the end give exactly the timed window.
    kimg_per_tick = warmup * batch / 1000 if warmup else timed * batch / 1000
    resolved = resolve_recipe(
        args.method,
        args.dataset,
        args.preset,
        [
            *args.overrides,
            *length,
            f"training.kimg={(warmup + timed) * batch / 1000}",
            f"training.kimg_per_tick={max(kimg_per_tick, 1e-3)}",
            "training.snapshot_ticks=1000000",
            "training.image_snapshot_ticks=1000000",
        ],
        backbone=args.backbone,
    )
    resolution = resolved.recipe.data.resolution
    images = np.random.RandomState(0).randint(
        0, 256, (max(batch * 4, 64), resolution, resolution, 3), dtype=np.uint8
    )
    c_dim = getattr(resolved.model, "c_dim", 0)
    labels = np.arange(len(images)) % c_dim if c_dim else None
    dataset = PreparedDataset(name=args.dataset, split="train", images=images, labels=labels)
    counts = [None] if args.threads is None else [c.strip() for c in args.threads.split(",") if c.strip()]
    torch_default = torch.get_num_threads()
    reports = []
    for count in counts:
        if count == "default":
            torch.set_num_threads(torch_default)
            threads_label = f"default: {torch_default} (torch's own choice)"
        elif count is not None:
            choice = choose_cpu_threads(None if count == "auto" else int(count), device)
            if choice.threads is not None:
                torch.set_num_threads(choice.threads)
            threads_label = f"auto: {choice.describe()}" if count == "auto" else choice.describe()
        else:
            threads_label = f"{torch.get_num_threads()} (as started)"
        report = measure(args, base, resolved, dataset, device, warmup, timed, batch)
        report["threads"] = threads_label
        reports.append(report)
        width = max(len(k) for k in report)
        for key, value in report.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
        print()
    if len(reports) > 1:
        print("threads: " + " | ".join(f"{r['threads']}: {r['img_per_sec']:.1f} img/s" for r in reports))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = reports[0] if len(reports) == 1 else reports
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


def measure(args, base, resolved, dataset, device, warmup, timed, batch):  # type: ignore[no-untyped-def]
    """One timed training run; the report of img/s, sec/kimg and memory."""
    cuda = device.type == "cuda"
    resolution = resolved.recipe.data.resolution
    console = Console(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_run(resolved, 0, out=Path(tmp) / "run")
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        started = time.time()
        result = train(
            TrainingSetup(
                resolved=resolved,
                seed=0,
                run=plan.run,
                device=device,
                dataset=dataset,
                console=console,
                evaluator=None,
                tensorboard=False,
                handle_signals=False,
            )
        )
        wall = time.time() - started
    ticks = result.ticks
    timed_ticks = ticks[1:] if warmup else ticks
    seconds = sum(t["sec_per_tick"] for t in timed_ticks)
    images_timed = sum(t["sec_per_tick"] * t["img_per_sec"] for t in timed_ticks)
    report = {
        "recipe": f"{args.method}/{args.dataset}",
        "backbone": resolved.model.arch,
        "preset": args.preset,
        "overrides": args.overrides,
        "recipe_hash": resolved.short_hash,
        "resolution": resolution,
        "batch": batch,
        "device": torch.cuda.get_device_name(device)
        if cuda
        else f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "amp": resolved.recipe.performance.amp,
        "compile": resolved.recipe.performance.compile,
        "warmup_minibatches": warmup,
        "timed_minibatches": timed,
        "img_per_sec": images_timed / seconds,
        "sec_per_kimg": seconds / (images_timed / 1000),
        "peak_gpu_mem_gb": max((t["gpu_mem_gb"] for t in ticks), default=0.0),
        "peak_cpu_mem_gb": max((t["cpu_mem_gb"] for t in ticks), default=0.0),
        "wall_seconds": wall,
    }
    report["recipe_kimg"] = base.recipe.training.kimg
    report["estimated_hours_for_recipe_kimg"] = report["sec_per_kimg"] * base.recipe.training.kimg / 3600
    return report


if __name__ == "__main__":
    main()
