"""Reading and writing images the same way everywhere.

Every entry point reads images through :func:`read_image`, which returns an
8-bit RGB ``numpy`` array (H, W, 3) whatever the file holds: grayscale is
replicated to three channels, alpha is dropped (composited on nothing, as
the papers' scripts do), 16-bit data is scaled to 8 bits with rounding, and
the EXIF orientation of photos is applied.  A file that cannot be decoded
raises :class:`ImageReadError` naming the file.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import UserError
from .files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Largest image read, Pillow's decompression-bomb limit (about 13377 x 13377): a header claiming more
# is refused before any memory is allocated.
MAX_PIXELS = 178_956_970

# Decoding threads fight with DataLoader workers and torch's own pool.
cv2.setNumThreads(0)
# Pillow warns about images of more than 89 M pixels; the size limit here is MAX_PIXELS.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(UserError, RuntimeError):
    """An image file is missing, unreadable or corrupt; the message names it."""


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, in natural sort order."""
    from natsort import natsorted

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return natsorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)


def to_uint8_rgb(img: np.ndarray, source: str = "<array>", bgr: bool = True) -> np.ndarray:
    """Convert any decoded image (gray, gray+alpha, BGR(A), 8/16-bit, float) to uint8 RGB."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{source}: unsupported image shape {img.shape}")
    channels = img.shape[2]
    if channels in (1, 2):  # gray (+ alpha)
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if channels == 4:
        img = img[:, :, :3]
    if bgr:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)  # much faster than a numpy flip
    return np.ascontiguousarray(img)


def check_header(data: bytes | np.ndarray, source: str) -> tuple[int, int] | None:
    """``(height, width)`` an encoded image's header claims (before EXIF rotation), or None if Pillow cannot tell.

    A header claiming more than :data:`MAX_PIXELS` pixels raises
    :class:`ImageReadError` before anything is allocated for the image.
    """
    try:
        with Image.open(io.BytesIO(memoryview(data))) as im:
            width, height = im.size
        claim = f"{width}x{height} pixels"
    except Image.DecompressionBombError:  # a readable header claiming a giant image
        width = height = MAX_PIXELS
        claim = "a giant image"
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        return None
    if height * width > MAX_PIXELS:
        raise ImageReadError(f"{source}: the header claims {claim}, more than the {MAX_PIXELS:,} pixels "
                             "this project reads (a corrupt or hostile file?)")
    return height, width


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3), applying EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"cannot read image {path}: {err.strerror or err}") from None
    return decode_image(data, path)


def decode_image(data: bytes | np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Decode the bytes of an image file (``source`` names it) exactly as :func:`read_image` does.

    For callers that need the file's bytes too (hashing them), so the file is read once.
    """
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if data.size:
        check_header(data, str(source))
    # IMREAD_UNCHANGED keeps 16-bit and alpha but ignores EXIF orientation,
    # so orientation is applied separately (photos from phones need it).
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV's own size limit or a decoder failure
        img = None
    if img is None or img.size == 0:
        raise ImageReadError(f"cannot decode image (corrupt or not an image): {source}")
    img = to_uint8_rgb(img, source=str(source))
    if b"Exif" in data[:65536].tobytes() or b"eXIf" in data.tobytes():
        img = _apply_exif_orientation(img, data)
    return img


def _apply_exif_orientation(img: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Turn a photo upright by its EXIF orientation tag (only called when the file has EXIF data)."""
    try:
        with Image.open(io.BytesIO(memoryview(data))) as im:
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError):
        return img
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.rot90(a, 1)[::-1, :],  # transpose
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1, :],  # transverse
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(img)) if op else img


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a uint8 RGB (H, W, 3) array; the folder is created; written atomically."""
    path = Path(path)
    if img.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8, got {img.dtype} for {path}")
    ext = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise OSError(f"cannot encode image as {ext}: {path}")
    atomic_write(path, buf.tobytes())


def uint8_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def tensor_to_uint8(t: torch.Tensor, quantize: str = "round") -> np.ndarray:
    """float (3, H, W) in [0, 1] -> uint8 (H, W, 3), clamped, then rounded (the DMSR protocol).

    ``quantize="truncate"`` drops the fraction instead, as PReNet's release
    does (``np.uint8(255 * x)``); it costs about half a grey level on average.
    """
    return levels_to_uint8(t.detach().float().clamp(0.0, 1.0).mul(255.0), quantize)


def levels_to_uint8(levels: torch.Tensor, quantize: str = "round") -> np.ndarray:
    """float (3, H, W) grey levels (0-255 scale) -> uint8 (H, W, 3): clamped to [0, 255], then
    rounded half to even (``torch.round``, as ``cv2.imwrite`` of floats) or truncated."""
    if quantize not in ("round", "truncate"):
        raise ValueError(f"quantize must be 'round' or 'truncate', got {quantize!r}")
    t = levels.detach().float().clamp(0.0, 255.0)
    t = t.round() if quantize == "round" else t.floor()
    return t.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
