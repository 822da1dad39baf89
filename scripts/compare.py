"""Visual comparison of deraining results: a paper figure (PNG) and an HTML page for the whole set.

    python scripts/compare.py --methods PReNet=results/PReNet/Rain100H DMSR=results/DMSR/Rain100H \\
        --input Datasets/.../Rain100H/input --target Datasets/.../Rain100H/target \\
        --images 001 042 --out compare/Rain100H

writes ``compare/Rain100H/figure.png`` (one row per chosen image: input,
each method, target; the same region magnified in every panel; Y-channel
PSNR/SSIM under each panel, or NIQE when there are no targets) and
``compare/Rain100H/index.html`` with ``images/`` beside it: every image of
the set, a sortable score table, a before/after slider and the magnified
regions, working offline (``--embed`` puts the images inside the HTML file).

Files pair by name with the inputs; a method folder missing an image, an
unreadable file or images of different sizes are errors naming the files, as
is an ``--out`` that is (or holds) a folder read from.  An image NIQE is
undefined for (too small or flat) is named in a warning and shown as such.
The magnified region is ``--zoom X Y W H`` (input pixels, the same for every
image) or, by default, per image the square where the first method changed
the input most.
"""
from __future__ import annotations

import argparse
import base64
import logging
import sys
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("compare")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", required=True, metavar="NAME=DIR",
                   help="result folders, in panel order (a bare DIR is named by its parent folder)")
    p.add_argument("--input", required=True, help="folder of the rainy inputs")
    p.add_argument("--target", help="folder of the ground truth (omit for real rain: NIQE is shown)")
    p.add_argument("--out", required=True, help="output folder (figure.png, index.html, images/)")
    p.add_argument("--images", nargs="+", metavar="NAME",
                   help="images for the figure, by file name or stem (default: the first three)")
    p.add_argument("--zoom", nargs=4, type=int, metavar=("X", "Y", "W", "H"),
                   help="region to magnify, in input pixels (default: chosen per image)")
    p.add_argument("--panel-width", type=int, default=320, help="width of each figure panel in pixels")
    p.add_argument("--title", help="page title (default: the panel names)")
    p.add_argument("--embed", action="store_true", help="put the images inside index.html as data URIs")
    p.add_argument("--no-html", action="store_true", help="only write the figure")
    return p


def _pick(scenes, wanted):
    """Scenes for the figure: by file name, stem or pairing key, in the order asked."""
    from data.folders import pair_key
    from metrics.compare.collect import INPUT
    from utils.errors import UsageError

    if not wanted:
        return scenes[:3]
    index = {}
    for s in scenes:
        path = s.files[INPUT]
        for k in (path.name, path.stem, pair_key(path.name)):
            index.setdefault(k, s)
    missing = [w for w in wanted if w not in index]
    if missing:
        raise UsageError(f"--images: no input named {', '.join(missing)}")
    return [index[w] for w in wanted]


def _image_src(out: Path, key: str, name: str, img, embed: bool) -> str:
    """Where the page finds one panel's image: a PNG under ``out/images/`` (relative link) or a data URI."""
    import cv2

    from metrics.compare.collect import slug
    from utils.image_io import write_image

    if embed:
        ok, buf = cv2.imencode(".png", img[:, :, ::-1])
        if not ok:
            raise OSError(f"cannot encode {name} {key} as PNG")
        return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
    rel = Path("images") / slug(name) / f"{key}.png"
    write_image(out / rel, img)
    return quote(rel.as_posix())  # a URL: '#', '%' or '?' in a file name must not end or change it


def main(argv: list[str] | None = None) -> dict:
    from tqdm import tqdm

    from metrics.compare.collect import auto_zoom, check_zoom, collect, load, parse_method, score
    from metrics.compare.figure import figure
    from metrics.compare.page import build_page
    from utils.files import atomic_write, check_output_folder
    from utils.image_io import write_image

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    methods = [parse_method(m) for m in args.methods]
    reads = [("--input", Path(args.input))] + [(f"{name} method", folder) for name, folder in methods]
    out = check_output_folder(args.out, "--out", reads + ([("--target", Path(args.target))] if args.target else []))
    scenes = collect(Path(args.input), methods, Path(args.target) if args.target else None)
    chosen = _pick(scenes, args.images)
    todo = scenes if not args.no_html else chosen
    first = methods[0][0]
    keep = {id(s) for s in chosen}
    zooms, srcs = [], []
    for scene in tqdm(todo, desc="scoring", unit="img", disable=not sys.stderr.isatty()):
        score(load(scene))
        zooms.append(check_zoom(args.zoom, scene.size, scene.key) if args.zoom else auto_zoom(scene, first))
        if not args.no_html:
            srcs.append({name: _image_src(out, scene.key, name, img, args.embed)
                         for name, img in scene.images.items()})
        if id(scene) not in keep:
            scene.images.clear()  # a whole test set need not fit in memory

    fig_path = out / "figure.png"
    zoom_of = {id(s): z for s, z in zip(todo, zooms)}
    write_image(fig_path, figure(chosen, [zoom_of[id(s)] for s in chosen], args.panel_width))
    written = {"figure": str(fig_path)}
    if not args.no_html:
        title = args.title or " vs ".join(scenes[0].files)
        atomic_write(out / "index.html", build_page(todo, srcs, zooms, title))
        written["html"] = str(out / "index.html")
    log.info("wrote %s", ", ".join(written.values()))
    return written


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main, memory_advice="leave out --embed (it keeps every image in memory), or add --no-html")
