"""Atomic file writes and the source revision: what every writer of results shares.

:func:`atomic_write` writes through a temporary file in the target's folder
and ``os.replace``; a crash, a full disk or a permission error leaves the
previous file intact and no temporary file behind, and the error
(:class:`WriteError`) names the path.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import UserError

REPO = Path(__file__).resolve().parents[1]


class WriteError(UserError, OSError):
    """A file could not be written; the message names it (the previous file, if any, is intact)."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", fsync: bool = False, **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    make_folder(path.parent)
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes 0600 files; give what open() would (0666 & ~umask)
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and its parents; a failure is a :class:`WriteError` naming the folder and why."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise WriteError(f"cannot create the folder {folder}: {blocker} is a file, not a folder") from None
    except OSError as err:
        raise WriteError(f"cannot create the folder {folder}: {err.strerror or err}") from None
    return folder


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO], None], fsync: bool = False) -> None:
    """Write bytes, text (UTF-8) or whatever ``data(f)`` writes to ``path`` atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb", fsync=fsync) as f:
        if callable(data):
            data(f)
        else:
            f.write(data)


def git_commit(short: bool = False) -> str:
    """The project's git commit (``-dirty`` when tracked files changed), or "unknown" outside a checkout."""
    cmd = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
