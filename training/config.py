"""Training configuration (YACS).

Precedence: the defaults below -> a YAML file (``training.yml`` or
``--config FILE``) -> ``--opts KEY VALUE ...`` -> frozen.  A key that is not
defined here (a typo such as ``OPTIM.LR_INITAL``) is an error naming the key.

The release's key names are kept unchanged (``MODEL.MODE``, ``MODEL.SESSION``,
``OPTIM.BATCH_SIZE``, ``OPTIM.NUM_EPOCHS``, ``OPTIM.LR_INITIAL``,
``OPTIM.LR_MIN``, ``TRAINING.*``) so existing files keep working; everything
else is new and defaults to the release's behaviour.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import torch
from yacs.config import CfgNode as CN

from models import get_model_class
from utils.precision import cpu_has_fast_bf16


class ConfigError(ValueError):
    """A configuration file or command-line option is wrong; the message names the key."""


# Keys of the release's training.yml that nothing here reads: accepted (so its files load) and dropped
# with a warning.  Devices come from --device / torchrun, not GPU.
LEGACY_KEYS = ("GPU", "VERBOSE", "TRAINING.SAVE_IMAGES")
log = logging.getLogger(__name__)


def _drop_legacy(other: CN, source: str) -> None:
    for dotted in LEGACY_KEYS:
        *parents, leaf = dotted.split(".")
        node = other
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            del node[leaf]
            log.warning("%s: %s is a key of the release that nothing here reads; ignored", source, dotted)


def get_default_config() -> CN:
    c = CN()

    c.MODEL = CN()
    c.MODEL.MODE = "Deraining"
    c.MODEL.SESSION = "DMSR"
    c.MODEL.NAME = "DMSR"
    c.MODEL.ARGS = CN(new_allowed=True)  # constructor options, e.g. base_channels: 48 (DMSR speed: efficient_attention, efficient_fft)

    c.LOSS = CN()
    c.LOSS.NAME = "DMSRLoss"
    c.LOSS.ARGS = CN(new_allowed=True)  # e.g. fft_weight: 0.1

    c.OPTIM = CN()
    c.OPTIM.BATCH_SIZE = 12
    c.OPTIM.NUM_EPOCHS = 300
    c.OPTIM.LR_INITIAL = 2e-4
    c.OPTIM.LR_MIN = 1e-6
    c.OPTIM.BETA1 = 0.9
    c.OPTIM.BETA2 = 0.999
    c.OPTIM.EPS = 1e-8
    c.OPTIM.WEIGHT_DECAY = 0.0
    # "warmup_cosine": the DMSR release, per epoch; "exp_decay": MSPFN's
    # lr = LR_INITIAL * DECAY_RATE ** (step / DECAY_STEPS) + LR_MIN, per step;
    # "multistep": PReNet's, lr x GAMMA at each epoch in MILESTONES.
    c.OPTIM.SCHEDULER = "warmup_cosine"
    c.OPTIM.WARMUP_EPOCHS = 3
    c.OPTIM.DECAY_RATE = 0.8
    c.OPTIM.DECAY_STEPS = 20000
    c.OPTIM.MILESTONES = [30, 50, 80]
    c.OPTIM.GAMMA = 0.2
    c.OPTIM.GRAD_CLIP = 0.0  # max gradient norm; 0 = off (release)
    c.OPTIM.FUSED = False  # fused/foreach Adam kernels (fast path)

    c.TRAINING = CN()
    c.TRAINING.VAL_AFTER_EVERY = 1
    c.TRAINING.VAL_SAVE_EVERY = 50  # keep model_epoch_N.pth every N epochs (0 = never)
    c.TRAINING.RESUME = False
    c.TRAINING.TRAIN_PS = 64
    c.TRAINING.VAL_PS = 64  # centre-crop size for validation (0 = whole image)
    c.TRAINING.TRAIN_DIR = "./Datasets/Synthetic_Rain_Datasets/train"
    c.TRAINING.VAL_DIR = "./Datasets/Synthetic_Rain_Datasets/test/Rain100L"
    c.TRAINING.SAVE_DIR = "./checkpoints"
    c.TRAINING.STORE = ""  # optional pre-decoded store of TRAIN_DIR (scripts/build_store.py)
    c.TRAINING.NUM_WORKERS = 4
    c.TRAINING.SEED = 0
    c.TRAINING.DETERMINISTIC = False  # torch.use_deterministic_algorithms (exact resume tests)
    c.TRAINING.EARLY_STOP_PATIENCE = 40  # epochs without a better validation score; 0 = off
    c.TRAINING.VAL_METRIC = "psnr_rgb"  # "psnr_rgb" (release) or "psnr_y"
    c.TRAINING.MAX_STEPS_PER_EPOCH = 0  # 0 = a full pass over the data
    c.TRAINING.LOG_EVERY = 50  # steps between TensorBoard/log scalars
    c.TRAINING.NAN_PATIENCE = 20  # consecutive non-finite losses before stopping

    c.FAST = CN()  # all off by default: the default reproduces the release
    c.FAST.AMP = ""  # "", "bf16" or "fp16"
    c.FAST.CHANNELS_LAST = False
    c.FAST.COMPILE = False
    c.FAST.CUDNN_BENCHMARK = False
    c.FAST.EMA = 0.0  # EMA decay of the weights, e.g. 0.999; 0 = off
    c.FAST.SYNC_BN = False
    c.FAST.PIN_MEMORY = True
    return c


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _check_keys(cfg: CN, other: CN, prefix: str = "") -> None:
    for key, value in other.items():
        full = f"{prefix}{key}"
        if key not in cfg:
            if getattr(cfg, "__dict__", {}).get(CN.NEW_ALLOWED, False):
                continue
            known = ", ".join(sorted(k for k in cfg.keys()))
            raise ConfigError(f"unknown config key {full!r} (known keys here: {known})")
        if isinstance(value, dict) and isinstance(cfg[key], CN):
            _check_keys(cfg[key], value, f"{full}.")


def load_config(config_file: str | None = None, opts: list[str] | None = None, freeze: bool = True) -> CN:
    """Defaults -> YAML file -> KEY VALUE overrides -> frozen config."""
    cfg = get_default_config()
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with open(path) as f:
            try:
                other = cfg.load_cfg(f)
            except Exception as err:  # noqa: BLE001 - yaml raises several parser errors
                raise ConfigError(f"{path}: not a valid YAML config: {err}") from None
        _drop_legacy(other, str(path))
        _check_keys(cfg, other)
        try:
            cfg.merge_from_other_cfg(other)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: {err}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"--opts needs KEY VALUE pairs, got an odd number of items: {opts}")
        for key, value in zip(opts[0::2], opts[1::2]):
            _set(cfg, key, value)
    validate(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def _set(cfg: CN, dotted: str, raw: str) -> None:
    node = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        if part not in node or not isinstance(node[part], CN):
            raise ConfigError(f"unknown config key {dotted!r} (no section {'.'.join(parts[:i + 1])!r})")
        node = node[part]
    leaf = parts[-1]
    value = _literal(raw) if isinstance(raw, str) else raw
    if leaf not in node:
        if not node.__dict__.get(CN.NEW_ALLOWED, False):
            raise ConfigError(f"unknown config key {dotted!r}")
        node[leaf] = value
        return
    old = node[leaf]
    if isinstance(old, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(old, bool):
            raise ConfigError(f"config key {dotted!r} expects {type(old).__name__}, got {raw!r}")
    elif isinstance(old, float) and isinstance(value, int):
        value = float(value)
    elif isinstance(old, str) and not isinstance(value, str):
        value = str(raw)
    elif type(old) is not type(value) and not (isinstance(old, (list, tuple)) and isinstance(value, (list, tuple))):
        raise ConfigError(f"config key {dotted!r} expects {type(old).__name__}, got {raw!r}")
    node[leaf] = value


def validate(cfg: CN) -> None:
    if cfg.OPTIM.SCHEDULER not in ("warmup_cosine", "exp_decay", "multistep"):
        raise ConfigError("OPTIM.SCHEDULER must be 'warmup_cosine', 'exp_decay' or 'multistep', "
                          f"got {cfg.OPTIM.SCHEDULER!r}")
    if cfg.FAST.AMP not in ("", "bf16", "fp16"):
        raise ConfigError(f"FAST.AMP must be '', 'bf16' or 'fp16', got {cfg.FAST.AMP!r}")
    if cfg.TRAINING.VAL_METRIC not in ("psnr_rgb", "psnr_y"):
        raise ConfigError(f"TRAINING.VAL_METRIC must be 'psnr_rgb' or 'psnr_y', got {cfg.TRAINING.VAL_METRIC!r}")
    for key in ("BATCH_SIZE", "NUM_EPOCHS"):
        if cfg.OPTIM[key] < 1:
            raise ConfigError(f"OPTIM.{key} must be at least 1, got {cfg.OPTIM[key]}")
    if cfg.OPTIM.SCHEDULER == "warmup_cosine" and not 0 <= cfg.OPTIM.WARMUP_EPOCHS < cfg.OPTIM.NUM_EPOCHS:
        raise ConfigError("OPTIM.WARMUP_EPOCHS must be smaller than OPTIM.NUM_EPOCHS")
    if cfg.TRAINING.TRAIN_PS < 1:
        raise ConfigError(f"TRAINING.TRAIN_PS must be positive, got {cfg.TRAINING.TRAIN_PS}")


def config_to_dict(cfg: CN) -> dict:
    out = {}
    for k, v in cfg.items():
        out[k] = config_to_dict(v) if isinstance(v, CN) else v
    return out


def fast_opts(device: torch.device | str, model_name: str = "DMSR") -> list[str]:
    """The config overrides (``KEY VALUE ...``) of the fastest measured setting on ``device`` (``--fast``).

    CUDA: bf16 autocast (fp16 where bf16 is missing), channels-last,
    torch.compile, fused Adam, cudnn.benchmark.  CPU: channels-last and
    foreach Adam, plus bf16 autocast when the CPU has native bf16 kernels
    (without them bf16 is slower than fp32); torch.compile is left off on the
    CPU (minutes of compilation for about 10%).  Plus the model's own exact
    speed options (its spec's ``fast_opts``; DMSR: interleave-free pixel
    attention and one-copy Fourier unit).
    """
    device = torch.device(device)
    opts = ["FAST.CHANNELS_LAST", "True", "OPTIM.FUSED", "True"]
    for key, value in get_model_class(model_name).spec.fast_opts.items():
        opts += [f"MODEL.ARGS.{key}", repr(value)]
    if device.type == "cuda":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        opts += ["FAST.AMP", amp, "FAST.COMPILE", "True", "FAST.CUDNN_BENCHMARK", "True"]
    elif cpu_has_fast_bf16():
        opts += ["FAST.AMP", "bf16"]
    return opts
