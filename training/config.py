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
import math
from pathlib import Path

import torch
import yaml
from yacs.config import CfgNode as CN

from models import ModelOptionError, check_model, get_model_class, spec_of
from utils.errors import UnknownNameError, UserError
from utils.precision import cpu_has_fast_bf16


class ConfigError(UserError, ValueError):
    """A configuration file or command-line option is wrong; the message names the key."""


MAX_PATCH = 4096  # largest TRAINING.TRAIN_PS (a batch of 12 such patches is 2.4 GB of float32)
MAX_VAL_PATCH = 16384  # largest TRAINING.VAL_PS (0 = whole images)

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
    # Validation through the test-time window protocol with windows of this size (0 = the crop or image at once).
    # Models with global (FFT) mixing and batch norm, like DMSR, are best validated at the size they train on.
    c.TRAINING.VAL_TILE = 0
    c.TRAINING.TRAIN_DIR = "./Datasets/Synthetic_Rain_Datasets/train"
    c.TRAINING.VAL_DIR = "./Datasets/Synthetic_Rain_Datasets/test/Rain100L"
    # Validation pairs held back from TRAIN_DIR instead of VAL_DIR: a count (20) or a fraction (0.1); 0 = off
    # (the release validates on VAL_DIR, a test set).  The split depends only on the pairs and VAL_SPLIT_SEED.
    c.TRAINING.VAL_SPLIT = 0.0
    c.TRAINING.VAL_SPLIT_SEED = 0
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
    # BatchNorm statistics recomputed on this many fixed training patches before each validation (and so in
    # the saved checkpoints): removes the noise small batches leave in them; 0 = off (the release)
    c.TRAINING.PRECISE_BN = 0

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


MAX_CONFIG_BYTES = 1_000_000


def read_yaml_config(path: Path) -> dict:
    """The mapping a YAML config file holds, parsed safely.

    Only ``.yml``/``.yaml`` files are read, always with ``yaml.safe_load``
    (YACS would *run* a ``.py`` config); tags that build Python objects,
    aliases (``&``/``*``, the "billion laughs" expansion) and anything but a
    mapping at the top are refused with a :class:`ConfigError` naming the file.
    """
    if path.suffix.lower() not in (".yml", ".yaml"):
        raise ConfigError(f"{path}: a config must be a YAML file ending in .yml or .yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else f"{path} is not a file")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes, too large for a config")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except OSError as err:
        raise ConfigError(f"cannot read the config {path}: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not a valid YAML config ({_yaml_problem(err)})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold sections (MODEL:, OPTIM:, ...), found a {type(data).__name__}")
    _check_tree(data, path, set())
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line saying where and what a YAML error is (PyYAML's own message spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _check_tree(node, path: Path, seen: set[int], key: str = "", depth: int = 0) -> None:
    """Refuse aliased (shared) mappings and lists, values YACS cannot hold, and absurd nesting."""
    if not isinstance(node, (dict, list)):
        if node is not None and not isinstance(node, (str, int, float, bool)):
            raise ConfigError(f"{path}: {key or 'the file'} holds a {type(node).__name__}; configs hold "
                              "numbers, strings, booleans and lists")
        return
    if id(node) in seen:
        raise ConfigError(f"{path}: YAML aliases (&name / *name) are not supported in configs")
    if depth > 8:
        raise ConfigError(f"{path}: nested too deeply to be a config")
    seen.add(id(node))
    items = node.items() if isinstance(node, dict) else ((f"[{i}]", v) for i, v in enumerate(node))
    for name, child in items:
        _check_tree(child, path, seen, f"{key}.{name}" if key and isinstance(node, dict) else f"{key}{name}",
                    depth + 1)


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
        other = CN(read_yaml_config(path))
        _drop_legacy(other, str(path))
        _check_keys(cfg, other)
        try:
            _merge(cfg, other)
        except ConfigError as err:
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


def _merge(cfg: CN, other: dict, node: CN | None = None, prefix: str = "") -> None:
    """Set every leaf of a YAML mapping through :func:`_set`, which checks each key and value type."""
    node = cfg if node is None else node
    for key, value in other.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(node.get(key), CN):
            _merge(cfg, value, node[key], f"{dotted}.")
        else:
            _set(cfg, dotted, value)


def _set(cfg: CN, dotted: str, raw) -> None:
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


def _fail(key: str, rule: str, value) -> None:
    raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _int(cfg: CN, key: str, low: int, high: int | None = None) -> None:
    value = cfg[key.split(".")[0]][key.split(".")[1]]
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        _fail(key, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""), value)


def _real(cfg: CN, key: str, low: float, high: float = math.inf, low_open: bool = False,
          high_open: bool = False) -> None:
    value = cfg[key.split(".")[0]][key.split(".")[1]]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            value < low or value > high or (low_open and value == low) or (high_open and value == high):
        rule = f"a finite number {'>' if low_open else '>='} {low}"
        if high < math.inf:
            rule += f" and {'<' if high_open else '<='} {high}"
        _fail(key, rule, value)


def _folder_name(key: str, value) -> None:
    if not isinstance(value, str) or value.strip() in ("", ".", "..") or any(c in value for c in "/\\\0"):
        _fail(key, "a plain folder name (no '/', not '.' or '..')", value)


def validate(cfg: CN) -> None:
    """Check every key's type and range; a :class:`ConfigError` names the first bad one."""
    choices = {"OPTIM.SCHEDULER": ("warmup_cosine", "exp_decay", "multistep"), "FAST.AMP": ("", "bf16", "fp16"),
               "TRAINING.VAL_METRIC": ("psnr_rgb", "psnr_y")}
    for key, allowed in choices.items():
        value = cfg[key.split(".")[0]][key.split(".")[1]]
        if value not in allowed:
            _fail(key, " or ".join(repr(a) for a in allowed), value)
    for key in ("MODEL.MODE", "MODEL.SESSION"):
        _folder_name(key, cfg.MODEL[key.split(".")[1]])
    for key in ("OPTIM.BATCH_SIZE", "OPTIM.NUM_EPOCHS", "OPTIM.DECAY_STEPS", "TRAINING.LOG_EVERY",
                "TRAINING.NAN_PATIENCE"):
        _int(cfg, key, 1)
    for key in ("OPTIM.WARMUP_EPOCHS", "TRAINING.VAL_AFTER_EVERY", "TRAINING.VAL_SAVE_EVERY",
                "TRAINING.EARLY_STOP_PATIENCE", "TRAINING.MAX_STEPS_PER_EPOCH"):
        _int(cfg, key, 0)
    _int(cfg, "TRAINING.TRAIN_PS", 1, MAX_PATCH)
    _int(cfg, "TRAINING.VAL_PS", 0, MAX_VAL_PATCH)
    _int(cfg, "TRAINING.VAL_TILE", 0, MAX_VAL_PATCH)
    _int(cfg, "TRAINING.NUM_WORKERS", 0, 256)
    _int(cfg, "TRAINING.PRECISE_BN", 0, 100_000)
    _int(cfg, "TRAINING.SEED", 0, 2**32 - 1)  # numpy's global seed takes 32 bits
    _int(cfg, "TRAINING.VAL_SPLIT_SEED", 0, 2**63 - 1)
    _real(cfg, "TRAINING.VAL_SPLIT", 0.0)
    if cfg.TRAINING.VAL_SPLIT >= 1 and cfg.TRAINING.VAL_SPLIT != math.floor(cfg.TRAINING.VAL_SPLIT):
        _fail("TRAINING.VAL_SPLIT", "a whole number of pairs (>= 1), a fraction below 1, or 0 (off)",
              cfg.TRAINING.VAL_SPLIT)
    _real(cfg, "OPTIM.LR_INITIAL", 0.0, low_open=True)
    _real(cfg, "OPTIM.LR_MIN", 0.0, cfg.OPTIM.LR_INITIAL)
    for key in ("OPTIM.BETA1", "OPTIM.BETA2"):
        _real(cfg, key, 0.0, 1.0, high_open=True)
    _real(cfg, "OPTIM.EPS", 0.0, low_open=True)
    for key in ("OPTIM.WEIGHT_DECAY", "OPTIM.GRAD_CLIP"):
        _real(cfg, key, 0.0)
    _real(cfg, "OPTIM.DECAY_RATE", 0.0, low_open=True)
    _real(cfg, "OPTIM.GAMMA", 0.0, low_open=True)
    _real(cfg, "FAST.EMA", 0.0, 1.0, high_open=True)
    milestones = list(cfg.OPTIM.MILESTONES)
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones) or \
            milestones != sorted(set(milestones)):
        _fail("OPTIM.MILESTONES", "increasing epoch numbers >= 1", cfg.OPTIM.MILESTONES)
    if cfg.OPTIM.SCHEDULER == "warmup_cosine" and not cfg.OPTIM.WARMUP_EPOCHS < cfg.OPTIM.NUM_EPOCHS:
        raise ConfigError("OPTIM.WARMUP_EPOCHS must be smaller than OPTIM.NUM_EPOCHS")
    for key in ("TRAINING.TRAIN_DIR", "TRAINING.SAVE_DIR"):
        if not cfg[key.split(".")[0]][key.split(".")[1]]:
            _fail(key, "a folder", "")
    _check_model_and_loss(cfg)


def _check_model_and_loss(cfg: CN) -> None:
    """MODEL.NAME / LOSS.NAME and their options, checked without allocating the model (meta device)."""
    from losses import build_loss

    try:
        model = check_model(cfg.MODEL.NAME, **config_to_dict(cfg.MODEL.ARGS))
    except (ModelOptionError, UnknownNameError) as err:
        raise ConfigError(f"MODEL.NAME / MODEL.ARGS: {err}") from None
    spec, ps = spec_of(model), cfg.TRAINING.TRAIN_PS
    if not spec.is_plain:
        raise ConfigError(f"MODEL.ARGS: {cfg.MODEL.NAME} with these options takes {spec.channel_order} input in "
                          f"{spec.input_range}; training uses RGB in [0, 1] - drop the release-convention options")
    if ps % spec.pad_multiple or ps < spec.min_size:
        raise ConfigError(f"TRAINING.TRAIN_PS {ps} does not suit {cfg.MODEL.NAME}: patches must be a multiple of "
                          f"{spec.pad_multiple} and at least {spec.min_size} pixels")
    tile = cfg.TRAINING.VAL_TILE
    if tile and (tile % spec.pad_multiple or tile < spec.min_size):
        raise ConfigError(f"TRAINING.VAL_TILE {tile} does not suit {cfg.MODEL.NAME}: windows must be a multiple of "
                          f"{spec.pad_multiple} and at least {spec.min_size} pixels (or 0)")
    try:
        build_loss(cfg.LOSS.NAME, **config_to_dict(cfg.LOSS.ARGS))
    except (ModelOptionError, UnknownNameError) as err:
        raise ConfigError(f"LOSS.NAME / LOSS.ARGS: {err}") from None


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
