"""A pre-decoded, memory-mapped store of image pairs: training without decoding PNGs.

Decoding two PNGs costs about 5 ms, which caps one loader worker near 200
patches a second.  :func:`build_store` decodes every pair of a dataset
folder once into a single file; :class:`ImageStore` maps it and hands out
views, so a 64x64 crop touches only the memory pages it needs.

File layout (all integers little-endian)::

    16 bytes   magic  b"DERAIN-STORE-v1\\0"
     8 bytes   uint64 length of the JSON header
     n bytes   JSON header: {"version": 1, "root": ..., "pairs": [{"name", "input",
               "target", "height", "width", "offset", "input_bytes", "target_bytes"}, ...]}
               ("input"/"target" are paths relative to the root the store was built from,
               "*_bytes" their file sizes then, "offset" counts from the data start)
    padding    to the next multiple of 4096 bytes (the data start)
    data       for each pair: input then target, uint8 RGB (H, W, 3), C order

Size: 2 x H x W x 3 bytes a pair (0.92 MB for 480x320; about 13 GB for Rain13K).
"""
from __future__ import annotations

import json
import logging
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.files import atomic_open
from utils.image_io import MAX_PIXELS, ImageReadError

from .folders import DatasetError, ImagePair, format_problems, pair_files, read_pair, scan_pairs

logger = logging.getLogger(__name__)

MAGIC = b"DERAIN-STORE-v1\0"
VERSION = 1
_ALIGN = 4096
_CHUNK = 32  # pairs decoded in parallel before being written


def _data_start(header_len: int) -> int:
    end = len(MAGIC) + 8 + header_len
    return -(-end // _ALIGN) * _ALIGN


def build_store(root: str | os.PathLike, out: str | os.PathLike, workers: int | None = None) -> int:
    """Decode every pair of ``root`` (``input/``, ``target/``) into the store file ``out``.

    The pairs are checked as the datasets check them; every file that cannot
    be decoded is named in one :class:`~data.paired.DatasetError`.  The file
    is written next to ``out`` and renamed into place when complete.  Returns
    the number of pairs.
    """
    root, out = Path(root), Path(out)
    pairs = scan_pairs(root)
    _check_output(out, pairs)
    entries, offset = [], 0
    for pair in pairs:
        entries.append(
            {
                "name": pair.name,
                "input": pair.input.relative_to(root).as_posix(),
                "target": pair.target.relative_to(root).as_posix(),
                "height": pair.height,
                "width": pair.width,
                "offset": offset,
                "input_bytes": pair.input.stat().st_size,
                "target_bytes": pair.target.stat().st_size,
            }
        )
        offset += 2 * pair.height * pair.width * 3
    header = json.dumps({"version": VERSION, "root": str(root.resolve()), "pairs": entries}).encode()
    start = _data_start(len(header))

    def decode(pair: ImagePair) -> tuple[np.ndarray | None, str | None]:
        try:
            inp, tgt = read_pair(pair)
        except (ImageReadError, DatasetError) as err:
            return None, str(err)
        if inp.shape[:2] != (pair.height, pair.width):
            return None, f"{pair.input} decodes to {inp.shape[:2]}, its header says {(pair.height, pair.width)}"
        return np.stack([inp, tgt]), None

    problems = []
    workers = workers or min(8, os.cpu_count() or 1)
    # atomic_open: a temporary file renamed into place when complete; removed on any error (a full disk too)
    with atomic_open(out, "wb") as f, ThreadPoolExecutor(max_workers=workers) as pool:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(b"\0" * (start - f.tell()))
        bar = tqdm(total=len(pairs), desc="building store", disable=not sys.stderr.isatty())
        for k in range(0, len(pairs), _CHUNK):
            for block, err in pool.map(decode, pairs[k : k + _CHUNK]):
                if err is not None:
                    problems.append(err)
                elif not problems:
                    f.write(memoryview(np.ascontiguousarray(block)).cast("B"))
            bar.update(min(_CHUNK, len(pairs) - k))
        bar.close()
        if problems:
            raise DatasetError(format_problems(f"cannot build the store from {root}", problems))
    logger.info("wrote %s: %d pairs, %.1f MB", out, len(pairs), (start + offset) / 1e6)
    return len(pairs)


def _check_output(out: Path, pairs: list[ImagePair]) -> None:
    """The store may replace an earlier store, never an image of the dataset or another file."""
    sources = {p.resolve() for pair in pairs for p in (pair.input, pair.target)}
    if out.resolve() in sources:
        raise DatasetError(f"--out {out} is an image of the dataset; choose another file")
    if out.is_dir():
        raise DatasetError(f"--out {out} is a folder; name the store file to write")
    if out.exists():
        try:
            with open(out, "rb") as f:
                is_store = f.read(len(MAGIC)) == MAGIC
        except OSError as err:
            raise DatasetError(f"cannot read {out}: {err.strerror or err}") from None
        if not is_store:
            raise DatasetError(f"{out} exists and is not an image store; refusing to overwrite it")


class ImageStore:
    """Read-only access to a store written by :func:`build_store`.

    The file is mapped lazily in each process (the mapping is not pickled,
    so DataLoader workers map it themselves).  ``pairs`` lists the stored
    pairs as :class:`~data.paired.ImagePair` with paths relative to the root
    the store was built from.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"store not found: {self.path}")
        with open(self.path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                raise DatasetError(f"{self.path} is not an image store (build one with scripts/build_store.py)")
            raw = f.read(8)
            (header_len,) = struct.unpack("<Q", raw) if len(raw) == 8 else (-1,)
            if not 0 < header_len <= self.path.stat().st_size - len(MAGIC) - 8:
                raise DatasetError(f"{self.path}: corrupt store header (length {header_len})")
            header = f.read(header_len)
        try:
            meta = json.loads(header)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{self.path}: corrupt store header ({err})") from None
        problem = _header_problem(meta)
        if problem:
            raise DatasetError(f"{self.path}: corrupt store header ({problem})")
        self._entries = meta["pairs"]
        self.root = Path(meta["root"])
        self._data_start = _data_start(header_len)
        self.pairs = [ImagePair(e["name"], Path(e["input"]), Path(e["target"]), e["height"], e["width"])
                      for e in self._entries]
        total = sum(2 * p.height * p.width * 3 for p in self.pairs)
        if self.path.stat().st_size < self._data_start + total:
            raise DatasetError(f"{self.path}: truncated store (expected {self._data_start + total} bytes)")
        self._total = total
        self._mm: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only uint8 (H, W, 3) views of the input and target of pair ``i``."""
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._data_start, shape=(self._total,))
        e = self._entries[i]
        h, w, off = e["height"], e["width"], e["offset"]
        block = self._mm[off : off + 2 * h * w * 3].reshape(2, h, w, 3)
        return block[0], block[1]

    def check_matches(self, root: str | os.PathLike) -> None:
        """Raise :class:`~data.paired.DatasetError` unless the store holds exactly ``root``'s pairs as they are now.

        Compares the pairing (file names) and every file's size, which is cheap
        (no decoding) and catches replaced or re-encoded images.
        """
        root = Path(root)
        current = {
            (Path(a).relative_to(root).as_posix(), Path(b).relative_to(root).as_posix())
            for a, b in pair_files(root / "input", root / "target")
        }
        stored = {(e["input"], e["target"]) for e in self._entries}
        problems = [f"pair not in the store: {a} / {b}" for a, b in sorted(current - stored)]
        problems += [f"pair in the store but not in the folder: {a} / {b}" for a, b in sorted(stored - current)]
        for e in self._entries:
            for key in ("input", "target"):
                path = root / e[key]
                if path.is_file() and path.stat().st_size != e[f"{key}_bytes"]:
                    problems.append(f"changed since the store was built: {path}")
        if problems:
            raise DatasetError(
                format_problems(f"store {self.path} is out of date for {root} (rebuild it)", problems)
            )


def _header_problem(meta) -> str | None:
    """What is wrong with a store header (``None`` when it is what build_store writes).

    The entries must be consecutive blocks of positive sizes, with text names.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("pairs"), list) or not isinstance(meta.get("root"), str):
        return "no pair list or root"
    keys = ("name", "input", "target", "height", "width", "offset")
    offset = 0
    for e in meta["pairs"]:
        if not isinstance(e, dict) or any(k not in e for k in keys):
            return f"an entry lacks one of {', '.join(keys)}"
        if not all(isinstance(e[k], str) for k in ("name", "input", "target")):
            return f"entry {e['name']!r} has non-text names"
        h, w = e["height"], e["width"]
        if not (type(h) is int and type(w) is int and h > 0 and 0 < h * w <= MAX_PIXELS):
            return f"entry {e['name']!r} has the size {h!r}x{w!r}"
        if e["offset"] != offset:
            return f"entry {e['name']!r} is at offset {e['offset']!r}, expected {offset}"
        offset += 2 * h * w * 3
    return None
