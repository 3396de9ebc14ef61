"""The cache's array as the DataModules see it: a read-only, memory-mapped uint8 array."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ae_lab.data.image_cache.store import CacheLease


class MappedImages:
    """A read-only uint8 ``(N, C, H, W)`` array in a raw file, memory-mapped on first use.

    ``index`` picks rows of the file (an int array, or a contiguous range given as a slice), so
    the splits of one cache share its pages instead of copying them. Pickling keeps only the path,
    shape and index (DataLoader workers reopen the map), never the pixels. Supports what
    :class:`~ae_lab.data.arrays.IndexedImages` uses: ``len``, ``shape`` and ``images[int_array]``.

    While a view may read the file, its process holds the cache (``lease``, a
    :class:`~ae_lab.data.image_cache.store.CacheLease` shared by the views of one cache), so no
    other process removes it; a view without one (unpickled in a worker, or made from a path)
    takes its own when it maps the file.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        index: np.ndarray | slice | Sequence[int] | None = None,
        lease: CacheLease | None = None,
    ) -> None:
        self.path = str(path)
        self.file_shape = tuple(int(s) for s in shape)  # the whole file
        if len(self.file_shape) != 4:
            raise ValueError(f"shape must be (N, C, H, W), got {self.file_shape}")
        self.start, self.stop, self.index = 0, self.file_shape[0], None
        if isinstance(index, slice):
            start, stop, step = index.indices(self.file_shape[0])
            if step != 1:
                raise ValueError("a slice index must have step 1")
            self.start, self.stop = start, max(start, stop)
        elif index is not None:
            rows = np.asarray(index, dtype=np.int64).reshape(-1)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.file_shape[0]):
                raise IndexError(f"row index out of range for {self.file_shape[0]} images")
            if len(rows) == 0:
                self.start = self.stop = 0
            elif rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
                self.start, self.stop = int(rows[0]), int(rows[-1]) + 1  # contiguous: a range
            else:
                small = self.file_shape[0] < 2**31
                self.index = rows.astype(np.int32 if small else np.int64)
        self.lease = lease
        self._array: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.file_shape[1:])

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else self.stop - self.start

    def _mapped(self) -> np.ndarray:
        if self._array is None:
            if self.index is not None:
                first, count = 0, self.file_shape[0]  # the whole file, rows picked by the index
            else:
                first, count = self.start, self.stop - self.start
            row_shape = self.file_shape[1:]
            if count == 0:
                self._array = np.empty((0, *row_shape), dtype=np.uint8)
            else:
                if self.lease is None:
                    self.lease = CacheLease(self.path)
                self._array = np.memmap(
                    self.lease.file,  # the file that is held, even if the path changed since
                    dtype=np.uint8,
                    mode="r",
                    offset=first * math.prod(row_shape),
                    shape=(count, *row_shape),
                )
        return self._array

    def __getitem__(self, key: Any) -> np.ndarray:
        """Rows of this view: a fancy index (an int array) returns a writable copy."""
        array = self._mapped()
        if self.index is not None:
            return array[self.index[key]]
        return array[key]

    def subset(self, index: np.ndarray | Sequence[int]) -> MappedImages:
        """A view of some rows of this view (no pixels are copied)."""
        rows = np.asarray(index, dtype=np.int64)
        rows = self.index[rows] if self.index is not None else rows + self.start
        return MappedImages(self.path, self.file_shape, rows, lease=self.lease)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The rows as an ndarray: a read-only view of the map for a contiguous range (unless a
        copy is asked for), a copy for an index."""
        array = self[:] if self.index is None else self[np.arange(len(self))]
        if copy:
            return np.array(array, dtype=dtype, copy=True)
        return np.asarray(array, dtype=dtype)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # reopened lazily where it is unpickled ...
        state["lease"] = None  # ... which then holds the cache itself
        return state

    def __repr__(self) -> str:
        return f"MappedImages({self.path!r}, shape={self.shape})"
