"""The memory-mapped array the DataModules index: views, pickling, and holding the cache."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest
import torch

from ae_lab.data.arrays import IndexedImages
from ae_lab.data.image_cache import CacheGone, decode, store
from tests.helpers.image_cache import array_of, build


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


def test_views_hold_the_cache_until_the_last_one_goes(folder, tmp_path):
    cache = build(folder, tmp_path / "cache", size=32)
    array, manifest = cache.array_path, cache.manifest_path
    view = cache.images(np.array([3, 1]))
    subset = view.subset([1])
    del cache, view
    gc.collect()
    assert not store.remove_unused(manifest, array)  # the subset still holds it
    assert subset[np.array([0])].shape == (1, 3, 32, 32)
    del subset
    gc.collect()
    assert store.remove_unused(manifest, array)


def test_an_unpickled_view_holds_the_cache_itself_once_it_reads(folder, tmp_path):
    cache = build(folder, tmp_path / "cache", size=32)
    restored = pickle.loads(pickle.dumps(cache.images(np.array([3, 1]))))
    assert restored.lease is None  # nothing held before it is used (a worker that never reads)
    expected = array_of(cache)[[3, 1]]
    array, manifest = cache.array_path, cache.manifest_path
    del cache
    gc.collect()
    assert np.array_equal(restored[np.array([0, 1])], expected)
    assert restored.lease is not None
    assert not store.remove_unused(manifest, array)


def test_a_view_of_a_removed_cache_says_so(folder, tmp_path):
    cache = build(folder, tmp_path / "cache", size=32)
    restored = pickle.loads(pickle.dumps(cache.images()))
    array, manifest = cache.array_path, cache.manifest_path
    del cache
    gc.collect()
    assert store.remove_unused(manifest, array)
    with pytest.raises(CacheGone, match="is gone"):
        restored[np.array([0])]


def test_a_view_reads_the_file_it_holds_even_after_a_rebuild_replaced_it(
    folder, tmp_path, monkeypatch
):
    cache = build(folder, tmp_path / "cache", size=32)
    before = array_of(cache).copy()
    view = cache.images(np.arange(8))  # holds the file; maps it on first use, below
    cache.manifest_path.unlink()  # so the next call rebuilds under the same name ...
    black = np.zeros((3, 32, 32), np.uint8)
    monkeypatch.setattr(decode, "decode_image", lambda path, crop, size: black)  # ... other pixels
    rebuilt = build(folder, tmp_path / "cache", size=32)
    assert rebuilt.built and rebuilt.array_path == cache.array_path
    assert np.asarray(rebuilt.images()).max() == 0
    assert np.array_equal(view[np.arange(8)], before)
