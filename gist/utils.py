"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from gist.errors import GistInputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A failure (or interruption) inside the block leaves no half-written ``path`` behind, and any
    previous file at ``path`` untouched.

    Examples
    --------
    >>> with atomic_path("out.h5ad") as tmp:  # doctest: +SKIP
    ...     adata.write_h5ad(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files an interrupted :func:`atomic_path` left in ``folder`` (a killed
    process never reaches its cleanup). Only call it while holding the folder's lock."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        if tmp.is_file() and tmp.name != LOCK_NAME:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


LOCK_NAME = ".gist.lock"
_held: dict[Path, int] = {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def exclusive_folder(folder: str | Path, what: str = "this run") -> Iterator[Path]:
    """Hold ``folder/.gist.lock`` while the block runs, so that two runs never write into one folder.

    A lock left by a process that no longer exists (a killed run) is taken over with a warning; a
    lock held by a live process is an error naming its pid. Nested use in one process is allowed.

    Raises
    ------
    GistInputError
        If another live process holds the folder.
    """

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_NAME).resolve()
    if _held.get(lock):
        _held[lock] += 1
        try:
            yield lock
        finally:
            _held[lock] -= 1
        return
    host = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = dict(line.split("=", 1) for line in lock.read_text().splitlines() if "=" in line)
                pid = int(owner.get("pid", "0"))
            except (OSError, ValueError):
                owner, pid = {}, 0
            if pid and owner.get("host") == host and not _pid_alive(pid):
                warnings.warn(f"{folder}: taking over the lock of process {pid}, which no longer runs (killed?)",
                              stacklevel=3)
                lock.unlink(missing_ok=True)
                continue
            raise GistInputError(
                f"{folder} is in use by another run (pid {owner.get('pid', '?')} on {owner.get('host', '?')} since "
                f"{owner.get('since', '?')}): wait for it to finish or write to another folder; if no such run "
                f"exists, delete {lock}"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"pid={os.getpid()}\nhost={host}\nsince={time.strftime('%Y-%m-%dT%H:%M:%S')}\nwhat={what}\n")
        break
    _held[lock] = 1
    remove_stale_temporaries(folder)
    try:
        yield lock
    finally:
        _held.pop(lock, None)
        lock.unlink(missing_ok=True)


def h5ad_safe(info: dict) -> dict:
    """A copy of ``info`` that ``.h5ad`` can store in ``uns``: nested dicts kept, ``None`` and empty
    lists become ``''``."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if v is None:
            return ""
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v] if v else ""
        return v
    return clean(info)


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    root = Path(path)
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def human_bytes(n: float) -> str:
    """``n`` bytes as a short text (``'3.3 GB'``, ``'812 MB'``, ``'4 kB'``), decimal units."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"
