"""The decode-once image cache: pixels, reuse and rebuilds, atomic builds, bad files."""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from PIL.JpegImagePlugin import JpegImageFile
from torchvision import transforms

from ae_lab.data import image_cache
from ae_lab.data.arrays import IndexedImages
from ae_lab.data.image_cache import MappedImages, Preprocess, get_image_cache
from ae_lab.errors import UserError
from tests.helpers.faces import (
    CONVERTED,
    IGNORED,
    add_bad_files,
    face_image,
    make_anime,
    make_plain_jpeg_folder,
    write_solid,
)


def build(folder, cache_dir, crop=None, size=None, workers=1, **kwargs):
    return get_image_cache(
        folder, cache_dir, Preprocess.from_config(crop, size), workers=workers, **kwargs
    )


def array_of(cache) -> np.ndarray:
    return np.asarray(cache.images())


@pytest.fixture
def folder(tmp_path):
    make_plain_jpeg_folder(tmp_path / "src", n=8)
    return tmp_path / "src"


@pytest.fixture
def decodes(monkeypatch):
    """Counts calls of the decode function (builds run in-process with workers=1)."""
    calls = []
    real = image_cache._decode

    def counting(path, crop, size):
        calls.append(path)
        return real(path, crop, size)

    monkeypatch.setattr(image_cache, "_decode", counting)
    return calls


def smooth_jpeg(path, seed, size=(218, 178)):
    """Realistic JPEG content: smooth noise at quality 90."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((14, 12, 3)) * 255).astype(np.uint8))
    small.resize((size[1], size[0]), Image.Resampling.BICUBIC).save(path, quality=90)


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


def test_parallel_build_gives_the_same_array(folder, tmp_path):
    add_bad_files(folder)
    serial = build(folder, tmp_path / "serial", crop=148, size=32, workers=1)
    parallel = build(folder, tmp_path / "parallel", crop=148, size=32, workers=2)
    assert parallel.files == serial.files and parallel.skipped == serial.skipped
    assert np.array_equal(array_of(parallel), array_of(serial))


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


def test_no_usable_image_missing_or_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        build(tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        build(tmp_path / "empty", tmp_path / "cache")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_text("no")
    (tmp_path / "bad" / "b.jpg").write_bytes(b"")
    for crop, size in [(None, None), (148, 64)]:
        with pytest.raises(UserError, match="no (usable|readable) image"):
            build(tmp_path / "bad", tmp_path / "cache", crop=crop, size=size)
    assert not list((tmp_path / "cache").glob("*.json"))


# ---- reuse and rebuilds --------------------------------------------------------------------------
def test_second_use_decodes_nothing(folder, tmp_path, decodes):
    first = build(folder, tmp_path / "cache", crop=148, size=32)
    assert first.built and len(decodes) == 8
    before = first.array_path.stat()
    second = build(folder, tmp_path / "cache", crop=148, size=32)
    assert not second.built and len(decodes) == 8
    after = second.array_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert np.array_equal(array_of(first), array_of(second))


def test_changed_added_or_removed_file_rebuilds_and_drops_the_old_cache(folder, tmp_path, decodes):
    cache_dir = tmp_path / "cache"
    first = build(folder, cache_dir, size=32)
    write_solid(folder / "000002.jpg", (0, 0, 0))  # changed content
    changed = build(folder, cache_dir, size=32)
    assert changed.built and changed.array_path != first.array_path
    assert not first.array_path.exists() and not first.manifest_path.exists()
    assert array_of(changed)[1].max() <= 3  # the new, black content
    write_solid(folder / "000099.jpg", (9, 9, 9))
    added = build(folder, cache_dir, size=32)
    assert added.built and len(added.files) == 9
    (folder / "000001.jpg").unlink()
    removed = build(folder, cache_dir, size=32)
    assert removed.built and removed.files[0] == "000002.jpg" and len(removed.files) == 8
    assert len(list(cache_dir.glob("*.u8"))) == 1 and len(list(cache_dir.glob("*.json"))) == 1


def test_changed_setting_builds_another_cache_and_keeps_the_first(folder, tmp_path):
    small = build(folder, tmp_path / "cache", crop=148, size=32)
    large = build(folder, tmp_path / "cache", crop=148, size=48)
    cropped = build(folder, tmp_path / "cache", crop=120, size=48)
    assert large.built and cropped.built
    assert {small.array_path, large.array_path, cropped.array_path} == set(
        (tmp_path / "cache").glob("*.u8")
    )
    assert array_of(large).shape == (8, 3, 48, 48)
    assert not build(folder, tmp_path / "cache", crop=148, size=32).built


# ---- interrupted builds and other people's files -------------------------------------------------
def test_interrupted_build_leaves_nothing_that_is_used(folder, tmp_path, monkeypatch):
    real = image_cache._decode
    calls = []

    def interrupted(path, crop, size):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, crop, size)

    monkeypatch.setattr(image_cache, "_decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(folder, tmp_path / "cache", size=32)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [image_cache.LOCK_NAME]
    monkeypatch.setattr(image_cache, "_decode", real)
    cache = build(folder, tmp_path / "cache", size=32)
    assert cache.built and cache.shape[0] == 8


def test_array_without_manifest_or_incomplete_is_rebuilt(folder, tmp_path, decodes):
    first = build(folder, tmp_path / "cache", size=32)
    first.manifest_path.unlink()  # the build "died" before writing its manifest
    again = build(folder, tmp_path / "cache", size=32)
    assert again.built and len(decodes) == 16
    with open(again.array_path, "r+b") as f:  # a manifest whose array is short
        f.truncate(100)
    third = build(folder, tmp_path / "cache", size=32)
    assert third.built and np.array_equal(array_of(third), array_of(first))


def test_stale_temp_files_are_removed_and_foreign_files_kept(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    stale = [
        cache_dir / "faces-64x64-0123456789abcdef.u8.tmp-4242-0badcafe",
        cache_dir / "x.json.tmp-7-12345678",
    ]
    foreign = {
        "notes.txt": "mine",
        "data.u8": "mine too",
        "other.json": json.dumps({"format": "not ours", "source": str(folder)}),
        "data.u8.tmp": "not our pattern",
    }
    for path in stale:
        path.write_bytes(b"half a build")
    for name, text in foreign.items():
        (cache_dir / name).write_text(text)
    first = build(folder, cache_dir, size=32)
    write_solid(folder / "new.jpg", (1, 2, 3))
    build(folder, cache_dir, size=32)  # supersedes the first
    assert not any(path.exists() for path in stale)
    assert not first.array_path.exists()
    assert {name: (cache_dir / name).read_text() for name in foreign} == foreign


def _build_in_child(folder, cache_dir, queue):
    queue.put(build(folder, cache_dir, size=32).built)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_processes_build_once(folder, tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [
        context.Process(target=_build_in_child, args=(folder, tmp_path / "cache", queue))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    results = sorted(queue.get(timeout=60) for _ in children)
    for child in children:
        child.join(timeout=60)
    assert results == [False, True]


# ---- the memory-mapped array ---------------------------------------------------------------------
def test_mapped_images_index_views_pickle_small_and_feed_indexed_images(folder, tmp_path):
    cache = build(folder, tmp_path / "cache", size=32)
    full = array_of(cache)
    rows = np.array([5, 1, 6])
    view = cache.images(rows)
    assert view.shape == (3, 3, 32, 32) and len(view) == 3
    assert np.array_equal(view[np.array([2, 0])], full[[6, 5]])
    contiguous = cache.images(np.arange(2, 6))
    assert contiguous.index is None and np.array_equal(np.asarray(contiguous), full[2:6])
    assert np.array_equal(np.asarray(contiguous.subset([1, 3])), full[[3, 5]])
    empty = cache.images(np.array([], dtype=np.int64))
    assert empty.shape == (0, 3, 32, 32)

    view[np.array([0])]  # opens the map
    restored = pickle.loads(pickle.dumps(view))
    assert len(pickle.dumps(view)) < 1000 and restored._array is None
    assert np.array_equal(restored[np.array([0, 1, 2])], full[[5, 1, 6]])

    dataset = IndexedImages(view)
    images, labels = dataset.__getitems__([2, 0])
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(full[[6, 5]])) and (labels == -1).all()
    assert isinstance(MappedImages(cache.array_path, cache.shape), MappedImages)
