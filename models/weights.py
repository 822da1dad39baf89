"""Released weights by name: the registry (``models/weights.json``), the local cache, verified downloads.

``--weights BRN/Rain100H`` (``test.py``, ``derain.py``, ``scripts/leaderboard.py``)
names a file of the registry.  It is looked up in the cache folder
(``$DERAIN_HOME/weights/<name>/<file>``; ``$DERAIN_HOME`` defaults to
``$XDG_CACHE_HOME/derain``, i.e. ``~/.cache/derain``, as torch and pip do)
and downloaded when absent: first from ``$DERAIN_WEIGHTS_MIRROR`` (a
folder or URL prefix holding ``<name>/<file>``, the cache's own layout, so a
lab can mirror its cache once), then from the authors' repositories at a
fixed commit.  ``DERAIN_WEIGHTS_OFFLINE=1`` never contacts the authors.

Nothing unverified is ever used.  A download goes to a temporary file in
the cache folder and is moved into place only when its size and SHA-256 are
the registry's; an HTML page, a 404, a cut transfer, a changed file, a full
disk or an interrupt (Ctrl-C, SIGTERM) leaves nothing behind, and the
previously cached file, if any, is untouched.  A cached file is verified
again each time it is used, so one damaged later is refused, not loaded.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import http.client
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from utils.errors import UsageError, UserError
from utils.files import atomic_open

log = logging.getLogger(__name__)

REGISTRY = Path(__file__).with_name("weights.json")
ENV_HOME = "DERAIN_HOME"
ENV_MIRROR = "DERAIN_WEIGHTS_MIRROR"
ENV_OFFLINE = "DERAIN_WEIGHTS_OFFLINE"
TIMEOUT = 60.0  # seconds without a byte before a download is given up (no hang on a stalled server)
CHUNK = 1 << 16
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head")


class WeightsError(UserError, RuntimeError):
    """A released weights file cannot be had: not cached and no source gave it, or it fails its check."""


class UnknownWeightsError(UserError, FileNotFoundError):
    """``--weights`` is neither a file nor a registered name; the message lists the close names."""


@dataclass(frozen=True)
class Source:
    """Where the authors publish a file: ``repository`` (GitHub owner/name) at ``commit``, ``path`` inside it."""

    repository: str
    commit: str
    path: str

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repository}/blob/{self.commit}/{self.path}"


@dataclass(frozen=True)
class WeightsEntry:
    """One released file of the registry (see ``models/weights.json`` for what each field holds)."""

    name: str
    model: str
    options: dict
    trained_on: str
    test_set: str
    file: str
    bytes: int
    sha256: str | None
    md5: str | None
    source: Source
    urls: tuple[str, ...]
    licence: str
    measured: tuple[dict, ...]

    @property
    def label(self) -> str:
        """The part after the model: which release of the model (``Rain100H``, ``practical``)."""
        return self.name.split("/", 1)[1]

    @property
    def fetchable(self) -> bool:
        """Only files whose SHA-256 is recorded are downloaded: nothing unverifiable is fetched."""
        return bool(self.sha256 and self.urls)


@functools.lru_cache(maxsize=4)
def load_registry(path: Path = REGISTRY) -> dict[str, WeightsEntry]:
    """The registry's entries by name (the file ships with the project; it is read once)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    entries = {}
    for item in data["weights"]:
        fields = {**item, "source": Source(**item["source"]), "urls": tuple(item["urls"]),
                  "measured": tuple(item["measured"])}
        fields.setdefault("sha256", None)
        fields.setdefault("md5", None)
        entries[item["name"]] = WeightsEntry(**fields)
    return entries


def registry() -> dict[str, WeightsEntry]:
    return load_registry(REGISTRY)


def complexity() -> dict:
    """``{"size": [H, W], "models": {model: {"params", "macs"}}}`` stored with the registry."""
    with open(REGISTRY, encoding="utf-8") as f:
        return json.load(f)["complexity"]


def close_names(text: str, limit: int = 5) -> list[str]:
    """Registered names that look like ``text`` (case ignored), for 'did you mean' messages."""
    by_lower = {name.lower(): name for name in registry()}
    return [by_lower[n] for n in difflib.get_close_matches(text.lower(), list(by_lower), n=limit, cutoff=0.6)]


def get(name: str) -> WeightsEntry:
    """The entry called ``name``; an unknown name is an error listing the close ones."""
    entry = registry().get(name)
    if entry is None:
        raise UnknownWeightsError(f"unknown weights name {name!r}{did_you_mean(name)}")
    return entry


def did_you_mean(text: str) -> str:
    close = close_names(text)
    if close:
        return f"; did you mean {', '.join(close)}?"
    return "; `python scripts/weights.py list` shows the released names"


# ----------------------------------------------------------------------------- the cache

def home() -> Path:
    """``$DERAIN_HOME``, else ``$XDG_CACHE_HOME/derain``, else ``~/.cache/derain``."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derain"
    return Path(os.environ.get(ENV_HOME) or default).expanduser()


def cache_folder() -> Path:
    return home() / "weights"


def cache_path(entry: WeightsEntry) -> Path:
    """Where the cache keeps ``entry``: ``<cache>/<name>/<upstream file name>`` (a mirror uses the same layout)."""
    return cache_folder() / entry.name / entry.file


def digests(path: str | os.PathLike) -> tuple[str, str, int]:
    """``(sha256, md5, bytes)`` of a file, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return sha.hexdigest(), md5.hexdigest(), size


def mismatch(path: Path, entry: WeightsEntry) -> str | None:
    """Why the file at ``path`` is not ``entry``'s file, or None when it is (size and hash)."""
    sha, md5, size = digests(path)
    if size != entry.bytes:
        return f"has {size:,} bytes, the registry's file {entry.bytes:,}"
    if entry.sha256 and sha != entry.sha256:
        return f"has SHA-256 {sha[:16]}..., the registry's file {entry.sha256[:16]}..."
    if not entry.sha256 and md5 != entry.md5:
        return f"has md5 {md5}, the registry's file {entry.md5}"
    return None


def identify(path: str | os.PathLike) -> WeightsEntry | None:
    """The registry entry whose file ``path`` is (by SHA-256, or md5 where only that is recorded)."""
    sha, md5, size = digests(path)
    for entry in registry().values():
        if entry.bytes == size and (sha == entry.sha256 if entry.sha256 else md5 == entry.md5):
            return entry
    return None


def is_cached(entry: WeightsEntry) -> bool:
    """Whether the cache holds a file of the right size for ``entry`` (``verify`` checks the hash)."""
    path = cache_path(entry)
    return path.is_file() and path.stat().st_size == entry.bytes


# ----------------------------------------------------------------------------- resolving --weights

def resolve(spec: str | os.PathLike) -> tuple[Path, WeightsEntry | None]:
    """``--weights`` as given -> ``(file, registry entry or None)``.

    An existing file is used as it is (as before names existed); a
    registered name is taken from the cache or fetched (:func:`ensure`).
    Path objects are always paths.  Anything else is an error naming it,
    with the registered names that look like it.
    """
    if not isinstance(spec, str):
        return Path(spec), None
    path = Path(spec)
    if path.is_file():
        return path, None
    entry = registry().get(spec)
    if entry is not None:
        return ensure(entry), entry
    if path.exists():  # a folder: the checkpoint loader says what is wrong with it
        return path, None
    raise UnknownWeightsError(f"weights not found: {spec} is neither a file nor a released weights name"
                              f"{did_you_mean(spec)}")


def ensure(entry: WeightsEntry, force: bool = False) -> Path:
    """The verified cached file of ``entry``, fetched first when absent (or when ``force``)."""
    path = cache_path(entry)
    if not force and path.is_file():
        problem = mismatch(path, entry)
        if problem is None:
            return path
        again = (f"fetch it again with `python scripts/weights.py fetch --force {entry.name}`" if entry.fetchable
                 else f"replace it by hand with {entry.source.path} from github.com/{entry.source.repository}")
        raise WeightsError(f"cached {path} {problem}: it was changed or damaged and is not used; {again}")
    return fetch(entry, path)


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def mirror_source(entry: WeightsEntry) -> tuple[str, str] | None:
    """``(what to show, URL)`` of ``entry`` on ``$DERAIN_WEIGHTS_MIRROR`` (a folder or URL prefix), if set."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    if not value:
        return None
    if "://" in value:
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme not in ("http", "https", "file"):
            raise UsageError(f"{ENV_MIRROR}={value}: not a folder nor an http(s):// or file:// URL prefix")
        url = f"{value.rstrip('/')}/{urllib.parse.quote(entry.name)}/{urllib.parse.quote(entry.file)}"
        return url, url
    path = Path(value).expanduser().absolute() / entry.name / entry.file
    return str(path), path.as_uri()


def sources(entry: WeightsEntry) -> list[tuple[str, str]]:
    """Where ``entry`` is fetched from, in order: the mirror, then (unless offline) the authors' URLs."""
    mirror = mirror_source(entry)
    found = [mirror] if mirror else []
    return found if offline() else found + [(url, url) for url in entry.urls]


def fetch(entry: WeightsEntry, dest: Path | None = None) -> Path:
    """Download ``entry`` into the cache from the first source that gives the right file; returns its path."""
    dest = cache_path(entry) if dest is None else dest
    if not entry.fetchable:
        raise WeightsError(f"{entry.name} cannot be fetched verified (its SHA-256 is not recorded): download "
                           f"{entry.source.path} from github.com/{entry.source.repository} yourself and pass its "
                           f"path to --weights, or put it at {dest}")
    by_hand = f"put the file there by hand: {dest} (from {entry.urls[0]})"
    tried = sources(entry)
    if not tried:
        raise WeightsError(f"{entry.name} is not in the cache and downloads are off ({ENV_OFFLINE}); {by_hand}, "
                           f"or set {ENV_MIRROR}")
    failures = []
    with _termination_as_exit(entry):
        for shown, url in tried:
            try:
                _download(url, shown, entry, dest)
            except _Failed as err:
                failures.append(f"{shown} {err}")
                continue
            for failure in failures:  # said once the file is had; on failure the error says it all
                log.warning("%s: %s", entry.name, failure)
            log.info("%s: %s saved to %s (SHA-256 verified)", entry.name, shown, dest)
            return dest
    off = f" (the authors' URLs are not tried: {ENV_OFFLINE} is set)" if offline() else ""
    raise WeightsError(f"could not fetch {entry.name}: {'; '.join(failures)}{off}. Check the network or "
                       f"{ENV_MIRROR}, or {by_hand}")


class _Failed(Exception):
    """One source did not give the file (not an OSError, so the atomic writer never mistakes it for a disk error)."""


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        raise _Failed(f"answered {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, FileNotFoundError):  # a mirror folder without the file
            raise _Failed("is missing") from None
        raise _Failed(f"cannot be reached: {_reason(err.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise _Failed(f"cannot be reached: {_reason(err)}") from None


def _reason(err) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _download(url: str, shown: str, entry: WeightsEntry, dest: Path) -> None:
    """Stream ``url`` into ``dest`` through a temporary file; raise :class:`_Failed` unless it is the file."""
    with _open(url) as response:
        if response.headers.get_content_type() == "text/html":
            raise _Failed("answered an HTML page, not the file (an error or login page?)")
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.strip().isdigit() and int(announced) != entry.bytes:
            raise _Failed(f"announces {int(announced):,} bytes, the registry's file has {entry.bytes:,}")
        digest, received = hashlib.sha256(), 0
        bar = tqdm(total=entry.bytes, desc=entry.name, unit="B", unit_scale=True, unit_divisor=1024,
                   disable=not sys.stderr.isatty())
        log.info("%s: downloading %s (%s bytes) from %s", entry.name, entry.file, f"{entry.bytes:,}", shown)
        with bar, atomic_open(dest, "wb", fsync=True) as f:
            while True:
                chunk = _read(response, received, entry)
                if not chunk:
                    break
                if received == 0 and chunk.lstrip()[:16].lower().startswith(_HTML_STARTS):
                    raise _Failed("answered an HTML page, not the file (an error or login page?)")
                received += len(chunk)
                if received > entry.bytes:
                    raise _Failed(f"sends more than the registry's {entry.bytes:,} bytes")
                digest.update(chunk)
                f.write(chunk)
                bar.update(len(chunk))
            if received != entry.bytes:
                raise _Failed(f"transfer cut after {received:,} of {entry.bytes:,} bytes")
            if digest.hexdigest() != entry.sha256:
                raise _Failed(f"gave a file whose SHA-256 is {digest.hexdigest()[:16]}..., not the registry's "
                              f"{entry.sha256[:16]}...: the file was changed (by its authors, or tampered with); "
                              "not used")


def _read(response, received: int, entry: WeightsEntry) -> bytes:
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, IncompleteRead
        raise _Failed(f"transfer cut after {received:,} of {entry.bytes:,} bytes ({_reason(err)})") from None


@contextlib.contextmanager
def _termination_as_exit(entry: WeightsEntry) -> Iterator[None]:
    """While fetching, SIGTERM unwinds like Ctrl-C (the temporary file is removed) and exits with 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    if previous is None:  # installed outside Python: restore the default
        previous = signal.SIG_DFL
    try:
        yield
    except _Terminated:
        log.error("%s: download stopped by SIGTERM; the partial file was removed", entry.name)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM arrived during a download (a BaseException, so nothing on the way mistakes it for an error)."""
