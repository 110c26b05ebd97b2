"""imaging: torchvision Resize/CenterCrop/RandomCrop semantics and the uint8-storage equivalence."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gated_symile.data.imaging import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop_origin,
    expand_imagenet,
    prepare_cxr,
    random_crop_origin,
    resize_shorter_edge,
    resized_size,
)


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (100, 200, 64, (64, 128)),
        (300, 200, 64, (96, 64)),
        (3, 5, 4, (4, 6)),  # 4 * 5 / 3 = 6.67 -> 6: truncated, not rounded
        (5, 3, 2, (3, 2)),  # 2 * 5 / 3 = 3.33 -> 3
        (50, 50, 20, (20, 20)),
        (2544, 3056, 320, (320, 384)),  # a typical MIMIC-CXR portrait: 320 * 3056 / 2544 = 384.4
    ],
)
def test_resized_size_hand_cases(width, height, size, expected):
    assert resized_size(width, height, size) == expected


def test_resize_is_bilinear_and_a_no_op_at_target_size():
    image = Image.fromarray(np.arange(30 * 20, dtype=np.uint8).reshape(30, 20))
    assert resize_shorter_edge(image, 20) is image
    resized = resize_shorter_edge(image, 10)
    assert resized.size == (10, 15)
    expected = image.resize((10, 15), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(np.asarray(resized), np.asarray(expected))
    constant = Image.fromarray(np.full((37, 23), 77, np.uint8))
    assert (np.asarray(resize_shorter_edge(constant, 11)) == 77).all()


@pytest.mark.parametrize(
    ("height", "width", "size", "expected"),
    [
        (105, 100, 100, (2, 0)),  # 2.5 -> 2 (ties to even)
        (107, 100, 100, (4, 0)),  # 3.5 -> 4 (ties to even)
        (100, 103, 100, (0, 2)),  # 1.5 -> 2
        (100, 101, 100, (0, 0)),  # 0.5 -> 0
        (110, 100, 100, (5, 0)),
    ],
)
def test_center_crop_rounds_ties_to_even(height, width, size, expected):
    assert center_crop_origin(height, width, size) == expected


def test_prepare_cxr_center_crop_picks_the_hand_computed_window():
    size = 16
    gray = (np.arange(size + 5)[:, None] * 10 + np.zeros((1, size), int)).astype(np.uint8)
    out = prepare_cxr(gray, size)  # shorter edge already 16: no resize, crop top = round(2.5) = 2
    np.testing.assert_array_equal(out, gray[2 : 2 + size])
    assert out.dtype == np.uint8 and out.shape == (size, size)


def test_random_crop_in_bounds_seeded_and_reaches_both_ends():
    draws = [random_crop_origin(22, 21, 20, np.random.default_rng(s)) for s in range(200)]
    tops, lefts = zip(*draws)
    assert set(tops) == {0, 1, 2} and set(lefts) == {0, 1}
    again = [random_crop_origin(22, 21, 20, np.random.default_rng(s)) for s in range(200)]
    assert draws == again
    gray = np.random.default_rng(0).integers(0, 256, (40, 33), dtype=np.uint8)
    a = prepare_cxr(gray, 16, np.random.default_rng(4))
    b = prepare_cxr(gray, 16, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 16)


def _float_recipe(path, size, rng=None) -> np.ndarray:
    """Reference recipe on the RGB image: convert("RGB") -> resize -> crop -> /255 -> normalise."""
    rgb = resize_shorter_edge(Image.open(path).convert("RGB"), size)
    if rng is None:
        top, left = center_crop_origin(rgb.height, rgb.width, size)
    else:
        top, left = random_crop_origin(rgb.height, rgb.width, size, rng)
    crop = np.asarray(rgb.crop((left, top, left + size, top + size)))
    x = np.moveaxis(crop, -1, 0).astype(np.float32) / np.float32(255)
    mean = np.float32(IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.float32(IMAGENET_STD).reshape(3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize(("shape", "size"), [((97, 131), 64), ((40, 30), 64), ((300, 257), 320)])
def test_uint8_storage_equals_float_rgb_recipe_bit_for_bit(tmp_path, shape, size):
    """L-vs-RGB finding: Pillow resamples each 8-bit band alike, so the stored grayscale crop
    expanded at load time is bit-identical to the reference float RGB pipeline."""
    rng = np.random.default_rng(1)
    smooth = np.cumsum(rng.integers(0, 9, shape), axis=1) % 256
    path = tmp_path / "cxr.jpg"
    Image.fromarray(smooth.astype(np.uint8)).save(path, quality=95)
    gray = np.asarray(Image.open(path))  # what the JPG reader returns (mode "L")
    assert Image.open(path).mode == "L"
    stored = prepare_cxr(gray, size)
    np.testing.assert_array_equal(expand_imagenet(stored), _float_recipe(path, size))
    stored = prepare_cxr(gray, size, np.random.default_rng(9))
    np.testing.assert_array_equal(
        expand_imagenet(stored), _float_recipe(path, size, np.random.default_rng(9))
    )


def test_expand_imagenet_matches_torch_to_tensor_and_normalize():
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(2).integers(0, 256, (3, 8, 9), dtype=np.uint8)
    rgb = torch.from_numpy(np.repeat(images[:, None], 3, axis=1))
    x = rgb.to(torch.float32).div(255)  # ToTensor
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
    expected = x.sub(mean).div(std).numpy()  # Normalize
    got = expand_imagenet(images)
    assert got.dtype == np.float32 and got.shape == (3, 3, 8, 9)
    np.testing.assert_array_equal(got, expected)
