"""Crash-safe file writes shared by every layer: atomic replace for whole files, fsync'ed JSONL appends.

- :func:`atomic_write_bytes` writes a temporary sibling (``.<name>.tmp-<pid>``), fsyncs and renames it;
  when the write fails (a full disk, a kill leaves it behind) the temporary file is removed, so the
  previous version of the file stays and no partial file keeps the disk full.
- :func:`append_jsonl` repairs a torn tail first: a process killed during an append leaves half a line
  without its newline, and the next record written onto that line would be unreadable too.
- A full disk (``ENOSPC``/``EDQUOT``) becomes a :class:`DiskFullError`: one line naming the directory and
  its free space.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from degan_bench.core.exitcodes import ExitCode
from degan_bench.errors import DeganError

#: errno values that mean "no room to write": the disk, or the user's quota, is full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: how far back from the end a torn JSONL tail is looked for (one record is a few KB)
_TAIL_WINDOW = 1 << 20


class DiskFullError(DeganError):
    """No space left where a run (or a cache) writes; nothing written before is lost."""

    exit_code = int(ExitCode.FAILED)

    def __init__(self, path: Path, *, fix: str | None = None) -> None:
        directory = Path(path).parent
        self.directory = directory
        super().__init__(
            f"disk full writing {path} ({free_space(directory)} free in {directory})",
            fix=fix or "free some space (or point --runs-dir / DEGAN_BENCH_CACHE elsewhere), then run again",
        )


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def free_space(directory: Path) -> str:
    """Free space of the filesystem holding ``directory`` (or its nearest existing parent): ``2.1 MiB``."""
    probe = Path(directory)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = float(shutil.disk_usage(probe).free)
    except OSError:
        return "unknown space"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    raise AssertionError("unreachable")


def temp_path(path: Path) -> Path:
    """The temporary sibling an atomic write of ``path`` goes through."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            _write_synced(f, data)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFullError(path) from None
        raise


def _write_synced(f: Any, data: bytes) -> None:
    """Write and fsync (one place, so tests can make a write fail with ENOSPC)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def repair_torn_tail(path: Path) -> bool:
    """Make ``path`` end on a line boundary before an append; True when something was repaired.

    A last line without its newline is either a complete record (written by hand or by another tool:
    it gets its newline) or the torn half of one (a kill mid-append: it is cut off, it was unreadable
    anyway)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        start = max(0, size - _TAIL_WINDOW)
        f.seek(start)
        tail = f.read()
        cut = tail.rfind(b"\n") + 1  # 0 when the whole window is one line
        last = tail[cut:]
        try:
            json.loads(last.decode("utf-8"))
            complete = True
        except (UnicodeDecodeError, ValueError):
            complete = False
        if complete:
            f.seek(size)
            f.write(b"\n")
        else:
            f.truncate(start + cut)
        f.flush()
        os.fsync(f.fileno())
    return True


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a line, on a fresh line even after a torn write, and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    try:
        repair_torn_tail(path)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path) from None
        raise


def rewrite_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically with ``records`` (one per line)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """All complete records (JSON objects), in order.

    A torn line (a crash mid-write) is skipped silently. A line that is valid JSON but not an object
    cannot come from a crash: it is skipped, and described in ``problems`` when the caller passes a
    list (``degan-bench table`` marks such a run unreadable instead of guessing)."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            if problems is not None:
                problems.append(f"{path.name} line {number} is not a JSON object ({line[:40]})")
            continue
        records.append(record)
    return records
