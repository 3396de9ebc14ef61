"""Small synthetic datasets in MNIST's IDX format, for tests that must not need the real one."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (the format of the MNIST files)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def digit_like_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images in 10 classes: each class a smooth blob pattern, jittered per
    image, on a black border (as in MNIST, the outer pixels stay 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    templates = []
    for k in range(10):
        cy, cx = 9 + (k // 4) * 5, 8 + (k % 4) * 4
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (2.0 + k % 3) ** 2))
        ring = np.exp(-((np.hypot(yy - 14, xx - 14) - (4 + k % 5)) ** 2) / 3.0)
        templates.append(0.6 * blob + 0.4 * ring * (k % 2))
    labels = rng.integers(0, 10, size=n)
    images = np.stack([templates[k] for k in labels])
    images = images * rng.uniform(0.7, 1.0, size=(n, 1, 1)) + rng.normal(0, 0.03, images.shape)
    images[:, :3, :] = images[:, -3:, :] = images[:, :, :3] = images[:, :, -3:] = 0
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 600, n_test: int = 200, gz: bool = False) -> Path:
    """The four IDX files of a synthetic MNIST-format dataset in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = digit_like_images(n, seed)
        for name, array in zip(FILES[split], (images, labels), strict=True):
            data = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder
