"""``degan-bench run ... --gpus N``: start the training processes through torchrun.

``run`` trains in its own process unless ``--gpus`` asks for more than one process on this node or
``--nnodes`` for more than one node. Then it starts ``python -m torch.distributed.run`` (torchrun's
elastic agent, without restarts: a stopped run continues with ``--resume auto``) as a child in its own
session, which starts one worker per process with the same command line; a worker sees ``WORLD_SIZE``
in its environment and trains instead of launching again.

- ``--gpus N``: N processes on this node (one per visible GPU; with ``--device cpu``, N gloo CPU
  processes). ``--gpus recipe``: the recipe's ``resources.gpus``, split over ``--nnodes`` (default
  ``resources.nodes``). Without ``--gpus``: one process, whatever the recipe's official count.
- Several nodes: ``--nnodes M --rdzv-endpoint HOST:PORT`` on every node (torchrun's c10d rendezvous,
  ``--rdzv-id`` defaults to ``$SLURM_JOB_ID``), or ``--node-rank`` for a static rendezvous with HOST as
  the master.

Signals: SIGTERM, SIGINT, SIGHUP and SIGUSR1 sent to the launcher are forwarded once to every worker
(each registers its pid in a status directory), which checkpoints and stops as a single process does; a
second signal is forwarded again (the workers then abort). Before the workers have registered, the
signal goes to torchrun's agent, which forwards it and kills what has not exited after its shutdown
timeout (``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``, 30 s). Terminal Ctrl-C reaches the workers only through
this forwarding, since they run in another session.

Exit code: each worker writes its exit code to the status directory. The launcher exits with the
first failure code of a worker (a :class:`~degan_bench.errors.DeganError`'s 2, a crash's 1), else
:attr:`~degan_bench.core.exitcodes.ExitCode.PROGRESS` (75) if the workers stopped cleanly, else 0.
Under the launcher a worker that stops cleanly exits 0, so that torchrun does not report it as failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degan_bench.core.exitcodes import ExitCode
from degan_bench.errors import DeganError

#: the launcher sets it in the workers' environment: where they report their pid and exit code
STATUS_DIR_ENV = "DEGAN_BENCH_LAUNCH_DIR"
#: signals the launcher forwards to the workers
FORWARDED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1")
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class LaunchPlan:
    """Processes of one run: ``nproc_per_node`` on each of ``nnodes`` nodes."""

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST[:PORT]
    rdzv_id: str | None = None
    node_rank: int | None = None  # set: static rendezvous with the endpoint's host as master

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def describe(self) -> str:
        nodes = f" x {self.nnodes} nodes" if self.nnodes > 1 else ""
        return f"{self.world_size} processes ({self.nproc_per_node} per node{nodes})"


def under_launcher() -> bool:
    """True inside a worker of torchrun (ours or the user's): the process group is already laid out."""
    return "WORLD_SIZE" in os.environ


def processes_per_node(gpus: str, resources: Any, nnodes: int) -> int:
    """``--gpus`` as processes on each node: ``N``, or ``recipe`` = ``resources.gpus`` over the nodes."""
    if gpus == "recipe":
        if resources.gpus % nnodes:
            raise DeganError(
                f"--gpus recipe: the recipe's resources.gpus {resources.gpus} does not split over "
                f"{nnodes} nodes",
                fix=f"pass --nnodes {resources.nodes}, or --gpus N (processes per node)",
            )
        return resources.gpus // nnodes
    try:
        count = int(gpus)
    except ValueError:
        count = 0
    if count < 1:
        raise DeganError(
            f"--gpus {gpus!r}: expected a number of processes per node or 'recipe'",
            fix="e.g. --gpus 4, or --gpus recipe for the recipe's resources.gpus",
        )
    return count


def plan_launch(
    *,
    gpus: str | None,
    nnodes: int | None,
    node_rank: int | None,
    rdzv_endpoint: str | None,
    rdzv_id: str | None,
    device: str,
    resources: Any,
    check_devices: bool = True,
) -> LaunchPlan | None:
    """What ``run`` should start; None to train in this process. Refuses impossible layouts in one line."""
    nodes = nnodes if nnodes is not None else (resources.nodes if gpus == "recipe" else 1)
    if nodes < 1:
        raise DeganError(f"--nnodes {nodes}: expected at least 1")
    per_node = processes_per_node(gpus, resources, nodes) if gpus is not None else 1
    if under_launcher():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        if gpus is not None and per_node != local:
            raise DeganError(
                f"already running under torchrun with {local} processes on this node, but --gpus asks "
                f"for {per_node}",
                fix="drop --gpus when starting degan-bench through torchrun yourself",
            )
        return None
    if per_node == 1 and nodes == 1:
        return None
    if nodes > 1 and not rdzv_endpoint:
        raise DeganError(
            f"--nnodes {nodes} needs a rendezvous point that every node reaches",
            fix="pass --rdzv-endpoint HOST:PORT (e.g. the first node of the allocation, port 29500)",
        )
    if node_rank is not None and not 0 <= node_rank < nodes:
        raise DeganError(f"--node-rank {node_rank} is not in 0..{nodes - 1}")
    if check_devices:
        _check_devices(device, per_node)
    return LaunchPlan(
        nproc_per_node=per_node,
        nnodes=nodes,
        rdzv_endpoint=rdzv_endpoint,
        rdzv_id=rdzv_id or os.environ.get("SLURM_JOB_ID") or "degan-bench",
        node_rank=node_rank,
    )


def _check_devices(device: str, per_node: int) -> None:
    if device == "cpu":
        return
    import torch

    if device not in ("auto", "cuda"):
        raise DeganError(
            f"--device {device} names one device, but --gpus {per_node} starts {per_node} processes",
            fix="use --device cuda (process i takes GPU i; choose them with CUDA_VISIBLE_DEVICES)",
        )
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise DeganError(
            f"--gpus {per_node}: no CUDA device is visible",
            fix=f"pass --device cpu to train with {per_node} CPU processes, or check `degan-bench doctor`",
        )
    if visible < per_node:
        raise DeganError(
            f"--gpus {per_node}: only {visible} GPU{'s' if visible > 1 else ''} visible on this node",
            fix=f"use --gpus {visible} (the total batch stays the same), or make more GPUs visible",
        )


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host:
        return endpoint, DEFAULT_PORT
    try:
        return host, int(port)
    except ValueError:
        raise DeganError(f"--rdzv-endpoint {endpoint}: the port is not a number") from None


def torchrun_command(plan: LaunchPlan, worker_args: list[str]) -> list[str]:
    """The torchrun command line that starts ``python -m degan_bench <worker_args>`` per process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(plan.nproc_per_node),
           "--max_restarts", "0"]  # fmt: skip
    if plan.nnodes == 1 and plan.rdzv_endpoint is None:
        cmd.append("--standalone")
    elif plan.node_rank is not None:
        host, port = _split_endpoint(plan.rdzv_endpoint or "localhost")
        cmd += ["--nnodes", str(plan.nnodes), "--node_rank", str(plan.node_rank), "--master_addr", host,
                "--master_port", str(port)]  # fmt: skip
    else:
        host, port = _split_endpoint(plan.rdzv_endpoint or "localhost")
        cmd += ["--nnodes", str(plan.nnodes), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{host}:{port}",
                "--rdzv_id", str(plan.rdzv_id)]  # fmt: skip
    return [*cmd, "-m", "degan_bench", *worker_args]


def command_line_args() -> list[str]:
    """This process's ``degan-bench`` arguments (global options included), to hand to every worker."""
    args = sys.argv[1:]
    if "run" not in args:
        raise DeganError(
            "--gpus starts the workers with this process's command line, which is not a degan-bench run",
            fix="call `degan-bench run ... --gpus N` from a shell",
        )
    return args


def launch(plan: LaunchPlan, worker_args: list[str]) -> int:
    """Run torchrun until every local worker has exited; returns the run's exit code."""
    status_dir = Path(tempfile.mkdtemp(prefix="degan-bench-launch-"))
    env = {**os.environ, STATUS_DIR_ENV: str(status_dir)}
    agent = subprocess.Popen(
        torchrun_command(plan, worker_args), env=env, start_new_session=True, preexec_fn=_die_with_parent
    )

    def forward(signum: int, _frame: Any) -> None:
        pids = worker_pids(status_dir, plan.nproc_per_node)
        for pid in pids if len(pids) == plan.nproc_per_node else [agent.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in FORWARDED_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, forward)
    try:
        agent_rc = agent.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        return combined_exit_code(worker_exit_codes(status_dir), plan.nproc_per_node, agent_rc)
    finally:
        shutil.rmtree(status_dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the agent, before exec: SIGTERM it if the launcher dies, so no run is left orphaned (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


# -- status directory -------------------------------------------------------------------------------
def worker_pids(status_dir: Path, count: int) -> list[int]:
    pids = []
    for local_rank in range(count):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((status_dir / f"pid-{local_rank}").read_text()))
    return pids


def worker_exit_codes(status_dir: Path) -> dict[int, int]:
    codes = {}
    for path in status_dir.glob("exit-*"):
        with contextlib.suppress(OSError, ValueError):
            codes[int(path.name.removeprefix("exit-"))] = int(path.read_text())
    return codes


def combined_exit_code(codes: dict[int, int], expected: int, agent_rc: int) -> int:
    """The run's exit code from the workers' (by local rank) and torchrun's own."""
    failures = [
        codes[rank] for rank in sorted(codes) if codes[rank] not in (ExitCode.COMPLETE, ExitCode.PROGRESS)
    ]
    if failures:
        return failures[0]
    if len(codes) == expected:
        return int(ExitCode.PROGRESS) if ExitCode.PROGRESS in codes.values() else int(ExitCode.COMPLETE)
    # a worker died without reporting (killed, or torchrun failed before starting it)
    return agent_rc if agent_rc > 0 else int(ExitCode.FAILED)


def _write(path: Path, value: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(str(value))
    os.replace(tmp, path)


@contextlib.contextmanager
def worker_exit_report() -> Iterator[None]:
    """Around a worker's ``run``: report its pid and exit code to the launcher (a no-op otherwise), and
    turn a clean stop's exit code 75 into 0 for torchrun."""
    directory = os.environ.get(STATUS_DIR_ENV)
    if not directory or "LOCAL_RANK" not in os.environ:
        yield
        return
    import click
    import typer

    status_dir, rank = Path(directory), int(os.environ["LOCAL_RANK"])
    _write(status_dir / f"pid-{rank}", os.getpid())
    code = int(ExitCode.FAILED)
    try:
        yield
        code = int(ExitCode.COMPLETE)
    except (typer.Exit, click.exceptions.Exit) as stop:
        code = int(stop.exit_code)
        if code == ExitCode.PROGRESS:
            raise typer.Exit(0) from None
        raise
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        if code == ExitCode.PROGRESS:
            raise SystemExit(0) from None
        raise
    except DeganError as err:
        code = err.exit_code
        raise
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        _write(status_dir / f"exit-{rank}", code)
