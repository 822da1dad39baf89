"""Derain your own photos.

    python derain.py photo.jpg more_photos/ --model DMSR --weights checkpoints/DMSR/model_best.pth --out derained/

Takes image files and folders (``--recursive`` for sub-folders) of any size
and of any format OpenCV reads (PNG, JPEG, BMP, TIFF, WebP; grayscale, RGBA
and 16-bit included - they are derained as 8-bit RGB).  Photos are turned
upright according to their EXIF orientation first, so the output looks the
way the photo is displayed.  Outputs go to ``--out`` as ``<name>.png``
(folder structure kept), with ``--side-by-side`` also ``<name>_before_after.png``
showing input and output next to each other.  Large photos are processed in
windows (``--tile``; the model's default, 128 for DMSR), so memory stays
bounded.  A file that cannot be read is reported and skipped; the others
are still derained, and the command then fails listing the bad files.
``--weights`` also takes the name of an authors' released file, e.g.
``--weights PReNet/Rain100H`` (``docs/MODEL_ZOO.md``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from natsort import natsorted
from tqdm import tqdm

from inference.runner import (
    add_model_arguments,
    derain_image,
    load_model,
    parse_model_opts,
    resolve_device,
)
from inference.windows import check_tile
from models import spec_of
from utils.errors import UsageError
from utils.image_io import ImageReadError, is_image_file, list_images, read_image, write_image

log = logging.getLogger("derain")
COMPARE_SUFFIX = "_before_after"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images")
    add_model_arguments(p)
    p.add_argument("--out", default="derained", help="output folder (default: derained/)")
    p.add_argument("--ext", default="png", choices=["png", "jpg", "bmp", "tif", "webp"], help="output format")
    p.add_argument("--side-by-side", "--side_by_side", action="store_true",
                   help="also write <name>_before_after.<ext>: input | output")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder arguments")
    return p


def collect_jobs(paths: list[str], out_dir: Path, ext: str, recursive: bool,
                 side_by_side: bool = False) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every image named or found in the given folders; clashes are errors.

    No output (nor, with ``side_by_side``, comparison image) may overwrite an
    input, another output, or any file in a folder the inputs come from.
    """
    jobs = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            if recursive:
                files = natsorted((p for p in path.rglob("*") if p.is_file() and is_image_file(p)), key=str)
            else:
                files = list_images(path)
            if not files:
                log.warning("no images in %s", path)
            jobs += [(f, out_dir / f.relative_to(path).with_suffix(f".{ext}")) for f in files]
        elif path.is_file():
            jobs.append((path, out_dir / f"{path.stem}.{ext}"))
        elif path.exists():
            raise UsageError(f"{path} is neither an image file nor a folder")
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not jobs:
        raise FileNotFoundError(f"no images found in {', '.join(paths)}")
    inputs = {src.resolve() for src, _ in jobs}
    photo_folders = {key.parent for key in inputs}  # an existing file there is a photo, not an earlier output
    seen: dict[Path, Path] = {}
    for src, dst in jobs:
        for out in (dst, compare_path(dst)) if side_by_side else (dst,):
            key = out.resolve()
            if key in inputs or (key.parent in photo_folders and out.exists()):
                raise UsageError(f"output {out} would overwrite an input image; choose another --out")
            if key in seen:
                raise UsageError(f"{seen[key]} and {src} would both be written to {out}")
            seen[key] = src
    return jobs


def compare_path(dst: Path) -> Path:
    """Where ``--side-by-side`` writes the input | output image of output ``dst``."""
    return dst.with_name(f"{dst.stem}{COMPARE_SUFFIX}{dst.suffix}")


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 8) -> np.ndarray:
    """Input and output next to each other, separated by a white ``gap``."""
    spacer = np.full((before.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([before, spacer, after], axis=1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    jobs = collect_jobs(args.paths, Path(args.out), args.ext, args.recursive, args.side_by_side)
    model, name = load_model(args.model, args.weights, parse_model_opts(args.model_opts), device, args.ema,
                             fast=args.fast)
    tile = args.tile if args.tile is not None else spec_of(model).default_tile
    check_tile(model, tile)

    failed = []
    for src, dst in tqdm(jobs, desc=name, unit="img", disable=not sys.stderr.isatty()):
        try:
            img = read_image(src)
        except ImageReadError as err:
            log.error("%s", err)
            failed.append(str(src))
            continue
        result = derain_image(model, img, device, tile, args.max_batch, args.quantize, amp=args.amp)
        write_image(dst, result)
        if args.side_by_side:
            write_image(compare_path(dst), side_by_side(img, result))
    log.info("%d of %d images derained into %s", len(jobs) - len(failed), len(jobs), args.out)
    if failed:
        raise ImageReadError(f"{len(failed)} image(s) could not be read and were skipped: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
