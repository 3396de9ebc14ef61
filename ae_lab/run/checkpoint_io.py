"""Checkpoints written atomically: ``best-*.ckpt`` and ``last.ckpt`` are whole files or absent.

Lightning's own :class:`~lightning.pytorch.plugins.io.TorchCheckpointIO` writes a local file in
place through an fsspec "transaction" (a temporary file in ``/tmp`` then a move, which crosses file
systems and so copies, without ``fsync``): a full disk or a kill can leave a truncated file under
the real name. This plugin writes local checkpoints through :func:`ae_lab.atomic.atomic_write`
instead; remote URLs (``s3://``...) keep Lightning's path.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Any

import fsspec.utils
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ae_lab.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, ``fsync``, then ``os.replace``."""

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: str | os.PathLike,
        storage_options: Any | None = None,
    ) -> None:
        if storage_options is not None or fsspec.utils.get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            with atomic_write(path, "wb") as file:
                torch.save(checkpoint, file)
        except RuntimeError as error:  # how torch.save reports a write the file system refused
            raise write_failed(path, error) from None


#: Free bytes below which a failed write is taken for a full disk.
NEARLY_FULL = 64 << 20


def write_failed(path: str | os.PathLike, error: RuntimeError) -> OSError:
    """An ``OSError`` for a checkpoint torch could not write (the temporary file is gone):
    ``ENOSPC`` when the disk is (nearly) full, else ``EIO``, so a failed write ends the run the
    same way whichever layer noticed it."""
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        free = 0
    code = errno.ENOSPC if free < NEARLY_FULL else errno.EIO
    reason = str(error).splitlines()[0][:200]
    return OSError(code, f"{os.strerror(code)} ({reason})", str(path))
