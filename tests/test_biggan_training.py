"""BigGAN-CIFAR inside the real loop on the CPU, on the shared JPEG copy of CIFAR-10: the shipped smoke
preset end to end with DiffAugment, bit-exact resume across a stop inside a tick, and the StyleGAN2
CIFAR recipe on the same data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tiny import assert_same

from degan_bench.core import checkpoint as ckpt
from degan_bench.core.rundir import RunDir
from degan_bench.recipes.loader import resolve_recipe
from degan_bench.training.execute import execute_run

# 4 channels, 5 iterations of 4 D steps x 5 reals (100 reals); ticks end at 20, 60 and 100 reals.
TINY = [
    "model.g_ch=4", "model.d_ch=4", "training.batch=5", "training.kimg=0.1", "training.kimg_per_tick=0.04",
    "training.ema_start_step=2", "training.grid_size=[10,1]",
]  # fmt: skip


def run(out: Path, method: str = "diffaugment", *extra: str, backbone: str | None = None, **kwargs: Any):
    resolved = resolve_recipe(method, "cifar10-10pct", "smoke", [*TINY, *extra], backbone=backbone)
    return execute_run(
        resolved, seed=1, out=out, evaluate=False, handle_signals=False, tensorboard=False, **kwargs
    )


def test_smoke_preset_trains_class_conditional_biggan_with_diffaugment(cifar: Path, tmp_path: Path) -> None:
    resolved = resolve_recipe("diffaugment", "cifar10-10pct", "smoke")
    assert resolved.model.arch == "biggan" and resolved.recipe.loss.kind == "hinge"
    assert resolved.recipe.loss.d_steps == 4 and resolved.method_config.policy == "translation,cutout"
    result = execute_run(resolved, seed=0, out=tmp_path / "run", evaluate=False, handle_signals=False,
                         tensorboard=False)  # fmt: skip
    assert result is not None and result.status == "complete" and result.cur_nimg == 400
    stats = RunDir(tmp_path / "run").read_stats()
    assert [s["cur_nimg"] for s in stats] == [40, 120, 200, 280, 360, 400]
    assert {"Loss/D/real", "Loss/D/fake", "Loss/G/loss"} <= set(stats[-1]["losses"])
    payload = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")["last"])
    assert payload["objective_kind"] == "hinge" and payload["progress"]["batch_idx"] == 10
    assert (tmp_path / "run" / "fakes_init.png").exists() and (tmp_path / "run" / "reals.png").exists()


def test_paper_recipe_length_is_its_epochs(cifar: Path) -> None:
    assert resolve_recipe("biggan", "cifar10-10pct").recipe.training.kimg == 25000  # 5000 epochs x 5000
    assert resolve_recipe("biggan", "cifar10-100pct").recipe.training.kimg == 50000  # 1000 epochs x 50k
    assert resolve_recipe("biggan", "cifar100-100pct").recipe.training.kimg == 100000  # 2000 epochs


def test_resume_inside_a_tick_is_bit_identical(cifar: Path, tmp_path: Path) -> None:
    run(tmp_path / "straight")
    stopped = run(tmp_path / "resumed", stop_at_nimg=80)  # inside the tick 60 -> 100
    assert stopped is not None and stopped.status == "stopped" and stopped.cur_nimg == 80
    resumed = run(tmp_path / "resumed", resume="auto")
    assert resumed is not None and resumed.status == "complete"
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "straight")["last"])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "resumed")["last"])
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "objective", "sampler", "method", "rng"):
        assert_same(a[key], b[key], key)
    assert [s["losses"] for s in RunDir(tmp_path / "straight").read_stats()] == [
        s["losses"] for s in RunDir(tmp_path / "resumed").read_stats()
    ]
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert [s["end_reason"] for s in info["sessions"]] == ["stop_at_nimg", "complete"]


def test_stylegan2_backbone_on_cifar(cifar: Path, tmp_path: Path) -> None:
    resolved = resolve_recipe("diffaugment", "cifar10-10pct", backbone="stylegan2")
    assert resolved.model.arch == "stylegan2" and resolved.recipe.loss.r1_gamma == 0.1
    assert resolved.recipe.data.subset_rule == "tfds_first_n" and resolved.method_config.policy == (
        "color,translation,cutout"
    )
    assert resolve_recipe("diffaugment", "cifar10-100pct", backbone="stylegan2").method_config.policy == (
        "color,cutout"
    )
    extra = [
        "model.channel_base=128", "model.channel_max=16", "model.z_dim=16", "model.w_dim=16",
        "training.batch=4", "training.kimg=0.008", "training.kimg_per_tick=0.004",
    ]  # fmt: skip
    smoke = resolve_recipe("diffaugment", "cifar10-10pct", "smoke", extra, backbone="stylegan2")
    result = execute_run(smoke, seed=0, out=tmp_path / "sg2", evaluate=False, handle_signals=False,
                         tensorboard=False)  # fmt: skip
    assert result is not None and result.status == "complete"
    # the run directory names the backbone where it is not the dataset's default
    from degan_bench.training.runner import default_run_name

    assert default_run_name(smoke, 0).startswith("diffaugment-cifar10-10pct-stylegan2-smoke-s0-")
    assert default_run_name(resolve_recipe("diffaugment", "cifar10-10pct", "smoke"), 0).startswith(
        "diffaugment-cifar10-10pct-smoke-s0-"
    )


def test_official_biggan_samples_with_batch_statistics_even_in_eval() -> None:
    import torch

    from degan_bench.models import build_models, parse_model_config

    z = torch.randn(6, 128, generator=torch.Generator().manual_seed(0))
    c = torch.nn.functional.one_hot(torch.arange(6) % 10, 10).float()
    outputs = {}
    for mode in ("train", "eval"):
        G, _D = build_models(
            parse_model_config({"arch": "biggan", "g_ch": 4, "d_ch": 4, "sample_mode": mode}), 32
        )
        G(z, c)  # one training-mode pass moves the running statistics off their init
        G.eval()
        assert not G.training  # eval mode; only the batch-norm statistics differ
        assert G.sampling_batch == (50 if mode == "train" else None)
        with torch.no_grad():
            whole, part = G(z, c), G(z[:3], c[:3])
        outputs[mode] = (whole, part)
    whole, part = outputs["train"]
    assert not torch.allclose(whole[:3], part)  # batch statistics: a sample depends on its batch
    whole, part = outputs["eval"]
    torch.testing.assert_close(whole[:3], part)  # running statistics: it does not
