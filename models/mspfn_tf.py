"""The authors' TensorFlow MSPFN variables -> this project's :class:`~models.mspfn.MSPFN` state dict.

Pure PyTorch (no TensorFlow): the input is a mapping from TensorFlow variable
names (``generator/rnn1/weight`` or ``generator/rnn1/weight:0``) to arrays,
however they were read - TensorFlow's checkpoint reader, or a NumPy archive.
``scripts/convert_mspfn_tf.py`` is the command-line front end.

Two variants of the release:

* ``"m17n1"``: the released test model (``TEST_MSPFN_M17N1.py``, the
  ``epoch50`` checkpoint): scope ``generator/``, blocks ``BCM*``, one channel
  attention unit per block (``caus=(1, 1, 1)``), 859 variables.
* ``"m17"``: the training model (``MSPFN.py``): scope ``model/``, blocks
  ``URAB*``, CAUs 1/3/3, 1,539 variables.

Either scope name is accepted for either variant (the authors' files used
both).  Optimizer state that a training checkpoint also holds (``.../Adam``,
``.../Adam_1``, ``beta1_power``, ``beta2_power``, ``global_step``) is skipped;
anything else that is not a weight of the variant, a weight that is absent,
one of the wrong shape, or one whose values are not real, finite numbers
(NaN, infinity, a complex array) is an error naming every such variable.

Kernel layouts: TensorFlow's ``conv2d`` kernels are ``[kh, kw, in, out]``,
``conv2d_transpose`` kernels ``[kh, kw, out, in]``.  The release writes its
stride-1 layers as transposed convolutions; a stride-1 ``'SAME'`` transposed
convolution is an ordinary convolution with the kernel rotated by 180
degrees, which is how they are stored here (``nn.Conv2d``).  Its stride-2
transposed convolutions map one-to-one onto ``ConvTranspose2dSame``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from utils.errors import UserError

from .mspfn import MSPFN


@dataclass(frozen=True)
class Variant:
    scope: str
    block: str
    caus: tuple[int, int, int]
    num_ffm: int = 17
    width: int = 64


VARIANTS: dict[str, Variant] = {
    "m17n1": Variant(scope="generator", block="BCM", caus=(1, 1, 1)),
    "m17": Variant(scope="model", block="URAB", caus=(1, 3, 3)),
}
SCOPES = ("generator", "model")
_OPTIMIZER_SLOTS = ("Adam", "Adam_1")
_BOOKKEEPING = ("beta1_power", "beta2_power", "global_step")

# How a TensorFlow variable becomes one of our parameters.
CONV = "conv2d"  # [kh, kw, in, out] -> Conv2d (out, in, kh, kw)
DECONV1 = "conv2d_transpose, stride 1"  # [kh, kw, out, in] -> Conv2d (out, in, kh, kw), rotated 180 degrees
DECONV2 = "conv2d_transpose, stride 2"  # [kh, kw, out, in] -> ConvTranspose2d (in, out, kh, kw)
VECTOR = "vector"  # biases and PReLU slopes
DECONV1_SWAP = "conv2d_transpose, stride 1, input halves swapped"  # rnn5: concat order differs


class Entry(NamedTuple):
    tf_name: str  # without the scope and without ":0"
    key: str  # our state-dict key
    kind: str


class TFConversionError(UserError, ValueError):
    """The TensorFlow variables do not fit the variant; the message names the offending variables."""


@dataclass
class Conversion:
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict
    scope: str
    skipped: list[str] = field(default_factory=list)


def release_model_kwargs(variant: str) -> dict:
    """Constructor options of :class:`MSPFN` that run a variant as the release's test script does."""
    v = _variant(variant)
    return {"width": v.width, "num_ffm": v.num_ffm, "caus": list(v.caus), "convention": "release"}


def _variant(variant: str) -> Variant:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown MSPFN variant {variant!r}; known: {', '.join(VARIANTS)}") from None


def _layer(tf: str, key: str, kind: str, module: str) -> list[Entry]:
    """A layer followed by PReLU: ``module`` is ``conv`` (ConvAct), ``up`` (UpAct) or ``down`` (DownAct)."""
    return [Entry(f"{tf}/weight", f"{key}.{module}.weight", kind), Entry(f"{tf}/alpha", f"{key}.act.weight", VECTOR)]


def _rru(key: str, tf_in: str, tf_lstm: str, tf_out: str) -> list[Entry]:
    lstm = f"residual_memory/{tf_lstm}/convLSTM/LSTM_conv"
    return [
        *_layer(f"residual_memory/{tf_in}", f"{key}.squeeze", DECONV1, "conv"),
        Entry(f"{lstm}/weights", f"{key}.lstm.conv.weight", CONV),
        Entry(f"{lstm}/biases", f"{key}.lstm.conv.bias", VECTOR),
        *_layer(f"residual_memory/{tf_out}", f"{key}.expand", DECONV1, "conv"),
    ]


def _cau(tf: str, key: str) -> list[Entry]:
    """One RCAB (``tf.layers.conv2d`` names conv2d, conv2d_1, ... inside its scope)."""
    return [
        Entry(f"{tf}/conv2d/kernel", f"{key}.body.0.weight", CONV),
        Entry(f"{tf}/conv2d/bias", f"{key}.body.0.bias", VECTOR),
        Entry(f"{tf}/conv2d/alpha", f"{key}.body.1.weight", VECTOR),
        Entry(f"{tf}/conv2d_1/kernel", f"{key}.body.2.weight", CONV),
        Entry(f"{tf}/conv2d_1/bias", f"{key}.body.2.bias", VECTOR),
        Entry(f"{tf}/conv2d_2/kernel", f"{key}.attention.1.weight", CONV),
        Entry(f"{tf}/conv2d_2/bias", f"{key}.attention.1.bias", VECTOR),
        Entry(f"{tf}/conv2d_2/alpha", f"{key}.attention.2.weight", VECTOR),
        Entry(f"{tf}/conv2d_3/kernel", f"{key}.attention.3.weight", CONV),
        Entry(f"{tf}/conv2d_3/bias", f"{key}.attention.3.bias", VECTOR),
    ]


def _urab(tf: str, down: str, key: str, n: int, num_cau: int) -> list[Entry]:
    entries = _layer(f"{tf}/{down}_{n + 1}", f"{key}.down", CONV, "down")
    for m in range(num_cau):
        entries += _cau(f"{tf}/group_{n + 1}_RCAB{m + 1}", f"{key}.caus.{m}")
    return entries + _layer(f"{tf}/up_{n + 1}", f"{key}.up", DECONV2, "up")


def release_entries(variant: str) -> list[Entry]:
    """Every weight of a variant: TensorFlow name (no scope), our key, and the layout conversion."""
    v = _variant(variant)
    b = v.block
    entries = [
        *_layer("rnn1", "features.conv_full", DECONV1, "conv"),
        *_layer("rnn2", "features.conv_half", DECONV1, "conv"),
        *_layer("rnn4", "features.conv_quarter", DECONV1, "conv"),
        *_rru("cfm.rru_quarter", "rain4_res1", "lstm_group4", "rain4_res2"),
        *_layer("residual_memory/upRMM4_2", "cfm.up_quarter", DECONV2, "up"),
        *_rru("cfm.rru_half", "rain2_res1", "lstm_group2", "rain2_res2"),
        *_layer("residual_memory/upRMM4_1", "cfm.up_quarter_full", DECONV2, "up"),
        *_layer("residual_memory/upRMM2_1", "cfm.up_half", DECONV2, "up"),
        *_rru("cfm.rru_full", "rain_res1", "lstm_group", "rain_res2"),
    ]
    n_quarter, n_half, n_full = v.caus
    for n in range(v.num_ffm):
        k = f"ffm.{n}"
        entries += _urab(f"{b}4_{n}", "down4", f"{k}.urab_quarter", n, n_quarter)
        entries += _layer(f"{b}2_{n}/up{b}4_2_{n}", f"{k}.up_quarter", DECONV2, "up")
        entries += _urab(f"{b}2_{n}", "down2", f"{k}.urab_half", n, n_half)
        entries += _layer(f"{b}_{n}/up{b}4to1_{n}", f"{k}.up_quarter_full", DECONV2, "up")
        entries += _layer(f"{b}_{n}/up{b}2to1_{n}", f"{k}.up_half", DECONV2, "up")
        entries += _urab(f"{b}_{n}", "down", f"{k}.urab_full", n, n_full)
    entries += [
        *_layer("rnn_recon4", "reconstruction.fuse_quarter", DECONV1, "conv"),
        *_layer("rnn_recon2", "reconstruction.fuse_half", DECONV1, "conv"),
        *_layer("rnn_recon", "reconstruction.fuse_full", DECONV1, "conv"),
        *_layer("up4_2", "reconstruction.up_quarter", DECONV2, "up"),
        *_layer("up2_1", "reconstruction.up_half", DECONV2, "up"),
        *_layer("rnn5", "reconstruction.tail", DECONV1_SWAP, "conv"),
        Entry("rnn7/weight", "reconstruction.out.weight", DECONV1),
    ]
    return entries


def tf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The TensorFlow shape of a variable whose converted tensor has ``shape``."""
    if kind == VECTOR:
        return tuple(shape)
    a, b, kh, kw = shape
    if kind in (CONV, DECONV2):  # Conv2d (out, in, ...) -> [kh, kw, in, out]; ConvTranspose2d (in, out, ...) -> [.., out, in]
        return (kh, kw, b, a)
    return (kh, kw, a, b)  # stride-1 transposed: Conv2d (out, in, kh, kw) -> [kh, kw, out, in]


def to_torch(kind: str, value: torch.Tensor) -> torch.Tensor:
    """Convert one TensorFlow variable (already a float32 tensor of its TF shape) to our layout."""
    if kind == VECTOR:
        return value.clone()
    if kind in (CONV, DECONV2):
        return value.permute(3, 2, 0, 1).contiguous()
    weight = value.permute(2, 3, 0, 1).flip(2, 3)
    if kind == DECONV1_SWAP:
        half = weight.shape[1] // 2
        weight = torch.cat([weight[:, half:], weight[:, :half]], dim=1)
    return weight.contiguous()


def _strip(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _is_training_state(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    return last in _OPTIMIZER_SLOTS or any(last == b or last.startswith(b + "_") for b in _BOOKKEEPING)


def _listing(label: str, items: list[str], show: int = 12) -> str:
    more = f" ... and {len(items) - show} more" if len(items) > show else ""
    return f"  {len(items)} {label}: {', '.join(items[:show])}{more}"


def _not_weights(value: np.ndarray) -> str | None:
    """Why an array cannot be weights (None when it can): not real numbers, or NaN/infinite values."""
    if np.iscomplexobj(value):
        return f"{value.dtype} values: complex, not real"
    if value.dtype.kind not in "fiub":
        return f"{value.dtype} values: not numbers"
    bad = int(value.size - np.count_nonzero(np.isfinite(value))) if value.dtype.kind == "f" else 0
    return f"{bad:,} NaN or infinite value(s)" if bad else None


def _fits_names(names: Mapping[str, str], variant: str) -> bool:
    """Whether every weight name of ``variant`` is among ``names`` (under one of the scopes)."""
    entries = release_entries(variant)
    return any(all(f"{s}/{e.tf_name}" in names for e in entries) for s in SCOPES)


def convert_release_variables(variables: Mapping[str, Any], variant: str) -> Conversion:
    """Map the release's TensorFlow variables (name -> array) onto :class:`MSPFN` for ``variant``.

    Returns the state dict (float32), the model options that run it as the
    release does (:func:`release_model_kwargs`), the scope found and the
    skipped optimizer-state names.  Raises :class:`TFConversionError` naming
    every unknown, missing or mis-shaped variable.
    """
    entries = release_entries(variant)
    kwargs = release_model_kwargs(variant)
    names: dict[str, str] = {}
    duplicates = []
    for raw in variables:
        name = _strip(str(raw))
        if name in names:
            duplicates.append(f"{names[name]} / {raw}")
        names[name] = str(raw)
    tf_names = [e.tf_name for e in entries]
    scope = max(SCOPES, key=lambda s: (sum(f"{s}/{t}" in names for t in tf_names), s == _variant(variant).scope))
    wanted = {f"{scope}/{e.tf_name}": e for e in entries}
    skipped = sorted(names[n] for n in names if n not in wanted and _is_training_state(n))
    unknown = sorted(names[n] for n in names if n not in wanted and not _is_training_state(n))
    missing = [n for n in wanted if n not in names]

    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in MSPFN(**kwargs).state_dict().items()}
    if set(shapes) != {e.key for e in entries}:  # a bug in the table, not in the user's file
        raise AssertionError(f"name table does not cover MSPFN: {sorted(set(shapes) ^ {e.key for e in entries})}")
    values, mis_shaped, not_weights = {}, [], []
    for name, e in wanted.items():
        if name not in names:
            continue
        value = np.asarray(variables[names[name]])  # read each variable once (a checkpoint reader reads on access)
        why = _not_weights(value)
        if why:
            not_weights.append(f"{names[name]} ({why})")
            continue
        values[name] = torch.from_numpy(value.astype(np.float32))
        got, want = tuple(values[name].shape), tf_shape(e.kind, shapes[e.key])
        if got != want:
            mis_shaped.append(f"{names[name]} {list(got)} (expected {list(want)})")
    if duplicates or unknown or missing or mis_shaped or not_weights:
        parts = [f"TensorFlow variables do not fit MSPFN variant {variant!r} (scope {scope!r}, "
                 f"{len(wanted)} weights expected):"]
        for label, items in (("given twice", duplicates), ("unknown", unknown), ("missing", missing),
                             ("mis-shaped", mis_shaped), ("not real, finite numbers", not_weights)):
            if items:
                parts.append(_listing(label, items))
        others = [o for o in VARIANTS if o != variant and _fits_names(names, o)]
        if others:
            parts.append(f"  the names are those of variant {others[0]!r}: use --variant {others[0]}")
        raise TFConversionError("\n".join(parts))

    state = {e.key: to_torch(e.kind, values[name]) for name, e in wanted.items()}
    return Conversion(state_dict=state, model_kwargs=kwargs, scope=scope, skipped=skipped)
