"""Prepare datasets into the store, load them (with subset views), verify them, report their status.

Preparation (:func:`prepare_dataset`):

1. The source is the official archive (downloaded with HTTP Range resume into
   ``<data root>/_downloads/`` and checked against its md5/sha256 where one is published), the
   embedded generator (``shapes-100``), or ``source=``: a folder of images, a ``.zip``, or a CIFAR
   python tarball. A local file named like the official archive is checked against its checksum too.
2. Images are taken in a documented deterministic order: CIFAR python batches in official order;
   a CIFAR class-folder copy (``train/<class>/NNNN.jpg``) by official class index, then file name;
   anything else by natural order of the relative path (``2.jpg`` before ``10.jpg``; for zero-padded
   names the same as plain sorting). Hidden files and ``__MACOSX`` are skipped.
3. Every image is decoded in full: a corrupt or truncated file, a mode other than RGB (L, RGBA, CMYK,
   P, ...) or a non-square image (unless ``center_crop``: the central square) is a :class:`DataError`
   naming the file. Counts must match the registry.
4. Resizing, only when the image is not already at the requested resolution: PIL BOX when the source
   side is an integer multiple of the target (an exact block average, as stylegan2-ada-pytorch's FFHQ
   256 recipe ``--resize-filter=box``), PIL LANCZOS otherwise; datasets whose official pipeline uses
   Lanczos for everything (AnimalFace: DiffAugment's ``PIL.Image.ANTIALIAS``) always use Lanczos. The
   manifest records the policy, how many images each filter touched and the source sizes (a folder of
   mixed sizes is reported in one line). An image smaller than the requested resolution is refused,
   naming the file: upscaling would invent detail.
5. All splits are written into ``<data root>/<name>/.tmp-<resolution>-<random>/`` and renamed to
   ``<resolution>/`` at the end; an interrupted run leaves only the temporary directory, which the next
   run removes once its owner process is gone. Preparing again is a no-op unless ``force``.

Another resolution of a dataset already prepared here (``run`` at a preset's 32 px after ``data prepare
obama-100 --from FOLDER`` at 256) is made without asking for the source again, in this order: from the
local ``--from`` source that an earlier preparation recorded in its manifest, when it still exists; else
derived from the highest prepared resolution above the requested one (its images resized with the same
filter policy; the manifest says ``kind: derived`` and keeps the original source); else as usual
(download, or the error saying where to put the archive).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import pickle
import re
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from degan_bench import __version__
from degan_bench.data.registry import DatasetSpec, DownloadSource, dataset_names, get_dataset_spec
from degan_bench.data.shapes import generate_shapes
from degan_bench.data.store import (
    PreparedDataset,
    SplitWriter,
    array_content_hash,
    dataset_dir,
    load_split,
    read_manifest,
)
from degan_bench.data.subsets import get_rule, select_subset
from degan_bench.errors import DataError
from degan_bench.paths import data_root

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
_DOWNLOAD_CHUNK = 1 << 20
_STALE_WITHOUT_OWNER_S = 600.0
_err_console = Console(stderr=True)


# ---------------------------------------------------------------------------------------------------
# Small helpers


def natural_key(path: str) -> tuple[list[Any], str]:
    """Sort key: digit runs compare as numbers (``2.jpg`` < ``10.jpg``); ties by the raw string."""
    parts: list[Any] = re.split(r"(\d+)", path)
    parts[1::2] = [int(p) for p in parts[1::2]]
    return parts, path


def _prepare_command(name: str, resolution: int, native: int, source: str = "") -> str:
    parts = ["degan-bench data prepare", name]
    if resolution != native:
        parts.append(f"--resolution {resolution}")
    if source:
        parts.append(f"--from {source}")
    return " ".join(parts)


def _file_digests(path: Path) -> dict[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_DOWNLOAD_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def _checksum_problem(digests: dict[str, str], source: DownloadSource) -> str | None:
    """A description of the mismatch, or None when every published checksum matches."""
    for algorithm in ("sha256", "md5"):
        expected = getattr(source, algorithm)
        if expected and digests[algorithm] != expected:
            return f"{algorithm} {digests[algorithm]} does not match the published {expected}"
    return None


def _checksum_record(digests: dict[str, str], source: DownloadSource | None) -> dict[str, Any]:
    verified = [a for a in ("sha256", "md5") if source is not None and getattr(source, a)]
    return {
        "sha256": digests["sha256"],
        "md5": digests["md5"],
        "verified_against": {a: getattr(source, a) for a in verified} if verified else None,
        "note": source.checksum_note if source is not None else "local archive; no official checksum applies",
    }


def _progress(enabled: bool, *, download: bool = False) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if download:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=_err_console, disable=not enabled, transient=False)


# ---------------------------------------------------------------------------------------------------
# Download


def _open_url(request: urllib.request.Request, timeout: float) -> Any:
    """The single network call (tests replace it)."""
    return urllib.request.urlopen(request, timeout=timeout)


def downloads_dir() -> Path:
    return data_root() / "_downloads"


def download(source: DownloadSource, fix_command: str, progress: bool = True) -> Path:
    """Fetch ``source`` into :func:`downloads_dir`, resuming a partial file; verify its checksum."""
    dest = downloads_dir() / source.filename
    if dest.is_file():
        problem = _checksum_problem(_file_digests(dest), source)
        if problem:
            raise DataError(
                f"{dest}: {problem}",
                fix=f"delete it and run again to download {source.url}, or `{fix_command}` with a good copy",
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"degan-bench/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    by_hand = (
        f"download {source.url} by hand and save it as {dest} (then run the same command again), or run "
        f"`{fix_command}` with PATH the downloaded file"
    )
    try:
        with _open_url(urllib.request.Request(source.url, headers=headers), timeout=60) as response:
            status = getattr(response, "status", 200)
            if offset and status != 206:  # the server ignored Range: start over
                offset = 0
            length = response.headers.get("Content-Length") if response.headers else None
            total = offset + int(length) if length else None
            with open(part, "ab" if offset else "wb") as f, _progress(progress, download=True) as bar:
                task = bar.add_task(f"download {source.filename}", total=total, completed=offset)
                while chunk := response.read(_DOWNLOAD_CHUNK):
                    f.write(chunk)
                    bar.advance(task, len(chunk))
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and offset):  # 416 on a resume: the partial file is already complete
            raise DataError(
                f"cannot download {source.url}: HTTP {err.code} {err.reason}", fix=by_hand
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"cannot download {source.url}: {reason}", fix=by_hand) from None
    problem = _checksum_problem(_file_digests(part), source)
    if problem:
        part.unlink()
        raise DataError(
            f"downloaded {source.url}: {problem}; the file was deleted", fix="run again, or " + by_hand
        )
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------------
# Sources: a folder, a zip or a tarball, seen as relative member paths


class _Archive:
    """Read-only view of a folder, zip or tar as posix member paths."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        if path.is_dir():
            self.kind = "folder"
            # Folder members carry the folder's own path, so "train/cat" matches .../afhq/train/cat/x.jpg.
            self.context = path.resolve().as_posix().strip("/") + "/"
            self._names = []
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not _hidden(d)]  # do not descend into .git, __MACOSX, ...
                self._names += [(Path(root) / f).relative_to(path).as_posix() for f in files]
        elif zipfile.is_zipfile(path):
            self.kind = "zip"
            self.context = ""
            self._zip = zipfile.ZipFile(path)
            self._names = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        elif tarfile.is_tarfile(path):
            self.kind = "tar"
            self.context = ""
            self._tar = tarfile.open(path)  # noqa: SIM115 (closed by close())
            self._names = [m.name for m in self._tar.getmembers() if m.isfile()]
        else:
            raise DataError(
                f"{path} is neither a folder, a .zip nor a tarball",
                fix="pass --from a folder of images, a .zip of images, or the CIFAR python tarball",
            )

    def names(self) -> list[str]:
        return [n for n in self._names if not _hidden(n)]

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        if self._tar is not None:
            member = self._tar.extractfile(name)
            if member is None:
                raise DataError(f"{self.path}: {name} is not a regular file", fix="use the official archive")
            return member.read()
        return (self.path / name).read_bytes()

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class _Item:
    """One image to write: its source name, how to get it, and its label."""

    name: str
    load: Callable[[], bytes | np.ndarray]
    label: int | None = None


@dataclass
class _Collected:
    splits: dict[str, list[_Item]]
    order: str  # "official", "class-folders", "natural-file-names" or "generated"
    info: dict[str, Any] = field(default_factory=dict)


def _collect_images(spec: DatasetSpec, archive: _Archive) -> _Collected:
    names = [n for n in archive.names() if _is_image(n)]
    if spec.member_dir:
        needle = f"/{spec.member_dir.strip('/')}/"
        names = [n for n in names if needle in f"/{archive.context}{n}"]
    names.sort(key=natural_key)
    items = [_Item(n, lambda n=n: archive.read(n)) for n in names]
    return _Collected({"train": items}, "natural-file-names")


_CLASS_FOLDER = re.compile(r"(?:^|/)(train|test)/([^/]+)/[^/]+$")


def _collect_cifar_class_folders(spec: DatasetSpec, archive: _Archive, names: list[str]) -> _Collected:
    by_split: dict[str, list[tuple[int, str]]] = {s: [] for s in spec.splits}
    class_index = {c: i for i, c in enumerate(spec.class_names)}
    for name in names:
        match = _CLASS_FOLDER.search(name)
        if match is None:
            continue
        split, cls = match.groups()
        if cls not in class_index:
            raise DataError(
                f"{archive.path}: folder {split}/{cls} is not a {spec.name} class",
                fix=f"name class folders as the official classes ({', '.join(spec.class_names[:3])}, ...)",
            )
        by_split[split].append((class_index[cls], name))
    splits = {}
    for split, entries in by_split.items():
        entries.sort(key=lambda e: (e[0], natural_key(e[1])))
        splits[split] = [_Item(n, lambda n=n: archive.read(n), label) for label, n in entries]
    return _Collected(
        splits, "class-folders", {"lossy": any(n.lower().endswith((".jpg", ".jpeg")) for n in names)}
    )


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches and nothing else: no arbitrary code from a downloaded archive."""

    # What numpy arrays pickle to: the official (Python 2) batches use _reconstruct/ndarray/dtype;
    # Python 3 pickles add codecs.encode (protocol 2) or _frombuffer (protocol 5).
    _allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(archive: _Archive, member: str) -> dict[str, Any]:
    try:
        return _CifarUnpickler(io.BytesIO(archive.read(member)), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(
            f"{archive.path}: {member} is not a CIFAR python batch ({err})",
            fix="use the official python version (cifar-*-python.tar.gz) of the dataset",
        ) from None


def _collect_cifar_python(spec: DatasetSpec, archive: _Archive, names: list[str]) -> _Collected:
    cifar10 = len(spec.class_names) == 10
    batches = {
        "train": [f"data_batch_{i}" for i in range(1, 6)] if cifar10 else ["train"],
        "test": ["test_batch"] if cifar10 else ["test"],
    }
    meta_name, names_key, labels_key = (
        ("batches.meta", "label_names", "labels") if cifar10 else ("meta", "fine_label_names", "fine_labels")
    )
    by_base = {n.rsplit("/", 1)[-1]: n for n in names}
    wanted = [meta_name] + [b for split in spec.splits for b in batches[split]]
    missing = [b for b in wanted if b not in by_base]
    if missing:
        raise DataError(
            f"{archive.path}: no {', '.join(missing)} inside; it is not the {spec.name} python archive",
            fix=f"use {spec.sources[0].filename} from {spec.sources[0].url}",
        )
    class_names = tuple(_unpickle(archive, by_base[meta_name])[names_key])
    if class_names != spec.class_names:
        raise DataError(
            f"{archive.path}: its classes ({', '.join(class_names[:3])}, ...) are not {spec.name}'s",
            fix=f"use {spec.sources[0].filename} from {spec.sources[0].url}",
        )
    splits: dict[str, list[_Item]] = {}
    for split in spec.splits:
        items: list[_Item] = []
        for batch in batches[split]:
            entry = _unpickle(archive, by_base[batch])
            data, labels = np.asarray(entry["data"]), entry[labels_key]
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise DataError(
                    f"{archive.path}: {batch} holds {data.dtype} {data.shape} with {len(labels)} labels, "
                    "not uint8 [N, 3072]",
                    fix="use the official python version of the dataset",
                )
            images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            filenames = entry.get("filenames") or [f"{batch}[{i}]" for i in range(len(data))]
            for i in range(len(data)):
                items.append(_Item(f"{batch}:{filenames[i]}", lambda img=images[i]: img, int(labels[i])))
        splits[split] = items
    return _Collected(splits, "official", {"lossy": False})


def _collect(spec: DatasetSpec, archive: _Archive) -> _Collected:
    if spec.layout == "images":
        if archive.kind == "tar":
            raise DataError(
                f"{archive.path}: tarballs are read only for CIFAR",
                fix="extract it and pass the folder, or zip it",
            )
        return _collect_images(spec, archive)
    names = archive.names()
    if any(_CLASS_FOLDER.search(n) and _is_image(n) for n in names):
        return _collect_cifar_class_folders(spec, archive, [n for n in names if _is_image(n)])
    return _collect_cifar_python(spec, archive, names)


# ---------------------------------------------------------------------------------------------------
# Decoding, validation, resizing


def decode_image(name: str, data: bytes, center_crop: bool = False) -> Image.Image:
    """Decode all of ``data``; DataError naming ``name`` if it is corrupt, not RGB, or not square."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # PIL raises many types for corrupt data
        raise DataError(
            f"{name}: cannot decode the image ({err})",
            fix="the file is corrupt or truncated: replace it with a good copy (or re-download the archive), "
            "or delete it, then run again",
        ) from None
    if image.mode != "RGB":
        raise DataError(
            f"{name}: image mode is {image.mode}, not RGB",
            fix="convert it to 3-channel RGB (PIL: Image.open(f).convert('RGB').save(f)) or delete it, "
            "then run again",
        )
    width, height = image.size
    if width != height:
        if not center_crop:
            raise DataError(
                f"{name}: image is {width}x{height}, not square",
                fix="crop the images to squares, or pass --center-crop to keep the central square",
            )
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image


def resize_image(image: Image.Image, resolution: int, policy: str) -> tuple[np.ndarray, str]:
    """The image as uint8 HWC at ``resolution`` and the filter used ("none", "box" or "lanczos")."""
    side = image.size[0]
    if side == resolution:
        return np.asarray(image, dtype=np.uint8), "none"
    if policy == "auto" and side > resolution and side % resolution == 0:
        resized, used = image.resize((resolution, resolution), Image.Resampling.BOX), "box"
    else:
        resized, used = image.resize((resolution, resolution), Image.Resampling.LANCZOS), "lanczos"
    return np.asarray(resized, dtype=np.uint8), used


def _process(item_name: str, raw: bytes | np.ndarray, resolution: int, policy: str, center_crop: bool):
    """(uint8 HWC at ``resolution``, filter used, source side)."""
    if isinstance(raw, np.ndarray):
        image = Image.fromarray(raw, "RGB")
    else:
        image = decode_image(item_name, raw, center_crop)
    side = image.size[0]
    if side < resolution:
        below = 1 << (side.bit_length() - 1)
        raise DataError(
            f"{item_name}: image is {side}x{side}, smaller than the {resolution} px being prepared "
            "(upscaling would invent detail)",
            fix=f"replace or delete it, or prepare at --resolution {below} or lower",
        )
    array, used = resize_image(image, resolution, policy)
    return array, used, side


# ---------------------------------------------------------------------------------------------------
# Temporary directories and atomic installation


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp_dirs(parent: Path) -> list[Path]:
    """Remove temporary dirs of prepares that died (owner process gone on this host); list them."""
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if not entry.is_dir():
            continue
        if entry.name.startswith(".old-"):  # a replaced dataset whose deletion was interrupted
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.name.startswith(".tmp-"):
            try:
                owner = json.loads((entry / "owner.json").read_text(encoding="utf-8"))
                stale = owner.get("host") == socket.gethostname() and not _pid_alive(
                    int(owner.get("pid", -1))
                )
            except (OSError, ValueError):
                stale = time.time() - entry.stat().st_mtime > _STALE_WITHOUT_OWNER_S
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _make_temp_dir(parent: Path, resolution: int) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{resolution}-", dir=parent))
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    (tmp / "owner.json").write_text(json.dumps(owner), encoding="utf-8")
    return tmp


def _install(tmp: Path, target: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``; with ``replace`` an existing target is swapped out first."""
    (tmp / "owner.json").unlink()
    if target.exists():
        if not replace:  # another process finished first: keep its (identical) result
            shutil.rmtree(tmp)
            return
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


# ---------------------------------------------------------------------------------------------------
# Public API


def _check_resolution(resolution: int) -> int:
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
        raise DataError(
            f"resolution {resolution} is not a power of two in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]",
            fix="use e.g. --resolution 32, 64, 128, 256 or 512",
        )
    return resolution


def _base_and_resolution(name: str, resolution: int | None) -> tuple[DatasetSpec, DatasetSpec, int]:
    spec = get_dataset_spec(name)
    base = get_dataset_spec(spec.base)
    return spec, base, _check_resolution(resolution or base.native_resolution)


def is_prepared(name: str, resolution: int | None = None) -> bool:
    _, base, resolution = _base_and_resolution(name, resolution)
    target = dataset_dir(base.name, resolution)
    return all(read_manifest(target / split) is not None for split in base.splits)


@contextlib.contextmanager
def _open_source(
    spec: DatasetSpec, base: DatasetSpec, source: str | Path | None, resolution: int, progress: bool
) -> Iterator[tuple[_Archive, dict[str, Any]]]:
    native = base.native_resolution
    if source is not None:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{path} does not exist", fix="pass --from an existing folder, .zip or tarball")
        info: dict[str, Any] = {"kind": "local", "path": str(path.resolve())}
        if path.is_file():
            official = next((s for s in base.sources if s.filename == path.name), None)
            digests = _file_digests(path)
            problem = _checksum_problem(digests, official) if official is not None else None
            if official is not None and problem:
                raise DataError(
                    f"{path}: {problem} of the official {official.filename}",
                    fix=f"download a good copy from {official.url}, or delete it and run "
                    f"`{_prepare_command(spec.name, resolution, native)}` to download it",
                )
            info["archive"] = _checksum_record(digests, official)
    elif base.sources:
        fix_command = _prepare_command(spec.name, resolution, native, "PATH")
        errors = []
        for candidate in base.sources:
            try:
                path = download(candidate, fix_command, progress)
                break
            except DataError as err:
                errors.append(err)
        else:
            raise errors[0]
        info = {"kind": "download", "url": candidate.url, "path": str(path)}
        info["archive"] = _checksum_record(_file_digests(path), candidate)
    else:
        view = f" (a view of {base.name})" if spec.is_subset else ""
        raise DataError(
            f"dataset {spec.name!r}{view} cannot be downloaded automatically",
            fix=base.manual_download.format(prepare=_prepare_command(spec.name, resolution, native)),
        )
    archive = _Archive(path)
    try:
        yield archive, info
    finally:
        archive.close()


def _file_set_sha256(digests: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def _write_split(
    writer: SplitWriter,
    items: list[_Item],
    resolution: int,
    policy: str,
    center_crop: bool,
    bar: Progress,
    label: str,
    file_digests: list[str],
    sizes: dict[int, int],
) -> dict[str, int]:
    used = {"none": 0, "box": 0, "lanczos": 0}
    task = bar.add_task(label, total=len(items))
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            raws = [item.load() for item in chunk]  # reading stays in this thread (zip handles are shared)
            file_digests.extend(hashlib.sha256(r).hexdigest() for r in raws if isinstance(r, bytes))
            results = pool.map(
                lambda pair: _process(pair[0].name, pair[1], resolution, policy, center_crop),
                zip(chunk, raws, strict=True),
            )
            for item, (array, filter_used, side) in zip(chunk, results, strict=True):
                writer.add(array, item.label)
                used[filter_used] += 1
                sizes[side] = sizes.get(side, 0) + 1
            bar.advance(task, len(chunk))
    return used


def prepare_dataset(
    name: str,
    resolution: int | None = None,
    source: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    center_crop: bool = False,
) -> list[Path]:
    """Prepare ``name`` (its base, for a subset view) at ``resolution``; return the split directories.

    A no-op when the dataset is already prepared at that resolution, unless ``force``. ``source`` is a
    folder, .zip or tarball to prepare from instead of the official download.
    """
    spec, base, resolution = _base_and_resolution(name, resolution)
    target = dataset_dir(base.name, resolution)
    split_dirs = [target / split for split in base.splits]
    clean_stale_temp_dirs(target.parent)
    if not force and is_prepared(base.name, resolution):
        return split_dirs

    if base.layout == "embedded":
        if source is not None:
            raise DataError(
                f"{base.name} is generated by degan-bench; --from does not apply", fix="drop --from"
            )
        images = generate_shapes()
        collected = _Collected(
            {"train": [_Item(f"shape_{i:03d}", lambda img=img: img) for i, img in enumerate(images)]},
            "generated",
        )
        info: dict[str, Any] = {"kind": "embedded", "generator": "degan_bench.data.shapes.generate_shapes"}
        return _write_dataset(spec, base, collected, info, resolution, target, progress, force, center_crop)
    if source is None:
        origin = _prepared_origin(base, resolution)
        if origin is not None and origin[0] == "source":
            _err_console.print(
                f"{base.name}: preparing {resolution} px from {origin[1]} (the --from source of an "
                "earlier preparation)",
                highlight=False,
                soft_wrap=True,
            )
            source = origin[1]
        elif origin is not None:
            _err_console.print(
                f"{base.name}: deriving {resolution} px from the prepared {origin[1].name} px images",
                highlight=False,
                soft_wrap=True,
            )
            collected, info = _derived(base, origin[1])
            return _write_dataset(
                spec, base, collected, info, resolution, target, progress, force, center_crop
            )
    with _open_source(spec, base, source, resolution, progress) as (archive, info):
        collected = _collect(base, archive)
        return _write_dataset(spec, base, collected, info, resolution, target, progress, force, center_crop)


def _prepared_origin(base: DatasetSpec, resolution: int) -> tuple[str, Path] | None:
    """Where another resolution can come from without the user's help (see the module docstring):
    ``("source", recorded local --from path)``, else ``("prepared", directory of the highest prepared
    resolution above resolution)``, else None."""
    prepared: list[tuple[int, Path, dict[str, Any]]] = []
    for res in sorted(_prepared_resolutions(base), reverse=True):
        directory = dataset_dir(base.name, res)
        manifest = read_manifest(directory / base.splits[0])
        if manifest is not None:  # the same resolution too: `--force` re-prepares from its source
            prepared.append((res, directory, manifest))
    for _res, _directory, manifest in prepared:
        source = manifest.get("source") or {}
        if source.get("kind") == "derived":
            source = source.get("original") or {}
        if source.get("kind") == "local" and source.get("path") and Path(source["path"]).exists():
            return "source", Path(source["path"])
    larger = [directory for res, directory, _manifest in prepared if res > resolution]
    return ("prepared", larger[0]) if larger else None


def _derived(base: DatasetSpec, directory: Path) -> tuple[_Collected, dict[str, Any]]:
    """The images of every split of a prepared resolution, as items to resize (same order, labels)."""
    splits: dict[str, list[_Item]] = {}
    hashes: dict[str, str] = {}
    original: dict[str, Any] = {}
    lossy = False
    order = "natural-file-names"
    for split in base.splits:
        manifest = read_manifest(directory / split)
        assert manifest is not None  # _prepared_resolutions found every split
        data = load_split(directory / split, base.name, split, manifest)
        names = manifest.get("files") or [f"{split}[{i}]" for i in range(len(data))]
        labels = data.labels
        splits[split] = [
            _Item(
                str(names[i]),
                lambda i=i, images=data.images: np.asarray(images[i]),
                None if labels is None else int(labels[i]),
            )
            for i in range(len(data))
        ]
        hashes[split] = data.content_hash
        original = manifest.get("source") or {}
        lossy = lossy or bool(original.get("lossy"))
        order = manifest.get("order", order)
    info = {
        "kind": "derived",
        "from_resolution": int(directory.name),
        "from_content_hash": hashes,
        "path": str(directory),
        "original": original.get("original", original) if original.get("kind") == "derived" else original,
    }
    return _Collected(splits, order, {"lossy": lossy}), info


def _write_dataset(
    spec: DatasetSpec,
    base: DatasetSpec,
    collected: _Collected,
    info: dict[str, Any],
    resolution: int,
    target: Path,
    progress: bool,
    force: bool,
    center_crop: bool,
) -> list[Path]:
    where = info.get("path") or info.get("generator")
    for split in base.splits:
        found, expected = len(collected.splits.get(split, [])), base.expected_counts[split]
        if found != expected:
            raise DataError(
                f"{where}: found {found} {split} images for {base.name}, expected {expected}",
                fix="point --from at the complete, unmodified dataset"
                + (f" (official archive: {base.sources[0].url})" if base.sources else ""),
            )
    tmp = _make_temp_dir(target.parent, resolution)
    try:
        digests: list[str] = []
        manifests = {}
        sizes: dict[int, int] = {}
        with _progress(progress) as bar:
            for split in base.splits:
                items = collected.splits[split]
                writer = SplitWriter(tmp / split, len(items), resolution, with_labels=base.has_labels)
                used = _write_split(
                    writer,
                    items,
                    resolution,
                    base.resize_filter,
                    center_crop,
                    bar,
                    f"{base.name} {split}",
                    digests,
                    sizes,
                )
                manifests[split] = (writer, items, used)
        if len(sizes) > 1:
            shown = ", ".join(f"{count} at {side} px" for side, count in sorted(sizes.items(), reverse=True))
            _err_console.print(
                f"note: {where} holds images of {len(sizes)} sizes ({shown}); each was resized to "
                f"{resolution} px",
                highlight=False,
                soft_wrap=True,
            )
        if digests:
            file_set = _file_set_sha256(digests)
            info["file_set_sha256"] = file_set
            info["file_set_scope"] = "every image file used, all splits"
            info["file_set_known_as"] = base.known_file_sets.get(file_set)
        info.update(collected.info)
        for split, (writer, items, used) in manifests.items():
            writer.finish(
                {
                    "name": base.name,
                    "split": split,
                    "resolution": resolution,
                    "native_resolution": base.native_resolution,
                    "layout": base.layout,
                    "order": collected.order,
                    "order_note": base.source_order_note,
                    "class_names": list(base.class_names) or None,
                    "resize": {
                        "policy": "box for integer downscale factors, else lanczos"
                        if base.resize_filter == "auto"
                        else "lanczos always",
                        "images_by_filter": used,
                        "source_sizes": {str(side): count for side, count in sorted(sizes.items())},
                        "center_crop": center_crop,
                    },
                    "source": info,
                    "license": base.license,
                    "citation": base.citation,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "degan_bench_version": __version__,
                    "files": [item.name for item in items],
                }
            )
        _install(tmp, target, replace=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [target / split for split in base.splits]


def _not_prepared(spec: DatasetSpec, base: DatasetSpec, resolution: int) -> DataError:
    return DataError(
        f"dataset {spec.name!r} is not prepared at {resolution}px "
        f"(looked in {dataset_dir(base.name, resolution)})",
        fix=f"run `degan-bench data prepare {spec.name} --resolution {resolution}`",
    )


def load_prepared(
    name: str, resolution: int | None = None, split: str = "train", subset_rule: str | None = None
) -> PreparedDataset:
    """A prepared split, memory-mapped. For a subset view, its ``subset_split`` is reduced by the rule.

    The content hash of a subset is that of the selected images (and labels) in selection order. A
    contiguous selection (``first_n``) stays memory-mapped; any other is copied into memory.
    """
    spec, base, resolution = _base_and_resolution(name, resolution)
    if split not in spec.splits:
        raise DataError(
            f"dataset {name!r} has no split {split!r}", fix=f"use one of: {', '.join(spec.splits)}"
        )
    split_dir = dataset_dir(base.name, resolution) / split
    manifest = read_manifest(split_dir)
    if manifest is None:
        raise _not_prepared(spec, base, resolution)
    full = load_split(split_dir, base.name, split, manifest)
    if manifest["source"].get("lossy"):
        full.manifest["warnings"] = [
            f"{base.name} was prepared from a lossy JPEG copy: FIDs against it are not comparable "
            "with the papers'"
        ]
    if subset_rule is not None and not spec.is_subset:
        raise DataError(
            f"dataset {name!r} is not a subset view; subset_rule {subset_rule!r} does not apply",
            fix="leave data.subset_rule unset, or use a view such as cifar10-10pct or ffhq-2k",
        )
    if not spec.is_subset or split != spec.subset_split:
        return full
    rule = subset_rule or spec.default_subset_rule
    assert rule is not None and spec.subset_size is not None  # every view in the registry sets both
    get_rule(rule)
    selection = select_subset(base.name, split, rule, len(full), spec.subset_size)
    indices = selection.indices
    if len(indices) and np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        images = full.images[int(indices[0]) : int(indices[0]) + len(indices)]
    else:
        images = np.asarray(full.images[indices])
    labels = full.labels[indices] if full.labels is not None else None
    warnings = list(full.manifest.get("warnings", []))
    official_order = manifest.get("order") != "class-folders"
    if not official_order:
        warnings.append(
            f"{base.name} was prepared from a class-folder copy whose order is not the official one: "
            f"{rule} selects other images than the papers' code"
        )
    subset_manifest = {
        **{k: v for k, v in manifest.items() if k != "files"},
        "name": spec.name,
        "count": len(indices),
        "base_content_hash": full.content_hash,
        "subset": {**selection.describe(), "selects_paper_images": official_order},
        "warnings": warnings,
    }
    return PreparedDataset(
        name=spec.name, split=split, images=images, labels=labels, manifest=subset_manifest
    )


def verify_prepared(name: str, resolution: int | None = None, split: str = "train") -> PreparedDataset:
    """Recompute the content hash of the prepared base split; DataError if it differs from the manifest."""
    spec, base, resolution = _base_and_resolution(name, resolution)
    full = load_prepared(base.name, resolution, split)
    actual = array_content_hash(full.images, full.labels)
    if actual != full.content_hash:
        raise DataError(
            f"{dataset_dir(base.name, resolution) / split}: content hash {actual[:16]} does not match the "
            f"manifest's {full.content_hash[:16]}; the prepared files were modified or damaged",
            fix=f"run `{_prepare_command(base.name, resolution, base.native_resolution)} --force`",
        )
    return load_prepared(name, resolution, split) if spec.is_subset else full


def ensure_prepared(name: str, resolution: int | None = None, progress: bool = True) -> list[Path]:
    """What ``degan-bench run`` calls: nothing if prepared; else prepare (downloading when needed)."""
    _, base, resolution = _base_and_resolution(name, resolution)
    if is_prepared(name, resolution):
        target = dataset_dir(base.name, resolution)
        return [target / split for split in base.splits]
    return prepare_dataset(name, resolution, progress=progress)


def prepared_path(name: str, resolution: int | None = None) -> Path:
    """The prepared directory (holding one folder per split); DataError if not prepared."""
    spec, base, resolution = _base_and_resolution(name, resolution)
    if not is_prepared(name, resolution):
        raise _not_prepared(spec, base, resolution)
    return dataset_dir(base.name, resolution)


@dataclass(frozen=True)
class DatasetStatus:
    """One row of ``degan-bench data list``."""

    name: str
    description: str
    base: str
    splits: tuple[str, ...]
    counts: dict[str, int]  # expected images per split
    native_resolution: int
    prepared: dict[int, str]  # resolution -> content hash prefix of the first split (base datasets)
    subset: str | None  # "rule, N images" for views


def _prepared_resolutions(base: DatasetSpec) -> dict[int, str]:
    root = data_root() / base.name
    found: dict[int, str] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        manifests = [read_manifest(entry / split) for split in base.splits]
        if all(m is not None for m in manifests):
            found[int(entry.name)] = manifests[0]["content_hash"][:12]  # type: ignore[index]
    return dict(sorted(found.items()))


def prepared_status() -> list[DatasetStatus]:
    """Every registered dataset with its prepared resolutions (views report their base's)."""
    rows = []
    for name in dataset_names():
        spec = get_dataset_spec(name)
        base = get_dataset_spec(spec.base)
        prepared = _prepared_resolutions(base)
        rows.append(
            DatasetStatus(
                name=spec.name,
                description=spec.description,
                base=spec.base,
                splits=spec.splits,
                counts=dict(spec.expected_counts),
                native_resolution=spec.native_resolution,
                prepared=prepared if not spec.is_subset else dict.fromkeys(prepared, ""),
                subset=f"{spec.default_subset_rule}, {spec.subset_size}" if spec.is_subset else None,
            )
        )
    return rows
