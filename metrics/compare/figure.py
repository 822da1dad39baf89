"""Paper-style comparison figures drawn with OpenCV: one row per image, one panel per method.

Each panel is the image scaled to a common width with the zoom region
outlined, a magnified inset of that region in its lower-right corner, and
two lines of text underneath (the panel's name and its score); the inset
moves to another corner when the region is under the lower-right one.  The inset
is magnified by pixel replication (nearest neighbour), so it shows the
pixels the method produced and no interpolation of its own.
"""
from __future__ import annotations

import cv2
import numpy as np

from .collect import Scene, caption

BOX = (220, 30, 30)  # RGB of the zoom outline and the inset border
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = 255


def _text_block(width: int, lines: list[str], scale: float) -> np.ndarray:
    """White strip with the lines centred (black), sized to fit."""
    thick = 1
    height = int(round(22 * scale / 0.5))
    strip = np.full((height * len(lines) + 6, width, 3), _WHITE, np.uint8)
    for i, line in enumerate(lines):
        s = scale
        (tw, th), _ = cv2.getTextSize(line, _FONT, s, thick)
        while tw > width - 4 and s > 0.25:  # shrink long names to fit the panel
            s *= 0.9
            (tw, th), _ = cv2.getTextSize(line, _FONT, s, thick)
        org = ((width - tw) // 2, height * i + (height + th) // 2 + 2)
        cv2.putText(strip, line, org, _FONT, s, (0, 0, 0), thick, cv2.LINE_AA)
    return strip


def _corner(height: int, width: int, ih: int, iw: int, box: tuple[float, float, float, float]) -> tuple[int, int]:
    """Top-left of the inset: the lower-right corner, or the corner that covers least of the zoom box."""
    x0, y0, x1, y1 = box
    best = None
    for oy, ox in ((height - ih, width - iw), (0, width - iw), (height - ih, 0), (0, 0)):
        overlap = max(0.0, min(x1, ox + iw) - max(x0, ox)) * max(0.0, min(y1, oy + ih) - max(y0, oy))
        if best is None or overlap < best[0]:
            best = (overlap, (oy, ox))
    return best[1]


def draw_panel(img: np.ndarray, zoom: tuple[int, int, int, int], width: int, lines: list[str],
               inset_frac: float = 0.45, font_scale: float = 0.5) -> np.ndarray:
    """One panel: ``img`` scaled to ``width`` with the zoom box, the inset, and ``lines`` of text below."""
    h, w = img.shape[:2]
    f = width / w
    height = max(1, int(round(h * f)))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    panel = np.ascontiguousarray(cv2.resize(img, (width, height), interpolation=interp))
    x, y, zw, zh = zoom
    line = max(1, int(round(width / 200)))
    cv2.rectangle(panel, (int(x * f), int(y * f)), (int((x + zw) * f) - 1, int((y + zh) * f) - 1), BOX, line)
    # The inset: the region magnified by an integer factor, pixel for pixel.
    target = max(8, int(width * inset_frac))
    mag = max(1, target // max(zw, zh))
    crop = img[y : y + zh, x : x + zw]
    inset = cv2.resize(crop, (zw * mag, zh * mag), interpolation=cv2.INTER_NEAREST)
    inset = cv2.copyMakeBorder(inset, line, line, line, line, cv2.BORDER_CONSTANT, value=BOX)
    ih, iw = inset.shape[:2]
    if ih <= height and iw <= width:
        oy, ox = _corner(height, width, ih, iw, (x * f, y * f, (x + zw) * f, (y + zh) * f))
        panel[oy : oy + ih, ox : ox + iw] = inset
    return np.vstack([panel, _text_block(width, lines, font_scale)])


def figure(scenes: list[Scene], zooms: list[tuple[int, int, int, int]], panel_width: int = 320,
           gap: int = 6) -> np.ndarray:
    """The comparison figure (uint8 RGB): one row per scene, its panels left to right."""
    if not scenes:
        raise ValueError("no images chosen for the figure")
    rows = []
    for scene, zoom in zip(scenes, zooms):
        panels = [draw_panel(img, zoom, panel_width, [name, caption(scene, name)])
                  for name, img in scene.images.items()]
        height = max(p.shape[0] for p in panels)
        cells = []
        for i, p in enumerate(panels):
            if p.shape[0] < height:
                p = np.vstack([p, np.full((height - p.shape[0], panel_width, 3), _WHITE, np.uint8)])
            cells.append(p)
            if i < len(panels) - 1:
                cells.append(np.full((height, gap, 3), _WHITE, np.uint8))
        rows.append(np.hstack(cells))
    width = max(r.shape[1] for r in rows)
    out = []
    for i, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), _WHITE, np.uint8)])
        out.append(r)
        if i < len(rows) - 1:
            out.append(np.full((gap, width, 3), _WHITE, np.uint8))
    return cv2.copyMakeBorder(np.vstack(out), gap, gap, gap, gap, cv2.BORDER_CONSTANT, value=(255, 255, 255))
