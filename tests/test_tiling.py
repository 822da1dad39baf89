"""inference/windows.py: the release's 128-pixel window protocol and whole-image inference."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from inference.windows import check_tile, forward_tiled, forward_whole, restore_tensor, window_segments
from models import DMSR, Identity, build_model
from models.spec import ModelSpec


class WindowProbe(nn.Module):
    """Reports where each output pixel came from: channel 0/1 = row/column inside its window,
    channel 2 = the input pixel.  Records every batch size it was given."""

    spec = ModelSpec()

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        b, _, h, w = x.shape
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return [torch.cat([rows, cols, x[:, :1]], dim=1), x[..., ::2, ::2]]  # multi-scale like DMSR


def release_stitch_local_coords(h: int, w: int, t: int) -> torch.Tensor:
    """Where each pixel comes from under the release's protocol, written out case by case:
    the grid, then the right column, the bottom row and the corner, each filling only its strip."""
    gh, gw = (h // t) * t, (w // t) * t
    local = torch.full((2, h, w), -1.0)
    for y0 in range(0, gh, t):  # regular grid
        for x0 in range(0, gw, t):
            local[0, y0 : y0 + t, x0 : x0 + t] = torch.arange(t).view(t, 1).float()
            local[1, y0 : y0 + t, x0 : x0 + t] = torch.arange(t).view(1, t).float()
    if w > gw:  # right column, windows at x = w - t, filling columns gw..w
        for y0 in range(0, gh, t):
            local[0, y0 : y0 + t, gw:] = torch.arange(t).view(t, 1).float()
            local[1, y0 : y0 + t, gw:] = torch.arange(t - (w - gw), t).view(1, -1).float()
    if h > gh:  # bottom row, windows at y = h - t, filling rows gh..h
        for x0 in range(0, gw, t):
            local[0, gh:, x0 : x0 + t] = torch.arange(t - (h - gh), t).view(-1, 1).float()
            local[1, gh:, x0 : x0 + t] = torch.arange(t).view(1, t).float()
    if h > gh and w > gw:  # bottom-right corner
        local[0, gh:, gw:] = torch.arange(t - (h - gh), t).view(-1, 1).float()
        local[1, gh:, gw:] = torch.arange(t - (w - gw), t).view(1, -1).float()
    return local


def test_window_segments_cover_each_pixel_once():
    assert [s.start for s in window_segments(256, 128)] == [0, 128]
    segs = window_segments(300, 128)
    assert [tuple(s) for s in segs] == [(0, 0, 128, 0, 128), (128, 0, 128, 128, 256), (172, 84, 128, 256, 300)]
    covered = [i for s in segs for i in range(s.dst_lo, s.dst_hi)]
    assert covered == list(range(300))
    assert all(s.src_hi - s.src_lo == s.dst_hi - s.dst_lo for s in segs)
    with pytest.raises(ValueError, match="shorter than"):
        window_segments(100, 128)


@pytest.mark.parametrize("size", [(256, 384), (300, 200), (129, 255), (128, 128)])
def test_windows_are_laid_out_as_the_release_does(size):
    h, w = size
    x = torch.rand(1, 3, h, w)
    probe = WindowProbe()
    out = forward_tiled(probe, x, 128, max_batch=4)
    assert out.shape == (1, 3, h, w)
    torch.testing.assert_close(out[0, :2], release_stitch_local_coords(h, w, 128), rtol=0, atol=0)
    torch.testing.assert_close(out[0, 2], x[0, 0], rtol=0, atol=0)
    n_windows = len(window_segments(h, 128)) * len(window_segments(w, 128))
    assert sum(probe.batches) == n_windows and max(probe.batches) <= 4


@pytest.mark.parametrize("size", [(256, 256), (300, 211), (50, 70), (40, 300), (1, 5), (128, 3)])
@pytest.mark.parametrize("max_batch", [1, 3, 64])
def test_identity_is_reassembled_exactly(size, max_batch):
    x = torch.rand(2, 3, *size)
    out = forward_tiled(Identity(), x, 128, max_batch=max_batch)
    assert out.shape == x.shape
    assert torch.equal(out, x)


def test_small_images_are_reflect_padded_to_one_window():
    x = torch.rand(1, 3, 50, 70)
    probe = WindowProbe()
    out = forward_tiled(probe, x, 128)
    assert probe.batches == [1]  # one padded window
    torch.testing.assert_close(out[0, 2], x[0, 0], rtol=0, atol=0)
    assert out[0, 0, :, 0].tolist() == list(range(50))


def test_batch_bound_keeps_windows_small():
    probe = WindowProbe()
    forward_tiled(probe, torch.rand(1, 1, 640, 520), 128, max_batch=7)  # 5 x 5 windows
    assert probe.batches == [7, 7, 7, 4]
    with pytest.raises(ValueError, match="max_batch"):
        forward_tiled(probe, torch.rand(1, 1, 128, 128), 128, max_batch=0)


class NeedsMultiple(nn.Module):
    spec = ModelSpec(pad_multiple=16, min_size=64)

    def forward(self, x):
        h, w = x.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0 and min(h, w) >= 64, (h, w)
        return [x * 2, x[..., ::2, ::2]]


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (100, 20), (3, 3)])
def test_whole_image_mode_pads_to_the_models_constraints(size):
    x = torch.rand(1, 3, *size)
    out = forward_whole(NeedsMultiple(), x, 16, min_size=64)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x * 2, rtol=0, atol=0)
    torch.testing.assert_close(restore_tensor(NeedsMultiple(), x), x * 2, rtol=0, atol=0)  # default_tile 0


def test_tile_is_checked_against_the_model():
    with pytest.raises(ValueError, match="not a multiple of DMSR's pad_multiple 16"):
        check_tile(DMSR(base_channels=8, num_res=1), 100)
    with pytest.raises(ValueError, match="minimum input size 64"):
        check_tile(DMSR(base_channels=8, num_res=1), 48)
    with pytest.raises(ValueError, match="0 \\(whole image\\)"):
        check_tile(Identity(), -1)


def test_default_tile_is_the_models():
    class Tiled(WindowProbe):
        spec = ModelSpec(default_tile=128)

    probe = Tiled()
    out = restore_tensor(probe, torch.rand(1, 3, 200, 300))
    assert probe.batches == [6]  # 2 x 3 windows of 128
    torch.testing.assert_close(out[0, :2], release_stitch_local_coords(200, 300, 128), rtol=0, atol=0)
    assert DMSR.spec.default_tile == 128 and Identity.spec.default_tile == 0


def test_real_network_windows_are_stitched_from_its_own_outputs():
    model = build_model("DMSR", base_channels=8, num_res=1, efficient_attention=True).eval()
    x = torch.rand(1, 3, 70, 80)
    with torch.inference_mode():
        batched = restore_tensor(model, x, tile=64, max_batch=16)
        windows = torch.stack([x[0, :, 0:64, 0:64], x[0, :, 0:64, 16:80], x[0, :, 6:70, 0:64],
                               x[0, :, 6:70, 16:80]])
        direct = model(windows)[0]
    assert batched.shape == x.shape
    torch.testing.assert_close(batched[0, :, :64, :64], direct[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[0, :, :64, 64:], direct[1, :, :, 48:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[0, :, 64:, :64], direct[2, :, 58:, :], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[0, :, 64:, 64:], direct[3, :, 58:, 48:], rtol=1e-5, atol=1e-5)
