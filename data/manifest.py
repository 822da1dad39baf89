"""Manifests of known dataset versions, and which known version a folder holds.

Published deraining scores are only comparable on the same data, and the
standard sets circulate in several versions: Rain100H and Rain100L exist as
481x321 originals and as the 480x320 crops most repositories ship (the same
scenes, one row and one column fewer, other PNG bytes), and copies lose or
gain files.  A *manifest* (``data/manifests/*.tsv``, format in
``data/manifests/README.md``) lists one version of one set file by file: role
(input = rainy, target = clean), name, SHA-256 of the bytes, size in bytes,
width, height and, where known, the SHA-256 of the decoded pixels.  Adding a
set is adding a file.

:func:`identify` matches a folder's files against every manifest: by bytes
first, then by pair key (``rain-1.png`` and ``norain-1.png`` are both pair 1)
for files whose bytes differ (*modified*; *re-encoded* when the decoded
pixels are still the manifest's).  The best-matching version gives the
status: ``exact`` (every file, nothing else), ``partial`` (most of the folder,
or most of the version, is that version) or ``unknown`` (then ``contains``
still lists the versions some files come from).

Hashing is cheap, but reading a large folder is not: a file is hashed only
when some manifest holds a file of its size, so identifying a folder of
unknown images costs one ``stat`` per file.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.image_io import ImageReadError, read_image

from .folders import pair_key

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
ROLES = ("input", "target")
KINDS = ("test", "train")
COLUMNS = ("role", "name", "sha256", "bytes", "width", "height", "pixels_sha256")
REQUIRED_KEYS = ("set", "version", "kind", "pairs")
OPTIONAL_KEYS = ("sizes", "about", "source")
_HEADER = re.compile(r"^#\s*([a-z]+):\s*(.*?)\s*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"^(\d+)x(\d+) \((\d+)\)$")
UNKNOWN = "unknown"


class ManifestError(UserError, ValueError):
    """A manifest file does not parse; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    """One file of a known set version."""

    role: str
    name: str
    sha256: str
    bytes: int
    width: int
    height: int
    pixels: str | None  # SHA-256 of the decoded uint8 RGB pixels (see pixel_sha256); None where unknown


@dataclass(frozen=True)
class Manifest:
    """One version of one set: its header and its files."""

    set: str
    version: str
    kind: str  # "test" (an evaluation set) or "train"
    pairs: int  # inputs (each with its target when the set has targets)
    entries: tuple[Entry, ...]
    path: Path
    sizes: str = ""
    about: str = ""
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.set} {self.version}"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in ROLES if any(e.role == r for e in self.entries))


def pixel_sha256(img: np.ndarray) -> str:
    """SHA-256 of decoded pixels: the (H, W, 3) uint8 RGB array of read_image, row by row, prefixed by its shape."""
    digest = hashlib.sha256(f"{img.shape[0]}x{img.shape[1]}x{img.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(img).data)
    return digest.hexdigest()


def size_summary(sizes: list[tuple[int, int]]) -> str:
    """``"480x320 (66), 320x480 (34)"``: width x height of each size and how many, most frequent first."""
    counts = Counter(sizes)
    return ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ----------------------------------------------------------------------------- parsing

def parse_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check one manifest; anything malformed is a :class:`ManifestError` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {path}: not UTF-8 text") from None
    except OSError as err:
        raise ManifestError(f"cannot read the manifest {path}: {err.strerror or err}") from None
    header: dict[str, str] = {}
    entries: list[Entry] = []
    seen: dict[tuple[str, str], int] = {}
    columns_at = 0
    for number, line in enumerate(text.splitlines(), 1):
        where = f"manifest {path} line {number}"
        if not line.strip():
            continue
        if line.startswith("#"):
            match = _HEADER.match(line)
            if match and match.group(1) in REQUIRED_KEYS + OPTIONAL_KEYS:
                if columns_at:
                    raise ManifestError(f"{where}: header line after the table")
                header[match.group(1)] = match.group(2)
            continue
        if not columns_at:
            if tuple(line.split("\t")) != COLUMNS:
                raise ManifestError(f"{where}: expected the column names {' '.join(COLUMNS)} (tab-separated)")
            columns_at = number
            continue
        entry = _parse_row(line, where)
        key = (entry.role, entry.name)
        if key in seen:
            raise ManifestError(f"{where}: {entry.role}/{entry.name} is listed twice (first on line {seen[key]})")
        seen[key] = number
        entries.append(entry)
    return _checked(path, header, entries, columns_at)


def _parse_row(line: str, where: str) -> Entry:
    fields = line.split("\t")
    if len(fields) != len(COLUMNS):
        raise ManifestError(f"{where}: {len(fields)} tab-separated fields, expected {len(COLUMNS)} "
                            f"({' '.join(COLUMNS)})")
    role, name, sha, size, width, height, pixels = fields
    if role not in ROLES:
        raise ManifestError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ManifestError(f"{where}: {name!r} is not a file name")
    for label, value in (("sha256", sha), ("pixels_sha256", pixels)):
        if not _HEX64.match(value) and not (label == "pixels_sha256" and value == "-"):
            raise ManifestError(f"{where}: {label} {value!r} is not 64 lowercase hex digits"
                                + (" or -" if label == "pixels_sha256" else ""))
    numbers = []
    for label, value in (("bytes", size), ("width", width), ("height", height)):
        if not value.isdigit() or int(value) < 1:
            raise ManifestError(f"{where}: {label} {value!r} is not a positive whole number")
        numbers.append(int(value))
    return Entry(role, name, sha, *numbers, None if pixels == "-" else pixels)


def _checked(path: Path, header: dict[str, str], entries: list[Entry], columns_at: int) -> Manifest:
    missing = [k for k in REQUIRED_KEYS if not header.get(k)]
    if missing:
        raise ManifestError(f"manifest {path}: no {', '.join(f'# {k}:' for k in missing)} header line")
    if not columns_at or not entries:
        raise ManifestError(f"manifest {path}: no files listed (expected the column names, then one file a line)")
    if header["kind"] not in KINDS:
        raise ManifestError(f"manifest {path}: kind {header['kind']!r} is not one of {', '.join(KINDS)}")
    if not header["pairs"].isdigit():
        raise ManifestError(f"manifest {path}: pairs {header['pairs']!r} is not a whole number")
    inputs = [e for e in entries if e.role == "input"]
    targets = [e for e in entries if e.role == "target"]
    if int(header["pairs"]) != len(inputs) or (targets and len(targets) != len(inputs)):
        raise ManifestError(f"manifest {path}: pairs {header['pairs']} but {len(inputs)} inputs and "
                            f"{len(targets)} targets are listed")
    if targets:
        unpaired = sorted({pair_key(e.name) for e in inputs} ^ {pair_key(e.name) for e in targets})
        if unpaired:
            raise ManifestError(f"manifest {path}: inputs and targets do not pair up by name (pair keys "
                                f"{', '.join(unpaired[:5])})")
    sizes = size_summary([(e.width, e.height) for e in inputs])
    if header.get("sizes") and header["sizes"] != sizes:
        raise ManifestError(f"manifest {path}: sizes {header['sizes']!r} but the inputs listed are {sizes}")
    return Manifest(header["set"], header["version"], header["kind"], int(header["pairs"]), tuple(entries), path,
                    sizes, header.get("about", ""), header.get("source", ""))


@functools.lru_cache(maxsize=8)
def _load_folder(folder: str) -> tuple[Manifest, ...]:
    manifests = tuple(parse_manifest(p) for p in sorted(Path(folder).glob("*.tsv")))
    seen: dict[str, Path] = {}
    for m in manifests:
        if m.label in seen:
            raise ManifestError(f"manifests {seen[m.label]} and {m.path} both describe {m.label}")
        seen[m.label] = m.path
    return manifests


def load_manifests(folder: str | os.PathLike | None = None) -> tuple[Manifest, ...]:
    """Every manifest (``*.tsv``) of ``folder`` (default: ``data/manifests/``), parsed once per process."""
    folder = Path(folder) if folder is not None else MANIFEST_DIR
    if not folder.is_dir():
        raise ManifestError(f"manifest folder {folder} is not a folder")
    return _load_folder(str(folder.resolve()))


# ----------------------------------------------------------------------------- identification

@dataclass
class FileFacts:
    """A file of the folder being identified; its hashes are computed when first needed (or given)."""

    role: str | None  # "input" / "target" in a set folder, None in a plain folder of images
    name: str  # file name inside its role folder
    path: Path
    size: int  # bytes
    sha256: str | None = None
    pixels: str | None = None

    @property
    def shown(self) -> str:
        """The name relative to the checked folder (``target/001.png``, or ``001.png`` in a plain folder)."""
        return f"{self.role}/{self.name}" if self.role else self.name

    def byte_hash(self) -> str:
        if self.sha256 is None:
            self.sha256 = sha256_file(self.path)
        return self.sha256

    def pixel_hash(self) -> str | None:
        """SHA-256 of the decoded pixels; None when the file does not decode."""
        if self.pixels is None:
            try:
                self.pixels = pixel_sha256(read_image(self.path))
            except ImageReadError:
                return None
        return self.pixels


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_facts(files: dict[str | None, list[Path]]) -> list[FileFacts]:
    """:class:`FileFacts` of ``{role: [paths]}`` (role None for a plain folder); one ``stat`` per file."""
    return [FileFacts(role, p.name, p, p.stat().st_size) for role, paths in files.items() for p in paths]


@dataclass
class Identification:
    """Which known version a folder holds, and how it differs from it (names relative to the folder)."""

    status: str = UNKNOWN  # "exact", "partial" or "unknown"
    manifest: Manifest | None = None
    roles: tuple[str, ...] = ()  # the manifest's roles compared
    expected: int = 0  # files of those roles in the manifest
    matched: list[str] = field(default_factory=list)  # same bytes (renamed ones included)
    modified: list[str] = field(default_factory=list)  # same pair key, other bytes
    reencoded: list[str] = field(default_factory=list)  # of the modified: other bytes, the manifest's pixels
    missing: list[str] = field(default_factory=list)  # in the manifest, not in the folder
    extra: list[str] = field(default_factory=list)  # in the folder, not in the manifest
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (file, the manifest's name): same bytes
    contains: list[tuple[str, int]] = field(default_factory=list)  # (version label, files) when unknown
    pending: dict[str, tuple[FileFacts, Entry]] = field(default_factory=dict, repr=False)  # modified -> entry

    @property
    def set(self) -> str | None:
        return self.manifest.set if self.manifest and self.status != UNKNOWN else None

    @property
    def version(self) -> str | None:
        return self.manifest.version if self.manifest and self.status != UNKNOWN else None

    @property
    def kind(self) -> str | None:
        return self.manifest.kind if self.manifest and self.status != UNKNOWN else None

    @property
    def same_pixels(self) -> bool:
        """Every file of the version is there with its pixels, and nothing else (bytes may differ)."""
        return (self.status != UNKNOWN and not self.missing and not self.extra
                and len(self.reencoded) == len(self.modified))

    def summary(self) -> dict:
        """The version as score files record it: set, version, status and the counts behind it."""
        out = {"set": self.set, "version": self.version, "status": self.status}
        if self.status != UNKNOWN:
            out.update(matched=len(self.matched), of=self.expected, modified=len(self.modified),
                       reencoded=len(self.reencoded), missing=len(self.missing), extra=len(self.extra),
                       same_pixels=self.same_pixels)
        elif self.contains:
            out["contains"] = {label: n for label, n in self.contains}
        return out


def identify(files: list[FileFacts], manifests: tuple[Manifest, ...] | None = None) -> Identification:
    """The known version ``files`` (one folder) hold, by bytes, pair keys and pixels (see the module docstring).

    A set folder (roles input/target) is compared with the roles it has; a
    plain folder (role None) as the inputs or as the targets of each version,
    whichever matches more.  Pixels are compared where a file's pixel hash is
    already known, and, for the version found, for every modified file (each
    is decoded then): a copy re-encoded throughout is recognised only when
    its pixel hashes are given.
    """
    manifests = load_manifests() if manifests is None else manifests
    present = {f.role for f in files}
    best: Identification | None = None
    contains = []
    for manifest in manifests:
        trials = [(r,) for r in manifest.roles] if present == {None} else \
            [tuple(r for r in manifest.roles if r in present)]
        for roles in filter(None, trials):
            found = _compare(files, manifest, roles)
            if _same(found):
                contains.append((manifest.label, _same(found)))
            if best is None or _rank(found) > _rank(best):
                best = found
    if best is None or 2 * _same(best) < max(1, min(best.expected, len(files))):
        return Identification(contains=contains)  # not mostly any known version
    for name in best.modified:  # which modified files are only re-encoded (same pixels)?
        f, entry = best.pending[name]
        if entry.pixels is not None and name not in best.reencoded and f.pixel_hash() == entry.pixels:
            best.reencoded.append(name)
    best.status = "exact" if not (best.modified or best.missing or best.extra) else "partial"
    return best


def _same(found: Identification) -> int:
    """Files holding the version's content: the same bytes, or re-encoded with the same pixels."""
    return len(found.matched) + len(found.reencoded)


def _rank(found: Identification) -> tuple[int, int]:
    return _same(found), -(len(found.missing) + len(found.extra))


def _compare(files: list[FileFacts], manifest: Manifest, roles: tuple[str, ...]) -> Identification:
    """Match one folder's files with one manifest's files of ``roles`` (a plain folder: as ``roles[0]``).

    Bytes first (a file is hashed only when the manifest has a file of its
    size), then pair keys: a file whose bytes differ from the entry of its
    key is modified, and re-encoded when its already known pixel hash is the entry's.
    """
    def role_of(f: FileFacts) -> str:
        return f.role if f.role is not None else roles[0]

    expected = [e for e in manifest.entries if e.role in roles]
    sizes = {(e.role, e.bytes) for e in expected}
    by_hash: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    by_key: dict[tuple[str, str], Entry] = {}
    for e in expected:
        by_hash[(e.role, e.sha256)].append(e)
        by_key[(e.role, pair_key(e.name))] = e
    claimed: set[int] = set()  # id() of the entries found
    found = Identification(manifest=manifest, roles=roles, expected=len(expected))
    left = []
    for f in sorted(files, key=lambda f: f.shown):
        role = role_of(f)
        same = [e for e in by_hash.get((role, f.byte_hash()), []) if id(e) not in claimed] \
            if (role, f.size) in sizes else []
        if not same:
            left.append(f)
            continue
        entry = next((e for e in same if pair_key(e.name) == pair_key(f.name)), same[0])
        claimed.add(id(entry))
        found.matched.append(f.shown)
        if pair_key(entry.name) != pair_key(f.name):
            found.renamed.append((f.shown, _shown(entry, f.role)))
    for f in left:
        entry = by_key.get((role_of(f), pair_key(f.name)))
        if entry is None or id(entry) in claimed:
            found.extra.append(f.shown)
            continue
        claimed.add(id(entry))
        found.modified.append(f.shown)
        found.pending[f.shown] = (f, entry)
        if f.pixels is not None and f.pixels == entry.pixels:
            found.reencoded.append(f.shown)
    plain = bool(files) and files[0].role is None
    found.missing = sorted((_shown(e, None if plain else e.role) for e in expected if id(e) not in claimed),
                           key=_natural)
    return found


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _shown(entry: Entry, role: str | None) -> str:
    return f"{entry.role}/{entry.name}" if role else entry.name
