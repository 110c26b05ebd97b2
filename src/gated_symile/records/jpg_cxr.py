"""Grayscale JPEG/PNG radiograph reader (MIMIC-CXR-JPG release, or the project's own conversion).

Pillow decodes lazily, so a truncated file can pass ``Image.open`` and fail only on ``load``; both
steps are wrapped so that every unusable file becomes one :class:`RecordError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gated_symile.records.errors import MissingRecord, UnreadableRecord

__all__ = ["read_jpg_gray"]


def read_jpg_gray(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 ``(H, W)`` grayscale (Pillow ``convert("L")``)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MissingRecord(path, "file does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            gray = image if image.mode == "L" else image.convert("L")
            pixels = np.asarray(gray, dtype=np.uint8)
    except UnidentifiedImageError as exc:
        raise UnreadableRecord(path, "not an image file Pillow can identify") from exc
    except OSError as exc:  # Pillow reports truncation ("image file is truncated") as OSError
        raise UnreadableRecord(path, f"cannot decode image ({exc})") from exc
    except Exception as exc:  # decoder plugins raise assorted types (ValueError, SyntaxError, ...)
        raise UnreadableRecord(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2 or pixels.size == 0:
        raise UnreadableRecord(path, f"decoded image has shape {pixels.shape}, expected (H, W)")
    return pixels
