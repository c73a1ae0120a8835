"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint (``checkpoints/ckpt-<cur_nimg:010d>.pt``) holds G, D, G_ema, both optimizers, the
method's modules/optimizers/state, the loss state (path-length mean), the progress counters, the
data sampler position and every RNG state (python, numpy, torch CPU, CUDA). Files are written to a
temporary name, fsync'ed and renamed, so a process killed mid-write leaves the previous checkpoint
intact; only the newest ``keep`` are kept, plus ``best.pt``. A failed write (a full disk) removes its
temporary file; temporary files left by processes that were killed are removed when a run starts
(:func:`clean_temp_files`). A checkpoint whose G, D or G_ema holds a NaN or an infinity is never
written (:func:`nonfinite_weights`): the loop stops a diverged run before, this is the last guard.

Checkpoints are loaded with ``torch.load(weights_only=True)``: they contain only tensors and plain
Python data, so opening one never executes code.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from degan_bench.core.fileio import atomic_write_bytes
from degan_bench.core.rundir import RunDir
from degan_bench.errors import ResumeError

FORMAT_VERSION = 1
CKPT_RE = re.compile(r"^ckpt-(\d{10})\.pt$")
BEST_NAME = "best.pt"
#: temporary files of atomic writes (core.fileio.temp_path): ``.<name>.tmp-<pid>``
TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")
#: the networks a checkpoint must hold finite (the optimizers' moments follow from them)
CHECKED_NETWORKS = ("G", "D", "G_ema")


def checkpoint_name(cur_nimg: int) -> str:
    return f"ckpt-{cur_nimg:010d}.pt"


# -- RNG ---------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [*random.getstate()[1], random.getstate()[0], random.getstate()[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ResumeError(
                f"checkpoint was written with {len(cuda_states)} CUDA devices visible, now "
                f"{torch.cuda.device_count()}: the CUDA random streams cannot be restored exactly",
                fix="resume with the same CUDA_VISIBLE_DEVICES, or pass --force to accept a different stream",
            )
        torch.cuda.set_rng_state_all(cuda_states)


# -- files -------------------------------------------------------------------------------------
def nonfinite_weights(payload: dict[str, Any]) -> list[str]:
    """``G.mapping.fc0.weight``-style names of the tensors of G, D and G_ema with a NaN or infinity."""
    bad = []
    for network in CHECKED_NETWORKS:
        for name, tensor in (payload.get(network) or {}).items():
            if (
                isinstance(tensor, torch.Tensor)
                and tensor.is_floating_point()
                and not bool(torch.isfinite(tensor).all())
            ):
                bad.append(f"{network}.{name}")
    return bad


def save_checkpoint(run: RunDir, payload: dict[str, Any], keep: int) -> Path:
    """Write ``payload`` atomically as the checkpoint of ``payload['cur_nimg']``; prune old ones.
    Refuses (ValueError) weights that are not finite: a diverged state is never kept."""
    bad = nonfinite_weights(payload)
    if bad:
        raise ValueError(
            f"refusing to write a checkpoint with non-finite weights at kimg {payload['cur_nimg'] / 1000:g}: "
            + ", ".join(bad[:3])
            + (" ..." if len(bad) > 3 else "")
        )
    payload = {"format": FORMAT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = run.checkpoint_dir / checkpoint_name(int(payload["cur_nimg"]))
    atomic_write_bytes(path, buffer.getvalue())
    for old in sorted(_numbered(run.checkpoint_dir))[:-keep]:
        old[1].unlink(missing_ok=True)
    return path


def mark_best(run: RunDir, checkpoint: Path) -> Path:
    """Make ``best.pt`` a copy of ``checkpoint`` (atomically; hard link when possible)."""
    best = run.checkpoint_dir / BEST_NAME
    tmp = best.with_name(f".{BEST_NAME}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(checkpoint, tmp)
    except OSError:
        atomic_write_bytes(tmp, checkpoint.read_bytes())
    os.replace(tmp, best)
    return best


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_temp_files(run: RunDir) -> list[Path]:
    """Remove the temporary files of atomic writes (checkpoints, ``run.json``) whose writer is gone --
    a process killed during a write leaves a partial file of up to a checkpoint's size. Called when a
    run starts; one writer per run directory is assumed (the run lease)."""
    removed = []
    for directory in (run.path, run.checkpoint_dir):
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            match = TEMP_RE.match(path.name)
            if match is None or not path.is_file():
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or not _pid_alive(pid):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _numbered(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = CKPT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def list_checkpoints(run_dir: Path | str) -> dict[str, Path]:
    """``{"last": newest, "best": best.pt, "<file name>": path, ...}`` for the checkpoints present."""
    run = RunDir(run_dir)
    numbered = _numbered(run.checkpoint_dir)
    result: dict[str, Path] = {path.name: path for _nimg, path in numbered}
    if numbered:
        result["last"] = numbered[-1][1]
    best = run.checkpoint_dir / BEST_NAME
    if best.exists():
        result["best"] = best
    return result


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ResumeError(
            f"checkpoint {path} does not exist", fix="list them with `ls RUN/checkpoints`"
        ) from None
    except Exception as err:  # truncated or foreign file
        raise ResumeError(
            f"checkpoint {path} cannot be read ({type(err).__name__})",
            fix="delete it to fall back to the previous checkpoint",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ResumeError(f"{path} is not a degan-bench checkpoint (format {FORMAT_VERSION})")
    return payload


def latest_valid_checkpoint(run: RunDir, log: Any = None) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint that loads; unreadable newer ones are reported and skipped."""
    for _nimg, path in reversed(_numbered(run.checkpoint_dir)):
        try:
            return path, load_checkpoint(path)
        except ResumeError as err:
            if log is not None:
                log(f"skipping unreadable checkpoint: {err}")
    return None


def load_generator(
    path: Path | str, device: str | torch.device = "cpu", which: str = "G_ema"
) -> tuple[nn.Module, dict]:
    """Rebuild the generator stored in a checkpoint: ``(G module in eval mode, resolved recipe dict)``."""
    from degan_bench.models import build_models, parse_model_config

    payload = load_checkpoint(Path(path))
    recipe = payload["recipe"]
    config = parse_model_config(recipe["model"], source=str(path))
    G, _D = build_models(config, recipe["data"]["resolution"])
    G.load_state_dict(payload[which])
    return G.to(device).eval().requires_grad_(False), recipe
