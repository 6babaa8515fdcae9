"""File I/O shared by every part of attnkit: atomic writes, the one safe ``torch.load``, result tables.

:func:`markdown_table` and :func:`write_results` are defined in :mod:`attnkit._results` and re-exported here.

A file is written to ``<name>.tmp<pid>.<random>`` beside its destination (never in ``$TMPDIR``) and moved over it with ``os.replace``,
so an interrupted process leaves either the old file or the new one, never a truncated one. A write
that fails (a full disk) raises an ``OSError`` naming the file and saying that the previous version is
intact.

Every ``.pt``/``.ckpt`` file attnkit reads goes through :func:`safe_torch_load`
(``torch.load(weights_only=True)``): tensors, numbers, strings and plain containers load; a pickle that
would construct other objects (and could run code) is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import pickle
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write_text",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_torch_save",
    "safe_torch_load",
    "commit_file",
    "save_figure",
    "markdown_table",
    "write_results",
    "CheckpointError",
    "CHECKSUM_KEY",
    "tensor_checksum",
    "with_checksum",
    "fabric_checkpoint_io",
    "RunLock",
    "check_run_name",
    "RunLockedError",
    "clean_orphaned_temps",
]


class CheckpointError(ValueError):
    """A checkpoint or cache file that cannot be read safely, lacks keys, or does not match the model."""


#: the temporary names of :func:`commit_file`: ``<name>.tmp<pid>.<6 hex digits>``
_TMP_RE = re.compile(r"\.tmp(\d+)\.[0-9a-f]{6}$")


def _tmp(path: Path) -> Path:
    """A unique temporary name next to ``path`` (same folder, so ``os.replace`` is atomic; never $TMPDIR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.tmp{os.getpid()}.{secrets.token_hex(3)}")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def clean_orphaned_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`commit_file` left in ``folder`` when its process was killed.

    Only names of the form ``<name>.tmp<pid>.<6 hex digits>`` whose pid no longer runs are removed
    (a live writer's file is left alone). :class:`RunLock` calls this when it takes a run folder.

    Returns:
        The removed paths.
    """
    removed = []
    for p in Path(folder).glob("*.tmp*"):
        m = _TMP_RE.search(p.name)
        if m and p.is_file() and (int(m.group(1)) == os.getpid() or not _pid_alive(int(m.group(1)))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def check_run_name(name: str | None, flag: str = "--run-name") -> None:
    """Refuse a run name that would leave its output folder (absolute, or with a ``..`` part).

    Raises:
        ValueError: the message names the flag and the value.
    """
    if not name:  # None or "": the default name
        return
    if Path(str(name)).is_absolute() or ".." in Path(str(name)).parts:
        raise ValueError(
            f"{flag} {name!r} must be a folder name inside the output folder (no absolute path, no '..'); "
            "use --out-dir to choose where runs go"
        )


class RunLockedError(OSError):
    """The run folder is held by another live process (the message names it and its pid)."""


class RunLock:
    """An exclusive lock on a run folder: ``<folder>/.attnkit.lock``, holding the owner's pid.

    One writer per run folder (``train``, ``compare``, ``search``, ``ode train``): a second process
    that tries to take the folder gets :class:`RunLockedError` naming the owner's pid, and the first
    one's files are untouched. The lock is an ``fcntl.flock`` on the file, which the kernel drops when
    the owner dies (a ``kill -9`` leaves a stale file that the next run simply takes over); where
    ``fcntl`` is missing (Windows) the file is created exclusively and a stale one is recognised by its
    pid no longer running. Taking the lock also removes orphaned temporary files
    (:func:`clean_orphaned_temps`). Use as a context manager or with :meth:`acquire`/:meth:`release`.
    Within one process the lock nests: a second ``RunLock`` on a folder the process already holds
    succeeds (``attnkit ode train`` locks before writing its config, then ``train_corrector`` again).

    Args:
        folder: the run folder (created when missing).
        what: the command, for the message (``"attnkit train"``).

    Raises:
        RunLockedError: from :meth:`acquire`, when another live process holds the folder.
    """

    NAME = ".attnkit.lock"
    _held: dict[tuple[int, str], list[int]] = {}  # (pid, resolved folder) -> [fd, holders]

    def __init__(self, folder: str | os.PathLike, what: str = "attnkit"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self._fd: int | None = None
        self._key: tuple[int, str] | None = None

    def _busy(self) -> RunLockedError:
        try:
            owner = self.path.read_text().strip() or "unknown"
        except OSError:
            owner = "unknown"
        return RunLockedError(
            f"run folder {self.folder} is in use by another process ({owner}); wait for it to finish "
            "or use another run folder (a lock left by a dead process is taken over)"
        )

    def _acquire_flock(self, fcntl) -> None:
        for _ in range(10):  # the file may be removed by its releasing owner between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)
        raise self._busy()

    def _acquire_exclusive(self) -> None:
        for _ in range(10):
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().split("pid ", 1)[1].split()[0])
                except (OSError, IndexError, ValueError):
                    pid = -1
                if _pid_alive(pid):
                    raise self._busy() from None
                with contextlib.suppress(OSError):
                    self.path.unlink()  # stale: its owner is gone
        raise self._busy()

    def acquire(self) -> RunLock:
        """Take the folder (see the class); returns ``self``."""
        if self._key is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = (os.getpid(), str(self.folder.resolve()))  # a forked child does not inherit the hold
        if key in RunLock._held:  # this process holds it already: nest
            RunLock._held[key][1] += 1
            self._key = key
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._acquire_exclusive()
        else:
            self._acquire_flock(fcntl)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{self.what}, pid {os.getpid()} on {socket.gethostname()}\n".encode())
        RunLock._held[key], self._key = [self._fd, 1], key
        clean_orphaned_temps(self.folder)
        return self

    def release(self) -> None:
        """Give the folder back (the outermost holder removes the lock file); a no-op when not held."""
        if self._key is None:
            return
        entry = RunLock._held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del RunLock._held[self._key]
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(entry[0])  # closing drops the flock
        self._fd, self._key = None, None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def commit_file(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it over ``path`` atomically.

    Args:
        path: the destination.
        write: writes the whole file to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the write or the move failed (full disk, read-only folder, ...); the message names
            ``path`` and says that its previous version (if any) is intact. The temporary file is removed.
    """
    path = Path(path)
    tmp = _tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        prev = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise OSError(e.errno, f"writing {path} failed ({e.strerror or e}); {prev}") from e
    return path


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (a crash mid-write leaves the previous file); returns the path.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        path: the destination; its suffix names the format (``.png``, ``.pdf``, ``.svg``; none: PNG).
        dpi: resolution in dots per inch.

    Raises:
        OSError: as :func:`commit_file`.
    """
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return commit_file(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating the parent folder; returns the path.

    Raises:
        OSError: as :func:`commit_file`.
    """
    return commit_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Write ``records`` as JSON lines (one compact object per line) atomically; returns the path.

    For logs rewritten whole from a checkpoint's history, so a kill never leaves a half line or a row the
    checkpoint does not hold.

    Raises:
        OSError: as :func:`commit_file`.
    """
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values through ``str``) atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_write_csv(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]]
) -> Path:
    """Write a header and rows (dicts keyed by ``fieldnames``, or plain sequences) as CSV, atomically."""
    buf = io.StringIO()
    rows = list(rows)
    if rows and isinstance(rows[0], Mapping):
        w = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore")
        w.writeheader()
    else:
        w = csv.writer(buf)
        w.writerow(fieldnames)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


#: the key of a checkpoint dict that holds :func:`tensor_checksum` of the rest of the dict
CHECKSUM_KEY = "attnkit_checksum"


def _feed(h, obj: Any) -> None:
    """Hash ``obj`` canonically: tensors by dtype, shape and bytes; containers in key order; others by repr."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel() and t.layout == torch.strided and not t.is_quantized:
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        elif t.numel():
            h.update(repr(t).encode())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)};".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):  # weights_only loading may turn tuples into lists
        h.update(f"L{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"P{obj!r};".encode())


def tensor_checksum(obj: Any) -> str:
    """``"sha256:<hex>"`` of a checkpoint's tensors (dtype, shape, bytes) and of its other values.

    Equal for an object and for its ``torch.save``/``torch.load(weights_only=True)`` round trip; any
    changed tensor byte or value changes it. Costs one pass over the bytes (sha256, about 1 GB/s).
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return "sha256:" + h.hexdigest()


def with_checksum(obj: Any) -> Any:
    """``obj`` plus ``{CHECKSUM_KEY: tensor_checksum(obj)}`` when it is a checkpoint dict.

    A plain ``state_dict`` (every value a tensor) is returned unchanged, so that
    ``model.load_state_dict(torch.load(f))`` keeps working on the files attnkit writes.
    """
    if not isinstance(obj, dict) or not obj or all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: tensor_checksum(body)}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, creating the parent folder; returns the path.

    A checkpoint dict gets a checksum of its tensors (:func:`with_checksum`) that
    :func:`safe_torch_load` verifies.

    Raises:
        OSError: as :func:`commit_file`.
    """
    obj = with_checksum(obj)
    return commit_file(path, lambda tmp: torch.save(obj, tmp))


@functools.cache
def _fabric_checkpoint_io_class() -> type:
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    class FabricCheckpointIO(TorchCheckpointIO):
        """Lightning Fabric's checkpoint I/O with attnkit's checksum and safe loader.

        Fabric's own writer stages the file in ``$TMPDIR`` (fsspec's local transaction); this one
        writes straight to the path it is given, which :class:`attnkit.train.Engine` makes a unique
        temporary name beside the target (:func:`commit_file`).
        """

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            torch.save(with_checksum(checkpoint), path)

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            return safe_torch_load(path, map_location=map_location if map_location is not None else "cpu")

    FabricCheckpointIO.__module__, FabricCheckpointIO.__qualname__ = __name__, "FabricCheckpointIO"
    return FabricCheckpointIO


def __getattr__(name: str) -> Any:  # the Fabric plugin class, built on first use (picklable by name)
    if name == "FabricCheckpointIO":
        return _fabric_checkpoint_io_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fabric_checkpoint_io():
    """An instance of the Fabric ``CheckpointIO`` plugin above (checksums, no ``$TMPDIR`` staging)."""
    return _fabric_checkpoint_io_class()()


def safe_torch_load(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Args:
        path: the file.
        what: what the file is, for the messages (``"checkpoint"``, ``"trajectory cache"``).
        map_location: as ``torch.load``.

    Returns:
        The loaded object (tensors, numbers, strings, ``None`` and plain containers only). A checkpoint
        dict written with a checksum (:func:`with_checksum`) is verified and returned without it.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file holds objects other than tensors and plain containers (a pickle that
            could run code; nothing in it is executed), it is truncated/corrupt/not a torch file, or
            its tensors do not match its checksum (flipped bytes).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        with open(p, "rb") as fh:
            head = fh.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80") or "Unsupported operand" in str(e):
            raise CheckpointError(  # a text file, random bytes: no torch zip archive, no pickle
                f"{what} {p} is not a torch checkpoint (it starts with {head!r}); it may be corrupt, or "
                "another kind of file"
            ) from None
        why = next((ln.strip() for ln in str(e).splitlines() if "WeightsUnpickler" in ln), "")
        why = why.split("error:", 1)[-1].split(" Please use", 1)[0].strip(" .") or type(e).__name__
        raise CheckpointError(
            f"{what} {p} cannot be loaded safely: it holds objects other than tensors and plain "
            f"containers ({why}); attnkit never unpickles code, so nothing in it was run"
        ) from None
    except Exception as e:  # truncated, corrupt or not a torch file
        raise CheckpointError(
            f"{what} {p} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
            "it may be truncated or corrupt"
        ) from None
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        stored = obj.pop(CHECKSUM_KEY)
        if tensor_checksum(obj) != stored:
            raise CheckpointError(
                f"{what} {p} is corrupt: its contents do not match the checksum stored when it was "
                "written (flipped or overwritten bytes); use another checkpoint (e.g. best.ckpt) or retrain"
            )
    return obj


from ._results import markdown_table, write_results  # noqa: E402  (re-exported: the one results writer)
