"""Leases: one writer per run directory, also across hosts on a shared (NFS-like) run store.

A run directory is leased by the process that trains it. The lease is a small JSON record,
``<run dir>/lease.json``: who holds it (host, pid, a random token, an optional owner key), since when,
its last heartbeat and when it expires (heartbeat + TTL). The record is the source of truth: lock
files alone are unreliable on network file systems (``fcntl`` locks depend on the NFS lock daemon, a
crashed host's locks may linger or vanish), while a record with an expiry needs nothing but files.
The lock from :mod:`filelock` (``lease.json.lock``) only guards each read-modify-write of the record,
for milliseconds; after writing, the writer reads the record back and keeps the lease only if its own
token is there, so a lost race on a store where the lock did not hold is still detected.

Rules:

- no record, or an *expired* one (no heartbeat for a TTL, default 10 minutes; ``$DEGAN_BENCH_LEASE_TTL``
  seconds) -> the lease is taken (over), with one log line naming the previous holder;
- a record of a process that is gone on *this* host (same host name and pid namespace, pid not alive)
  -> taken over at once, without waiting for the TTL;
- a record with the same *owner key* -> an earlier incarnation of the same scheduler job (a SLURM job
  keeps its id across requeues: ``slurm:<job id>``) -> taken over at once;
- anything else is a live lease: :class:`LeaseHeld`, one line naming host, pid and since.

The holder refreshes the heartbeat from a small daemon thread (:meth:`Lease.start_heartbeat`), not from
the training loop: a tick can take longer than any sensible TTL (a fid50k evaluation, a first
``torch.compile``, the final evaluation after the loop), and a thread keeps beating through all of it. A
hung process therefore keeps its lease; ``degan-bench runs`` shows the fresh heartbeat beside a
``kimg`` that does not move, so a person can stop it. Clocks of the hosts are assumed to agree to well
within the TTL (NTP).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from degan_bench.core.fileio import atomic_write_text
from degan_bench.errors import DeganError

LEASE_FILE = "lease.json"
TTL_ENV = "DEGAN_BENCH_LEASE_TTL"
OWNER_ENV = "DEGAN_BENCH_LEASE_OWNER"
DEFAULT_TTL_S = 600.0
LOCK_TIMEOUT_S = 60.0


class LeaseHeld(DeganError):
    """Another live process writes this run directory. Exit code 3: nothing could start here."""

    exit_code = 3


def default_ttl() -> float:
    value = os.environ.get(TTL_ENV)
    try:
        return float(value) if value else DEFAULT_TTL_S
    except ValueError:
        raise DeganError(f"${TTL_ENV}={value!r} is not a number of seconds", fix="e.g. 600") from None


def default_owner() -> str:
    """The scheduler job this process belongs to, if any (see the module docstring)."""
    if os.environ.get(OWNER_ENV):
        return os.environ[OWNER_ENV]
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm:{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    return ""


def pid_namespace() -> str:
    """Identifies this machine's pid space (containers on one host have their own)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class LeaseRecord:
    """The content of ``lease.json``."""

    token: str
    host: str
    pid: int
    started: float  # epoch seconds
    heartbeat: float
    ttl: float
    owner: str = ""
    pid_ns: str = ""
    command: str = ""
    started_utc: str = ""
    heartbeat_utc: str = ""
    expires_utc: str = ""

    @property
    def expires(self) -> float:
        return self.heartbeat + self.ttl

    def state(self, now: float | None = None) -> str:
        """live | expired | dead (its process is gone on this host)."""
        now = time.time() if now is None else now
        if now >= self.expires:
            return "expired"
        same_machine = self.host == platform.node() and self.pid_ns == pid_namespace()
        if same_machine and self.pid != os.getpid() and not _pid_alive(self.pid):
            return "dead"
        return "live"

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        beat = max(now - self.heartbeat, 0.0)
        return (
            f"host {self.host} pid {self.pid} since {self.started_utc or _iso(self.started)} "
            f"(heartbeat {beat:.0f} s ago"
            + (f", expires in {self.expires - now:.0f} s)" if now < self.expires else ", expired)")
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            started_utc=_iso(self.started), heartbeat_utc=_iso(self.heartbeat), expires_utc=_iso(self.expires)
        )
        return data


def lease_path(run_dir: Path) -> Path:
    return Path(run_dir) / LEASE_FILE


def read_lease(run_dir: Path) -> LeaseRecord | None:
    """The lease record of ``run_dir``, or None (absent, or unreadable: a torn write counts as none)."""
    path = lease_path(run_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in LeaseRecord.__dataclass_fields__}
        return LeaseRecord(**known)
    except (OSError, ValueError, TypeError):
        return None


def live_lease(run_dir: Path, now: float | None = None) -> LeaseRecord | None:
    """The record of ``run_dir`` if it is held by a live process other than this one."""
    record = read_lease(run_dir)
    if record is None or (record.pid == os.getpid() and record.host == platform.node()):
        return None
    return record if record.state(now) == "live" else None


def _lock(run_dir: Path) -> FileLock:
    return FileLock(str(lease_path(run_dir)) + ".lock", timeout=LOCK_TIMEOUT_S)


@dataclass
class Lease:
    """A held lease (see the module docstring). Release it, or use it as a context manager."""

    run_dir: Path
    record: LeaseRecord
    log: Callable[[str], None] = field(default=lambda _m: None, repr=False)
    lost: str = ""  # set when another writer took the lease over (we stalled past the TTL)
    on_lost: Callable[[str], None] | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def renew(self) -> bool:
        """Refresh the heartbeat; False (and ``lost`` set) if the lease is no longer ours."""
        with _lock(self.run_dir):
            current = read_lease(self.run_dir)
            if current is None or current.token != self.record.token:
                holder = current.describe() if current else "nobody (the record was removed)"
                self.lost = f"the lease of {self.run_dir} was taken over by {holder}"
                return False
            self.record.heartbeat = time.time()
            atomic_write_text(lease_path(self.run_dir), json.dumps(self.record.to_json(), indent=2) + "\n")
        return True

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew from a daemon thread every ``interval`` seconds (default a quarter of the TTL)."""
        every = interval if interval is not None else max(self.record.ttl / 4, 0.05)

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    if not self.renew():
                        self.log(f"lease lost: {self.lost}")
                        if self.on_lost is not None:
                            self.on_lost(self.lost)
                        return
                except (OSError, Timeout) as err:  # a store hiccup: try again next beat
                    self.log(f"lease heartbeat failed ({type(err).__name__}: {err}); retrying")

        self._thread = threading.Thread(target=beat, name="degan-lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the record if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            with _lock(self.run_dir):
                current = read_lease(self.run_dir)
                if current is not None and current.token == self.record.token:
                    lease_path(self.run_dir).unlink(missing_ok=True)
        except (OSError, Timeout) as err:  # it expires by itself
            self.log(f"could not release the lease of {self.run_dir} ({type(err).__name__}); it expires")

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def acquire(
    run_dir: Path,
    *,
    ttl: float | None = None,
    owner: str | None = None,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> Lease:
    """Lease ``run_dir`` for this process (creating the directory), or raise :class:`LeaseHeld`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _m: None)
    ttl = default_ttl() if ttl is None else ttl
    owner = default_owner() if owner is None else owner
    now = time.time()
    mine = LeaseRecord(
        token=uuid.uuid4().hex, host=platform.node(), pid=os.getpid(), started=now, heartbeat=now, ttl=ttl,
        owner=owner, pid_ns=pid_namespace(), command=command[:300],
    )  # fmt: skip
    try:
        with _lock(run_dir):
            current = read_lease(run_dir)
            if current is not None:
                state = current.state(now)
                same_owner = bool(owner) and current.owner == owner
                if state == "live" and not same_owner:
                    raise LeaseHeld(
                        f"{run_dir} is being written by {current.describe(now)}",
                        fix="wait for that run to stop (or stop it); a lease without heartbeat for "
                        f"{current.ttl:.0f} s is taken over automatically",
                    )
                why = {"expired": "expired", "dead": "its process is gone"}.get(state, "same owner " + owner)
                say(f"lease: taking over the lease of {current.describe(now)}: {why}")
            atomic_write_text(lease_path(run_dir), json.dumps(mine.to_json(), indent=2) + "\n")
    except Timeout:
        raise LeaseHeld(
            f"the lock {lease_path(run_dir)}.lock stayed busy for {LOCK_TIMEOUT_S:.0f} s",
            fix="check the run store's file system; remove the .lock file if no degan-bench runs there",
        ) from None
    # Read back: on a store where the lock did not exclude a concurrent writer, only one token survives.
    check = read_lease(run_dir)
    if check is None or check.token != mine.token:
        raise LeaseHeld(
            f"{run_dir} was leased at the same moment by {check.describe() if check else 'another writer'}",
            fix="nothing to do: that writer trains it",
        )
    return Lease(run_dir, mine, log=say)
