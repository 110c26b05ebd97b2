"""Torch-free image transforms with torchvision's semantics for PIL images (docs/data.md §7).

The Symile-MIMIC recipe is ``Image.open(jpg).convert("RGB")`` -> ``Resize(320)`` ->
``RandomCrop(320)`` (train, drawn once) / ``CenterCrop(320)`` -> ``ToTensor`` -> ``Normalize``
(ImageNet).  We keep the cropped image as **uint8 grayscale** and expand it to three normalised
channels at load time (:func:`expand_imagenet`), 12x less disk than float32 RGB.

Why that is exact: a grayscale JPEG converted to RGB has three identical channels, and Pillow
resamples each 8-bit band independently with the same fixed-point kernel, so resizing the "L"
image gives bit-for-bit the channel of the resized "RGB" image (checked in
``tests/test_imaging.py`` for bilinear down- and up-scaling).  ``/255`` and the normalisation are
then the same float32 operations as ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "center_crop_origin",
    "expand_imagenet",
    "prepare_cxr",
    "random_crop_origin",
    "resize_shorter_edge",
    "resized_size",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(new_width, new_height) of torchvision ``Resize(size)``: shorter edge -> ``size``,
    longer edge -> ``int(size * long / short)`` (truncated, as torchvision does)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_shorter_edge(image: Image.Image, size: int) -> Image.Image:
    """Bilinear (antialiased, Pillow's ``resize``) resize of the shorter edge to ``size``.

    Like torchvision, an image that already has the target size is returned unchanged.
    """
    target = resized_size(image.width, image.height, size)
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.BILINEAR)


def center_crop_origin(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision ``CenterCrop``: ``round((h - size) / 2)``, ties to even."""
    return round((height - size) / 2.0), round((width - size) / 2.0)


def random_crop_origin(
    height: int, width: int, size: int, rng: np.random.Generator
) -> tuple[int, int]:
    """(top, left) uniform in ``[0, h - size]`` x ``[0, w - size]``; top drawn first (torchvision)."""
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return top, left


def prepare_cxr(gray: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 (H, W) radiograph -> uint8 (size, size): resize shorter edge, then crop.

    ``rng`` given -> random crop (training); ``None`` -> centre crop (val/test).
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {gray.dtype} {gray.shape}")
    resized = resize_shorter_edge(Image.fromarray(gray), size)
    height, width = resized.height, resized.width
    if rng is None:
        top, left = center_crop_origin(height, width, size)
    else:
        top, left = random_crop_origin(height, width, size, rng)
    return np.asarray(resized)[top : top + size, left : left + size].copy()


def expand_imagenet(images: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) -> float32 (..., 3, H, W): ``/255`` then ImageNet ``(x - mean) / std``.

    The load-time half of the ``image_uint8`` storage kind (docs/tensor-format.md); the same float32
    operations as torchvision ``ToTensor`` + ``Normalize`` on the RGB image.
    """
    x = images.astype(np.float32) / np.float32(255)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)
    return (x[..., None, :, :] - mean) / std
