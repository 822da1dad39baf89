"""Convert the MSPFN authors' TensorFlow weights into a checkpoint of this project.

    python scripts/convert_mspfn_tf.py --ckpt MSPFN/epoch50 --variant m17n1 --out checkpoints/MSPFN_M17N1.pth
    python scripts/convert_mspfn_tf.py --npz variables.npz --variant m17 --out checkpoints/MSPFN_M17.pth

``--ckpt`` takes a TensorFlow Saver checkpoint by its prefix (the files
``PREFIX.index`` and ``PREFIX.data-*``; a folder means its latest checkpoint)
and reads it with TensorFlow's own checkpoint reader - TensorFlow is an
optional extra (``pip install tensorflow-cpu``), needed for this option only.
``--npz`` takes a NumPy archive of the variables instead (name -> array, the
TensorFlow names with or without ``:0``).  ``--variant`` is ``m17n1`` for the
released test model (``epoch50``) or ``m17`` for the training code's model.

The result carries the model name and options (``convention="release"``), so
``python test.py --weights FILE.pth`` and ``python derain.py IMAGES --weights
FILE.pth`` run it as the release's test script does: BGR in [-1, 1], the whole
image, 8 bits by truncation.  Unknown, missing or mis-shaped variables, and
variables that are not real, finite numbers (NaN, infinity, complex), are an
error naming them, and nothing is written.  ``--out`` is checked first: it
is never one of the files read, and an existing file is replaced only with
``--force``.  The name mapping lives in :mod:`models.mspfn_tf`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable

from utils.errors import UserError  # noqa: E402 - after the path set-up above

log = logging.getLogger("convert_mspfn_tf")

TF_MISSING = ("reading a TensorFlow checkpoint (--ckpt) needs TensorFlow, an optional extra that is not in "
              "requirements.txt: pip install tensorflow-cpu (or export the variables to a .npz and use --npz)")


class ConversionInputError(UserError, ValueError):
    """The input cannot be read; one line naming the file and why."""


class CheckpointVariables(Mapping):
    """The variables of a TensorFlow checkpoint, read on access with TensorFlow's checkpoint reader."""

    def __init__(self, reader):
        self._reader = reader
        self._shapes = reader.get_variable_to_shape_map()

    def __getitem__(self, name: str):
        if name not in self._shapes:
            raise KeyError(name)
        return self._reader.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._shapes))

    def __len__(self) -> int:
        return len(self._shapes)


def read_tf_checkpoint(prefix: str) -> Mapping:
    """Name -> array of a TensorFlow checkpoint, via ``tf.train.load_checkpoint``."""
    path = Path(prefix)
    if not (path.is_dir() or Path(f"{prefix}.index").is_file()):
        raise ConversionInputError(f"no TensorFlow checkpoint at {prefix} (expected {prefix}.index and "
                                   f"{prefix}.data-00000-of-00001, or a folder holding a 'checkpoint' file)")
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionInputError(TF_MISSING) from None
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionInputError(f"{prefix}: TensorFlow cannot read this checkpoint: {first[:300]}") from None
    return CheckpointVariables(reader)


def read_npz(path: str) -> dict:
    """Name -> array of a NumPy ``.npz`` archive (no pickled objects)."""
    import numpy as np

    if Path(path).is_dir():
        raise ConversionInputError(f"--npz {path} is a folder, not a .npz archive")
    if not Path(path).is_file():
        raise ConversionInputError(f"no such file: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConversionInputError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConversionInputError(f"{path}: holds a single array, not a .npz archive of named variables")
    with archive:
        try:
            return {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ConversionInputError(f"{path}: a variable cannot be read ({type(err).__name__}: {err})") from None


def build_parser() -> argparse.ArgumentParser:
    from models.mspfn_tf import VARIANTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", metavar="PREFIX", help="TensorFlow checkpoint prefix, e.g. MSPFN/epoch50")
    source.add_argument("--npz", metavar="FILE", help="NumPy archive of the TensorFlow variables")
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS),
                   help="m17n1: the released test model (CAUs 1/1/1); m17: the training code's model (1/3/3)")
    p.add_argument("--out", required=True, metavar="FILE.pth", help="checkpoint to write (this project's format)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p


def source_files(args: argparse.Namespace) -> list[Path]:
    """The files the conversion reads: the archive, or the checkpoint's files (its folder's, for a folder)."""
    if args.npz is not None:
        return [Path(args.npz)]
    prefix = Path(args.ckpt)
    if prefix.is_dir():
        return [p for p in prefix.iterdir() if p.is_file()]
    if not prefix.parent.is_dir():
        return []
    return [p for p in prefix.parent.iterdir() if p.name == prefix.name or p.name.startswith(f"{prefix.name}.")]


def main(argv: list[str] | None = None) -> int:
    from models import build_model
    from models.mspfn_tf import convert_release_variables
    from utils.checkpoint import FORMAT_NAME, FORMAT_VERSION, save_checkpoint
    from utils.files import check_output_file

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = check_output_file(args.out, "--out", source_files(args), force=args.force)
    source = args.ckpt if args.ckpt is not None else args.npz
    variables = read_tf_checkpoint(args.ckpt) if args.ckpt is not None else read_npz(args.npz)
    conversion = convert_release_variables(variables, args.variant)
    model = build_model("MSPFN", **conversion.model_kwargs)
    model.load_state_dict(conversion.state_dict, strict=True)
    save_checkpoint({
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model_name": "MSPFN",
        "model_kwargs": conversion.model_kwargs,
        "model": conversion.state_dict,
        "converted_from": {"source": str(source), "variant": args.variant, "scope": conversion.scope},
    }, out)
    log.info("wrote %s: MSPFN %s, %d TensorFlow variables (scope %s/), %s parameters%s", out, args.variant,
             len(conversion.state_dict), conversion.scope, f"{sum(p.numel() for p in model.parameters()):,}",
             f"; skipped {len(conversion.skipped)} optimizer-state entries" if conversion.skipped else "")
    log.info("run it: python test.py --weights %s --input_dir DIR   or   python derain.py IMAGES --weights %s",
             out, out)
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
