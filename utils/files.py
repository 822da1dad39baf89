"""Atomic file writes, output paths checked before any work, and the source revision.

:func:`atomic_write` writes through a temporary file in the target's folder
and ``os.replace``; a crash, a full disk or a permission error leaves the
previous file intact and no temporary file behind, and the error
(:class:`WriteError`) names the path.  The temporary name is the target's,
shortened so that it fits the file-name limit whenever the target's does.

:func:`check_output_folder` and :func:`check_output_file` are what a tool
calls on its ``--out`` before it reads or computes anything: no tool writes
over a file it reads, nor over a file it did not create without being told
to, and a path that cannot be written (a file where a folder must be) is
found before hours of work rather than after.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError, UserError

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
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
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


TEMP_SUFFIX = ".tmp"
_TEMP_EXTRA = len("..") + 8 + len(TEMP_SUFFIX)  # the dots around the name, mkstemp's 8 random characters


def _temp_prefix(path: Path) -> str:
    """``.NAME.`` for the temporary file of ``path``, NAME shortened so the temporary name fits the folder's
    file-name limit (255 bytes on common file systems) whenever ``path``'s own name does."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    name = path.name
    while name and len(os.fsencode(name)) > limit - _TEMP_EXTRA:
        name = name[:-1]
    return f".{name}."


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


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with every symbolic link resolved, for comparing paths.

    Unlike ``Path.resolve()`` (Python < 3.13), a looping link is no
    ``RuntimeError`` here: the loop stays in the path, and reading the file
    then reports it with the file's name.
    """
    return Path(os.path.realpath(path))


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parent folders that exists but is not a folder, if any."""
    return next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)


def check_output_folder(out: str | os.PathLike, option: str, reads: Iterable[tuple[str, Path]] = ()) -> Path:
    """Refuse an output folder that is a file or lies under one, or that is, or holds, a folder read from.

    ``reads`` are ``(what, folder)`` pairs (``("input", Path("Rain100H/input"))``); a tool's outputs
    must not mix with its inputs, whose files they could replace.  Returns ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out} is a file, not a folder")
    blocker = _file_in_the_way(out)
    if blocker is not None:
        raise UsageError(f"{option} {out} cannot be created: {blocker} is a file, not a folder")
    real = real_path(out)
    for what, folder in reads:
        if real == real_path(folder):
            raise UsageError(f"{option} {out} is the {what} folder: the outputs would be written among the files "
                             "read; choose another folder")
        if real in real_path(folder).parents:
            raise UsageError(f"{option} {out} holds the {what} folder {folder}: the outputs could replace files "
                             "read; choose a folder outside it")
    return out


def check_output_file(out: str | os.PathLike, option: str, reads: Iterable[Path] = (), force: bool = False) -> Path:
    """Refuse an output file that is a folder, lies under a file, is one of the files ``reads``, or exists
    (unless ``force``: then it is replaced - but a file read is never).  Returns ``out`` as a ``Path``."""
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{option} {out} is a folder; name the file to write")
    blocker = _file_in_the_way(out)
    if blocker is not None:
        raise UsageError(f"{option} {out} cannot be written: {blocker} is a file, not a folder")
    real = real_path(out)
    for path in reads:
        if real == real_path(path):
            raise UsageError(f"{option} {out} is the input {path}; write to another file")
    if out.exists() and not force:
        raise UsageError(f"{option} {out} exists; add --force to replace it")
    return out


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
