"""Train a deraining model.

    python train.py                                   # training.yml: the DMSR paper recipe
    python train.py --config configs/demo.yml         # small DMSR on the built-in demo data
    python train.py --opts OPTIM.BATCH_SIZE 8 MODEL.SESSION DMSR_b8
    python train.py --fast                            # the measured fastest exact-enough switches
    python train.py --resume                          # continue from model_latest.pth
    torchrun --nproc_per_node 4 train.py              # 4 GPUs (DistributedDataParallel)

Checkpoints, the resolved config, the log and TensorBoard files go to
``<TRAINING.SAVE_DIR>/<MODEL.MODE>/<MODEL.SESSION>/``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.config import ConfigError, load_config
from utils.checkpoint import CheckpointError

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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    config = args.config or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None)
    try:
        cfg = load_config(config, args.opts)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None

    from data import DatasetError
    from data.folders import PairingError
    from training.trainer import Trainer, TrainingError
    from utils.distributed import cleanup, init_distributed

    try:
        dist, device = init_distributed(args.device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.fast:
        from training.config import fast_opts

        switches = fast_opts(device, cfg.MODEL.NAME)
        try:
            cfg = load_config(config, switches + list(args.opts or []))
        except ConfigError as err:
            raise SystemExit(f"config error: {err}") from None
        if dist.is_main:
            logging.info("--fast on %s: %s", device, " ".join(switches))
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        trainer = Trainer(cfg, device, dist, argv)
    except (KeyError, TypeError) as err:  # unknown MODEL.NAME / LOSS.NAME, or options they do not take
        cleanup()
        raise SystemExit(f"config error: {err.args[0] if err.args else err}") from None
    except (TrainingError, DatasetError, PairingError, FileNotFoundError) as err:
        cleanup()
        raise SystemExit(f"error: {err}") from None
    try:
        return trainer.fit(resume=args.resume)
    except (TrainingError, DatasetError, PairingError, CheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    finally:
        cleanup()


if __name__ == "__main__":
    main()
