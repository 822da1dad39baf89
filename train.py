"""Train a deraining model.

    python train.py                                   # training.yml: the DMSR paper recipe
    python train.py --config configs/demo.yml         # small DMSR on the built-in demo data
    python train.py --opts OPTIM.BATCH_SIZE 8 MODEL.SESSION DMSR_b8
    python train.py --fast                            # the measured fastest exact-enough switches
    python train.py --resume                          # continue from model_latest.pth
    torchrun --nproc_per_node 4 train.py              # 4 GPUs (DistributedDataParallel)

Checkpoints, the resolved config, the log and TensorBoard files go to
``<TRAINING.SAVE_DIR>/<MODEL.MODE>/<MODEL.SESSION>/``.  A session folder
holds one run: it is locked while the run writes to it, and a new run
(without --resume) refuses a folder that already holds checkpoints.

Exit status: 0 when the run finished (early stopping included), 1 with an
"error:" line for bad input (a config error names the key), 143 when
SIGTERM/SIGINT stopped it after saving model_latest.pth (continue with
--resume), and 130 for Ctrl-C during the start-up checks.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.config import load_config
from training.run_state import EXIT_STOPPED

DEFAULT_CONFIG = Path(__file__).resolve().parent / "training.yml"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train DMSR / MSPFN / PReNet for single-image deraining.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config", default=None,
                        help=f"YAML config (default: {DEFAULT_CONFIG.name} next to train.py)")
    parser.add_argument("--opts", nargs="+", default=None, metavar="KEY VALUE",
                        help="config overrides, e.g. --opts OPTIM.NUM_EPOCHS 10 TRAINING.NUM_WORKERS 2")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--fast", action="store_true",
                        help="turn on the fastest exact-enough speed switches measured for the device "
                             "(mixed precision, channels-last, fused Adam, the model's exact fast options; "
                             "torch.compile on CUDA) - recorded in config.yaml; --opts still override")
    parser.add_argument("--resume", action="store_true",
                        help="continue from model_latest.pth of this session (same as TRAINING.RESUME True)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Train; returns the run's summary.

    Bad input raises a :class:`~utils.errors.UserError` (a config error
    names the key) or an ``OSError``; :func:`utils.errors.run_cli` prints it
    as one ``error:`` line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.raiseExceptions = False  # a full disk must not print a traceback for every line of train.log
    config = args.config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None)
    cfg = load_config(config, args.opts)

    from training.trainer import Trainer
    from utils.distributed import cleanup, init_distributed

    try:
        dist, device = init_distributed(args.device)
        if args.fast:
            from training.config import fast_opts

            switches = fast_opts(device, cfg.MODEL.NAME)
            cfg = load_config(config, switches + list(args.opts or []))
            if dist.is_main:
                logging.info("--fast on %s: %s", device, " ".join(switches))
        if not dist.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        trainer = Trainer(cfg, device, dist, argv)
    except BaseException:
        cleanup()
        raise
    try:
        return trainer.fit(resume=args.resume)
    finally:
        trainer.close()
        cleanup()


def exit_status(summary: dict) -> int:
    """0 for a finished run (early stopping included), EXIT_STOPPED for one stopped by SIGTERM/SIGINT."""
    return EXIT_STOPPED if summary.get("stopped_by") not in (None, "early_stopping") else 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(lambda: exit_status(main()), memory_advice="lower OPTIM.BATCH_SIZE or TRAINING.TRAIN_PS (patch size), "
                                                       "or TRAINING.NUM_WORKERS")
