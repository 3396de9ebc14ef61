"""Decoding: the pixels a file and its settings give, and the files that are skipped or converted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image, ImageFile
from PIL.JpegImagePlugin import JpegImageFile
from torchvision import transforms

from tests.helpers.faces import (
    CONVERTED,
    IGNORED,
    add_bad_files,
    face_image,
    make_anime,
    write_solid,
)
from tests.helpers.image_cache import array_of, build, smooth_jpeg


# ---- pixels --------------------------------------------------------------------------------------
def test_png_round_trip_is_exact_and_channel_first(tmp_path):
    pixels = np.zeros((40, 30, 3), np.uint8)
    pixels[:20] = (255, 0, 0)  # top red
    pixels[20:] = (0, 0, 255)  # bottom blue
    pixels[:, :10, 1] = 200  # a green band on the left
    Image.fromarray(pixels).save(tmp_path / "a.png")
    write_solid(tmp_path / "b.png", (12, 34, 56), size=(40, 30))
    cache = build(tmp_path, tmp_path / "cache")
    images = array_of(cache)
    assert cache.files == ["a.png", "b.png"]
    assert images.shape == (2, 3, 40, 30) and images.dtype == np.uint8
    assert np.array_equal(images[0], pixels.transpose(2, 0, 1))
    assert (images[1].reshape(3, -1).T == (12, 34, 56)).all()


def test_solid_jpeg_keeps_its_colour_through_crop_and_resize(tmp_path):
    write_solid(tmp_path / "src" / "solid.jpg", (200, 120, 40))
    images = array_of(build(tmp_path / "src", tmp_path / "cache", crop=148, size=64))
    assert images.shape == (1, 3, 64, 64)
    assert np.abs(images[0].reshape(3, -1).T.astype(int) - (200, 120, 40)).max() <= 3


def test_crop_and_resize_match_torchvision_center_crop_and_resize(tmp_path):
    image = face_image(3)
    image.save(tmp_path / "face.png")  # lossless, so only the geometry can differ
    reference = transforms.Compose([transforms.CenterCrop(148), transforms.Resize((64, 64))])
    expected = np.asarray(reference(image)).transpose(2, 0, 1).astype(int)
    got = array_of(build(tmp_path, tmp_path / "cache", crop=148, size=64))[0].astype(int)
    difference = np.abs(got - expected)
    # Same geometry; only the outermost pixels differ a little, as the resize filters them with
    # their real neighbours outside the crop where torchvision repeats the crop's edge.
    assert difference[:, 1:-1, 1:-1].max() <= 1 and difference.max() <= 16


def test_crop_border_is_cut_away(tmp_path):
    pixels = np.full((218, 178, 3), (255, 0, 0), np.uint8)  # red border ...
    pixels[35:183, 15:163] = (0, 255, 0)  # ... around the centred 148 square, which is green
    Image.fromarray(pixels).save(tmp_path / "a.png")
    images = array_of(build(tmp_path, tmp_path / "cache", crop=148))
    assert images.shape == (1, 3, 148, 148)
    assert (images[0].reshape(3, -1).T == (0, 255, 0)).all()


@pytest.mark.parametrize(("crop", "size"), [(148, 64), (None, 32), (178, 40)])
def test_jpeg_draft_decoding_stays_close_to_a_full_decode(tmp_path, monkeypatch, crop, size):
    for i in range(3):
        smooth_jpeg(tmp_path / "src" / f"{i}.jpg", seed=i)
    drafts = []
    real_draft = JpegImageFile.draft

    def counting_draft(self, mode, requested):
        drafts.append(requested)
        return real_draft(self, mode, requested)

    monkeypatch.setattr(JpegImageFile, "draft", counting_draft)
    got = array_of(build(tmp_path / "src", tmp_path / "cache", crop=crop, size=size)).astype(int)
    assert len(drafts) == 3  # decoded at 1/2 or 1/4 scale in the DCT
    steps = [transforms.CenterCrop(crop)] if crop else []
    reference = transforms.Compose([*steps, transforms.Resize((size, size))])
    for i in range(3):
        with Image.open(tmp_path / "src" / f"{i}.jpg") as image:
            expected = np.asarray(reference(image.convert("RGB"))).transpose(2, 0, 1)
        difference = np.abs(got[i] - expected.astype(int))
        assert difference.mean() < 2.0 and difference.max() <= 24


def test_exif_orientation_is_applied(tmp_path):
    image = face_image(1, size=(60, 90))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees clockwise: portrait
    image.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    images = array_of(build(tmp_path, tmp_path / "cache"))
    assert images.shape == (1, 3, 90, 60)
    expected = np.asarray(image.transpose(Image.Transpose.ROTATE_270)).transpose(2, 0, 1)
    assert np.abs(images[0].astype(int) - expected.astype(int)).mean() < 3


def test_keep_size_takes_the_first_image_and_resizes_the_others(tmp_path):
    folder = make_anime(tmp_path, n=5)  # 96x96 first, then other sizes
    cache = build(folder, tmp_path / "cache")
    assert cache.shape == (5, 3, 96, 96)


def test_mixed_sizes_and_formats_to_one_square(tmp_path):
    folder = make_anime(tmp_path, n=8, flat=True, suffixes=(".jpg", ".png", ".webp", ".bmp"))
    cache = build(folder, tmp_path / "cache", size=40)
    assert cache.shape == (8, 3, 40, 40) and len(cache.skipped) == 0


# ---- bad files -----------------------------------------------------------------------------------
def test_bad_files_are_skipped_or_converted_with_one_summary_line(folder, tmp_path, caplog):
    skipped = add_bad_files(folder)
    with caplog.at_level(logging.INFO, logger="ae_lab.data.image_cache"):
        cache = build(folder, tmp_path / "cache", crop=148, size=64)
    assert [name for name, _ in cache.skipped] == skipped
    assert dict(cache.skipped)["truncated.jpg"] == "truncated"
    assert dict(cache.skipped)["empty.jpg"] == "empty file"
    assert not set(IGNORED) & set(cache.files)
    assert len(cache.files) == 8 + len(CONVERTED)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line and f"skipped {len(skipped)} of" in line
    assert all(name in line for name in skipped)
    images = array_of(cache)
    for name, colour in CONVERTED.items():
        top_middle = images[cache.files.index(name), :, 16, 32].astype(int)
        assert np.abs(top_middle - colour).max() <= 8, name
    rgba_bottom = images[cache.files.index("rgba.png"), :, 56, 32]
    assert (rgba_bottom == 255).all()  # transparent: over white
    json.loads(cache.manifest_path.read_text())["skipped"]  # stored beside the array


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_jpegs_are_detected(tmp_path, keep):
    smooth_jpeg(tmp_path / "src" / "good.jpg", seed=1)
    data = (tmp_path / "src" / "good.jpg").read_bytes()
    (tmp_path / "src" / "cut.jpg").write_bytes(data[: int(len(data) * keep)])
    cache = build(tmp_path / "src", tmp_path / "cache", crop=148, size=64)
    assert cache.files == ["good.jpg"] and cache.skipped == [("cut.jpg", "truncated")]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
