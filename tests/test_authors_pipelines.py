"""Our test protocol against each authors' test script, written out here from their documented steps.

Equal values are not enough for equal pictures: oneDNN picks other
convolution kernels for a channels-last-strided input than for a plain NCHW
one, which add in another order, and a value next to a grey-level boundary
then lands on the other side after the 8-bit conversion.  Each pipeline
below does what the authors' script does - read with OpenCV, their channel
swaps, normalisation and transposes, the tensor constructor they use, their
8-bit conversion and ``cv2.imwrite`` - with the released weights, in this
process (same CPU, same thread count).  Our runner must feed the network the
same values *in the same memory layout* (``ModelSpec.input_layout``), get
bit-identical float outputs, and save identical 8-bit images: 0 differing
values, no tolerance.

The zoo models run on a 64x96 crop of Rain100H 001; PReNet (the published
reproduction) runs through ``test.py`` on three whole Rain100H images here,
and on all 100 in ``test_prenet_reproduction.py``.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import require_shared
from test_test_evaluate import test_py
from torch.utils.data import default_collate

from inference.runner import derain_image, load_model
from models import build_model, primary_output
from models.spec import ModelSpec
from utils.image_io import read_image

CROP = (slice(100, 164), slice(200, 296))  # rows, cols of Rain100H input/001.png (the zoo goldens' crop)


# ----------------------------------------------------------------------------- the authors' scripts

def prenet_script(model, path, out_path) -> None:
    """PReNet's test script (and BRN's, which is the same): RGB, /255, ``torch.Tensor`` of the transposed array."""
    y = cv2.imread(str(path))
    b, g, r = cv2.split(y)
    y = cv2.merge([r, g, b])
    y = np.float32(y) / 255.0
    y = torch.Tensor(np.expand_dims(y.transpose(2, 0, 1), 0))  # a view: channels-last strides
    with torch.no_grad():
        out = torch.clamp(model(y)[0], 0.0, 1.0)
    save = np.uint8(255 * out.cpu().numpy().squeeze()).transpose(1, 2, 0)  # truncation
    r, g, b = cv2.split(save)
    cv2.imwrite(str(out_path), cv2.merge([b, g, r]))


def rescan_script(model, path, out_path) -> None:
    """RESCAN's ``show.py``: BGR, /255, a DataLoader batch; saves ``(O - rain_last) * 255`` clipped, as floats."""
    o = default_collate([(cv2.imread(str(path)).astype(np.float32) / 255).transpose(2, 0, 1)])
    with torch.no_grad():
        rains = model(o)[2]  # the network's list of rain layers; the script subtracts the last
    out = np.clip(((o - rains[-1]) * 255)[0].numpy(), 0, 255)
    cv2.imwrite(str(out_path), out.transpose(1, 2, 0))  # rounds half to even


def spanet_script(model, path, out_path) -> None:
    """SPANet's ``main.py -a test``: BGR, CHW then /255, a DataLoader batch; saves ``clip(out, 0, 1) * 255``."""
    o = default_collate([cv2.imread(str(path)).transpose(2, 0, 1).astype(np.float32) / 255.0])
    with torch.no_grad():
        out = model(o)[0]
    cv2.imwrite(str(out_path), (np.clip(out[0].numpy(), 0, 1) * 255).transpose(1, 2, 0))


def jorder_e_script(model, path, out_path) -> None:
    """JORDER-E practical: RGB 0-255, ``np.ascontiguousarray`` of the transpose; saves ``clamp(0, 255).round()``."""
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)  # what imageio.imread gives for an RGB PNG
    x = default_collate([torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().mul_(1.0)])
    with torch.no_grad():
        out = model(x)[0].mul(1).clamp(0, 255).round().div(1).byte()
    cv2.imwrite(str(out_path), cv2.cvtColor(out[0].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR))


ZOO = {  # model, weights under ../shared/weights, the authors' script
    "PReNet": ("PReNet", ("PReNet", "Rain100H", "PReNet6", "net_latest.pth"), prenet_script),
    "PReNet_r": ("PReNet_r", ("PReNet", "Rain100H", "PReNet6_r", "net_latest.pth"), prenet_script),
    "PRN": ("PRN", ("PReNet", "Rain100H", "PRN6", "net_latest.pth"), prenet_script),
    "PRN_r": ("PRN_r", ("PReNet", "Rain100H", "PRN6_r", "net_latest.pth"), prenet_script),
    "BRN": ("BRN", ("BRN", "Rain100H", "net_latest.pth"), prenet_script),
    "RESCAN": ("RESCAN", ("RESCAN", "RainHeavy", "latest"), rescan_script),
    "SPANet": ("SPANet", ("SPANet", "SPA", "latest"), spanet_script),
    "JORDER_E": ("JORDER_E", ("JORDER-E", "practical", "model_practical.pt"), jorder_e_script),
}


# ----------------------------------------------------------------------------- zoo models on a crop

class _Spy:
    """Records the input tensor and the restored image of every call of ``model``."""

    def __init__(self, model):
        self.inputs, self.outputs = [], []
        self._hooks = [model.register_forward_pre_hook(lambda m, args: self.inputs.append(args[0])),
                       model.register_forward_hook(lambda m, args, out: self.outputs.append(primary_output(out)))]

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def _layout(x: torch.Tensor) -> list[int]:
    """The strides that matter (a dimension of size 1 may have any stride)."""
    return [s for s, n in zip(x.stride(), x.shape) if n > 1]


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    path = tmp_path_factory.mktemp("crop") / "001_crop.png"
    cv2.imwrite(str(path), cv2.imread(str(require_shared("data", "Rain100H", "input", "001.png")))[CROP])
    return path


def _same_as_the_authors_script(model, script, image, tmp_path) -> None:
    """The runner feeds what ``script`` feeds (values and layout), gets its float output and saves its pixels."""
    spy = _Spy(model)
    try:
        script(model, image, tmp_path / "authors.png")
        ours = derain_image(model, read_image(image), "cpu")
    finally:
        spy.remove()
    (theirs_in, ours_in), (theirs_out, ours_out) = spy.inputs, spy.outputs
    assert _layout(ours_in) == _layout(theirs_in), f"fed strides {ours_in.stride()}, the authors' script feeds " \
                                                   f"{theirs_in.stride()}"
    assert torch.equal(ours_in, theirs_in) and torch.equal(ours_out, theirs_out)
    theirs = cv2.cvtColor(cv2.imread(str(tmp_path / "authors.png")), cv2.COLOR_BGR2RGB)
    assert int((ours != theirs).sum()) == 0


@pytest.mark.parametrize("key", list(ZOO))
def test_runner_feeds_the_authors_layout_and_saves_their_pixels(key, crop, tmp_path):
    name, weights, script = ZOO[key]
    model, _ = load_model(name, require_shared("weights", *weights))
    _same_as_the_authors_script(model, script, crop, tmp_path)


@pytest.mark.parametrize(("name", "opts", "script"), [
    ("PRN", {"stages": 2, "width": 8}, prenet_script),  # all its convolutions see the input's layout
    ("BRN", {"stages": 2, "width": 8}, prenet_script),
    ("RESCAN", {"stages": 2, "channels": 8}, rescan_script),
    ("JORDER_E", {"width": 8, "num_blocks": 1}, jorder_e_script),
])
def test_layouts_with_random_weights(name, opts, script, tmp_path):
    """The same check without the shared data: a random image and untrained small networks."""
    torch.manual_seed(0)
    model = build_model(name, **opts).eval()
    image = tmp_path / "rainy.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (21, 34, 3), dtype=np.uint8))
    _same_as_the_authors_script(model, script, image, tmp_path)


def test_arrange():
    x = torch.rand(1, 3, 5, 7)
    hwc = np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())
    view = ModelSpec(input_layout="hwc_view").arrange(x)
    assert view.stride() == torch.Tensor(np.expand_dims(hwc.transpose(2, 0, 1), 0)).stride() == (3, 1, 21, 3)
    assert torch.equal(view, x)
    batch = torch.rand(2, 3, 5, 7)
    assert ModelSpec(input_layout="hwc_view").arrange(batch).stride() == (105, 1, 21, 3)  # one HWC block each
    assert ModelSpec().arrange(view).is_contiguous() and torch.equal(ModelSpec().arrange(view), x)
    with pytest.raises(ValueError, match="input_layout"):
        ModelSpec(input_layout="nhwc")


# ----------------------------------------------------------------------------- PReNet through test.py

class RecordedForward:
    """Records every forward of a model (input values, input layout, restored image) as test.py runs it.

    ``answer(model, verify)`` then stands in for ``model`` in an authors' script: a call with a tensor
    equal to a recorded input *and in the same layout* gets the recorded output back instead of the same
    forward pass again (the same weights, process, thread count and kernels give the same result - the
    first ``verify`` answers are checked against a real forward to show it); any other input runs the
    model.  This halves the cost of comparing whole sets, and it cannot hide a layout difference, the
    one thing that made the outputs differ (a different layout is never answered from the record).
    """

    def __init__(self):
        self.calls: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.recorded = self.answered = self.verified = 0

    @staticmethod
    def _key(x: torch.Tensor) -> tuple:
        return tuple(x.shape), tuple(_layout(x)), x.dtype, float(x.double().sum())

    def watch(self, model) -> None:
        def record(module, args, out):
            x = args[0].detach()
            self.calls.setdefault(self._key(x), []).append((x.clone(), primary_output(out).detach().clone()))
            self.recorded += 1
        model.register_forward_hook(record)

    def answer(self, model, verify: int = 3):
        def forward(x):
            for seen, out in self.calls.get(self._key(x), ()):
                if _layout(seen) == _layout(x) and torch.equal(seen, x):
                    if self.verified < verify:
                        real = primary_output(model(x))
                        assert torch.equal(real, out), "the same forward pass gave another output"
                        self.verified += 1
                    self.answered += 1
                    return (out,)
            return model(x)
        return forward


def prenet_pngs_differ(results, names: list[str], out_dir, recorded: RecordedForward | None = None,
                       test_py_model=None) -> dict[str, int]:
    """Differing 8-bit values between test.py's PNGs under ``results`` and the authors' script's, per image.

    The authors' script runs here on the Rain100H images ``names`` with the Rain100H PReNet6 weights, writing
    to ``out_dir``; with ``recorded`` (test.py's forward passes, ``test_py_model`` their model) a forward
    pass on the very tensor test.py fed is answered from the record (see ``RecordedForward``).
    """
    source = require_shared("data", "Rain100H", "input")
    model, _ = load_model("PReNet", require_shared("weights", "PReNet", "Rain100H", "PReNet6", "net_latest.pth"))
    net = model
    if recorded is not None:
        theirs, ours_sd = model.state_dict(), test_py_model.state_dict()
        assert theirs.keys() == ours_sd.keys() and all(torch.equal(theirs[k], ours_sd[k]) for k in theirs)
        net = recorded.answer(model)
    ours = {p.name: p for p in results.rglob("*.png")}
    assert sorted(ours) == sorted(names)
    differ = {}
    for name in names:
        prenet_script(net, source / name, out_dir / name)
        differ[name] = int((cv2.imread(str(ours[name])) != cv2.imread(str(out_dir / name))).sum())
    return differ


def test_recorded_forward_answers_only_the_same_tensor_in_the_same_layout():
    """What lets the full-set reproduction test skip repeated forward passes, and what it must not skip."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
    calls = []
    model.register_forward_pre_hook(lambda m, args: calls.append(args[0]))
    recorded = RecordedForward()
    recorded.watch(model)
    hwc = torch.rand(1, 12, 10, 3).permute(0, 3, 1, 2)  # channels-last strides, as the authors' scripts feed
    with torch.no_grad():
        out = model(hwc)
        forward = recorded.answer(model, verify=1)
        assert torch.equal(forward(hwc.clone())[0], out) and len(calls) == 2  # verified: a real second pass
        assert torch.equal(forward(hwc.clone())[0], out) and len(calls) == 2  # answered from the record
        assert recorded.answered == 2 and recorded.verified == 1
        forward(hwc.contiguous())  # same values, another layout: the model runs
        forward(hwc + 1e-3)  # other values: the model runs
    assert len(calls) == 4 and recorded.answered == 2
    assert [c.stride() for c in calls[2:]] == [hwc.contiguous().stride(), hwc.stride()]


def test_prenet_test_py_pngs_equal_the_authors_script(tmp_path):
    """Three whole Rain100H images, both orientations (320x480 and 480x320); all 100 in the reproduction test."""
    names = ["001.png", "008.png", "057.png"]
    inputs = tmp_path / "input"
    inputs.mkdir()
    for name in names:
        (inputs / name).symlink_to(require_shared("data", "Rain100H", "input", name))
    weights = require_shared("weights", "PReNet", "Rain100H", "PReNet6", "net_latest.pth")
    assert test_py.main(["--model", "PReNet", "--weights", str(weights), "--input_dir", str(inputs),
                         "--result_dir", str(tmp_path / "results"), "--device", "cpu", "--no-score"]) == 0
    (tmp_path / "authors").mkdir()
    differ = prenet_pngs_differ(tmp_path / "results", names, tmp_path / "authors")
    assert sum(differ.values()) == 0, differ
