"""The authors' released weights by name: list them, fetch them into the cache, verify files.

    python scripts/weights.py list                      # name, model, training set, size, cached or not
    python scripts/weights.py fetch BRN/Rain100H ...    # download, verify (SHA-256), cache; --all for every file
    python scripts/weights.py verify                    # check every cached file against the registry
    python scripts/weights.py verify FILE ...           # which released file each one is, if any

Any released name works wherever a weights file does
(``python test.py --weights BRN/Rain100H --datasets Rain100H``).  The cache is
``$DERAIN_HOME/weights`` (default ``~/.cache/derain/weights``);
``$DERAIN_WEIGHTS_MIRROR`` (a folder or URL prefix laid out like the cache)
is tried before the authors' URLs, and ``DERAIN_WEIGHTS_OFFLINE=1`` never
contacts them.  A lab mirrors everything once with
``DERAIN_HOME=/lab/derain python scripts/weights.py fetch --all`` and sets
``DERAIN_WEIGHTS_MIRROR=/lab/derain/weights``.  The model cards are in
``docs/MODEL_ZOO.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,fetch,verify}")
    sub.add_parser("list", help="the registry: name, model, training set, size, cached or not")
    fetch = sub.add_parser("fetch", help="download released files into the cache, verified")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="released names, e.g. BRN/Rain100H")
    fetch.add_argument("--all", action="store_true", help="every file that can be fetched")
    fetch.add_argument("--force", action="store_true",
                       help="download again even when cached (the cached file stays if the download fails)")
    verify = sub.add_parser("verify", help="check the cache, or say which released file each FILE is")
    verify.add_argument("paths", nargs="*", metavar="FILE", help="files to identify (default: the whole cache)")
    return p


def list_weights() -> list[dict]:
    """One row per registry entry, printed as a table."""
    from models import weights

    rows = []
    for entry in weights.registry().values():
        cached = "yes" if weights.is_cached(entry) else "no" if entry.fetchable else "no (by hand only)"
        rows.append({"name": entry.name, "model": entry.model, "trained on": entry.trained_on,
                     "size": f"{entry.bytes / 1e6:.1f} MB", "cached": cached})
    print(f"cache: {weights.cache_folder()}")
    print(_table(rows))
    return rows


def fetch(names: list[str], fetch_all: bool, force: bool) -> dict[str, Path]:
    from models import weights
    from utils.errors import UsageError

    if fetch_all == bool(names):
        raise UsageError("fetch: give NAME... or --all (not both)")
    entries = ([e for e in weights.registry().values() if e.fetchable] if fetch_all
               else [weights.get(name) for name in names])  # every name checked before any download
    paths = {}
    for entry in entries:
        paths[entry.name] = weights.ensure(entry, force=force)
        print(f"{entry.name}: {paths[entry.name]}")
    return paths


def verify(paths: list[str]) -> list[dict]:
    """Identify the given files, or check every file in the cache; a damaged cached file is an error."""
    from models import weights

    if paths:
        for text in paths:  # all readable before any output
            if not Path(text).is_file():
                raise FileNotFoundError(f"verify: {text} is not a file")
        rows = [_identify(Path(text)) for text in paths]
    else:
        rows = _check_cache()
    print(_table(rows) if rows else f"the cache {weights.cache_folder()} holds no released files")
    bad = [r["file"] for r in rows if r["status"].startswith("DAMAGED")]
    if bad:
        raise weights.WeightsError(f"{len(bad)} cached file(s) do not match the registry: {', '.join(bad)}; "
                                   "fetch them again with `python scripts/weights.py fetch --force NAME`")
    return rows


def _identify(path: Path) -> dict:
    from models import weights

    entry = weights.identify(path)
    if entry is None:
        sha, _, size = weights.digests(path)
        return {"file": str(path), "status": f"not a released file ({size:,} bytes, SHA-256 {sha[:16]}...)"}
    how = "SHA-256" if entry.sha256 else "md5"
    return {"file": str(path), "status": f"{entry.name} ({entry.model}, trained on {entry.trained_on}; {how} matches)"}


def _check_cache() -> list[dict]:
    from models import weights

    rows, known = [], set()
    for entry in weights.registry().values():
        path = weights.cache_path(entry)
        known.add(path)
        if path.is_file():
            problem = weights.mismatch(path, entry)
            rows.append({"file": str(path), "status": f"DAMAGED: {problem}" if problem else f"{entry.name}: ok"})
    folder = weights.cache_folder()
    strays = sorted(p for p in folder.rglob("*") if p.is_file() and p not in known) if folder.is_dir() else []
    rows += [_identify(p) for p in strays]
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items())]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in widths.items()) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        return list_weights()
    if args.command == "fetch":
        return fetch(args.names, args.all, args.force)
    return verify(args.paths)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
