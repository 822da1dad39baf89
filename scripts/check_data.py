"""What data do I hold? Known set versions, folder problems, duplicates and overlaps of dataset folders.

    python scripts/check_data.py Datasets/train Datasets/test/Rain100H Datasets/test/Rain100L --json data.json

For each folder - a set (``input/`` and ``target/``; ``input/`` alone for
real rain) or a plain folder of images - it reports:

* which known set version it is (``data/manifests/``): exact, partial (files
  matched, modified - and of those, re-encoded with the same pixels -,
  missing, extra) or unknown;
* pairing and image problems, from the same checks training runs;
* duplicates among its clean images (targets, else inputs or the plain
  folder's images): ``exact`` (same bytes or pixels) or ``near`` (perceptual
  hash and thumbnail, robust to re-encoding and small crops);

then the clean images shared by every two folders (training and test sets
sharing scenes).  Problems are findings: the exit status is 0 unless a path
cannot be read or is not a dataset folder (1, one ``error:`` line).  See
``docs/DATA.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    from utils.errors import positive_int

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="dataset folders (a set, or a folder of images)")
    p.add_argument("--json", help="also write the findings as JSON to this file")
    p.add_argument("--manifests", default=None,
                   help="folder of manifests of known set versions (default: the project's data/manifests/)")
    p.add_argument("--show", type=int, default=10, help="file names listed per finding (0: all; default 10)")
    p.add_argument("--workers", type=positive_int, default=None, help="reading threads (default: up to 8)")
    return p


def _listing(names: list, show: int) -> str:
    shown = names if show <= 0 else names[:show]
    more = f" ... and {len(names) - len(shown)} more" if len(shown) < len(names) else ""
    return ", ".join(" ".join(n) if isinstance(n, (list, tuple)) else n for n in shown) + more


def _pair_lines(pairs: list, show: int) -> list[str]:
    shown = pairs if show <= 0 else pairs[:show]
    lines = [f"    {a} {'=' if kind == 'exact' else '~'} {b}  ({kind})" for a, b, kind in shown]
    if len(shown) < len(pairs):
        lines.append(f"    ... and {len(pairs) - len(shown)} more")
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def _count(pairs: list) -> str:
    exact = sum(p[2] == "exact" for p in pairs)
    return "none" if not pairs else ", ".join(
        f"{n} {kind}" for n, kind in ((exact, "exact"), (len(pairs) - exact, "near")) if n)


def format_report(folders: list[dict], overlaps: list[dict], show: int) -> str:
    """The terminal report: a summary table, each folder's findings, and the overlaps table."""
    rows = [[f["path"], f["layout"], str(f["pairs"]), f"{f['set']} {f['version']}" if f["set"] else "unknown",
             f["status"], f"{f['matched']}/{f['of']}" if f["set"] else "-",
             *(str(len(f[k])) if f["set"] else "-" for k in ("modified", "missing", "extra")),
             str(len(f["problems"])), _count(f["duplicates"])] for f in folders]
    lines = _table(["folder", "layout", "pairs", "known version", "status", "matched", "modified", "missing",
                    "extra", "problems", "duplicates"], rows)
    for f in folders:
        lines += ["", f"{f['path']}:"]
        if f["set"]:
            lines.append(f"  known version: {f['set']} {f['version']} ({f['kind']} set), {f['status']}: "
                         f"{f['matched']} of {f['of']} files match")
        else:
            held = "; ".join(f"{n} file(s) of {label}" for label, n in f["contains"].items())
            lines.append("  known version: none" + (f" (it holds {held})" if held else ""))
        for key, what in (("modified", "modified (other bytes)"), ("reencoded", "of those, re-encoded (same pixels)"),
                          ("missing", "missing"), ("extra", "extra"), ("renamed", "renamed (same bytes)")):
            if f[key]:
                lines.append(f"  {what}: {len(f[key])}: {_listing(f[key], show)}")
        if f["problems"]:
            lines.append(f"  problems: {len(f['problems'])}")
            lines += [f"    {line}" for p in (f["problems"] if show <= 0 else f["problems"][:show])
                      for line in p.splitlines()]
        lines.append(f"  duplicate clean images: {_count(f['duplicates'])}")
        lines += _pair_lines(f["duplicates"], show)
    if overlaps:
        lines += ["", "clean images shared between folders:"]
        lines += _table(["folder a", "folder b", "exact", "near"],
                        [[o["a"], o["b"], str(o["exact"]), str(o["near"])] for o in overlaps])
        for o in overlaps:
            if o["pairs"]:
                lines += [f"  {o['a']} / {o['b']}:"] + _pair_lines(o["pairs"], show)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from data.manifest import load_manifests
    from data.provenance import DataCheckError, check_folders
    from utils.files import atomic_write

    manifests = load_manifests(args.manifests)
    started, cpu = time.perf_counter(), time.process_time()
    reports, overlaps = check_folders(args.paths, manifests, args.workers)
    if args.json:
        checked = {f.resolve() for r in reports for f in r.files}
        if Path(args.json).resolve() in checked:
            raise DataCheckError(f"--json {args.json} would overwrite a file being checked")
    folders = [r.to_json() for r in reports]
    print(format_report(folders, overlaps, args.show))
    seconds = {"wall": round(time.perf_counter() - started, 2), "cpu": round(time.process_time() - cpu, 2)}
    print(f"\n{sum(r.images for r in reports)} images in {len(reports)} folder(s): "
          f"{seconds['wall']:.1f} s ({seconds['cpu']:.1f} s of CPU)")
    if args.json:
        manifest_dir = str(Path(args.manifests)) if args.manifests else "data/manifests"
        atomic_write(args.json, json.dumps({"folders": folders, "overlaps": overlaps, "manifests": manifest_dir,
                                            "seconds": seconds}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
