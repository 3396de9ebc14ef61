"""Files are whole or absent: a write that fails half-way (a full disk) leaves the old file as it
was and no temporary file behind; checkpoints of a real run too."""

import errno
import os
import stat

import pytest
import torch

from ae_lab import atomic
from ae_lab.errors import RunFailed
from ae_lab.run.checkpoint_io import AtomicCheckpointIO
from ae_lab.run.train import run
from tests.conftest import TINY_RUN


def disk_fills_half_way(monkeypatch):
    """Make ``torch.save`` (as the checkpoint plugin calls it) write half its bytes, then fail
    the way a full disk does."""
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            return real_save(obj, file, *args, **kwargs)
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("ae_lab.run.checkpoint_io.torch.save", save)


def test_write_text_replaces_the_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_text(target, "old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["metrics.json"]
    # the permissions a plain open() gives, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError), atomic.atomic_write(target, "w") as file:
        file.write("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_checkpoint_io_keeps_the_previous_checkpoint_when_the_disk_fills(tmp_path, monkeypatch):
    io_plugin = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "epoch": 0}, path)
    before = path.read_bytes()
    disk_fills_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        io_plugin.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 1}, path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["last.ckpt"]
    assert io_plugin.load_checkpoint(path)["epoch"] == 0


def test_a_run_whose_disk_fills_keeps_its_earlier_checkpoints(
    compose, tmp_path, mnist_root, monkeypatch
):
    """Epoch 0 saves best and last; the disk fills while epoch 1 saves: both stay whole."""
    cfg = compose(["callbacks=none", f"data.root={mnist_root}", *TINY_RUN[1:6],
                   "trainer.max_epochs=2"])  # fmt: skip
    real = AtomicCheckpointIO.save_checkpoint

    def fill_in_epoch_1(self, checkpoint, path, storage_options=None):
        if checkpoint["epoch"] >= 1:
            disk_fills_half_way(monkeypatch)
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", fill_in_epoch_1)
    with pytest.raises(RunFailed, match="no space left") as failure:
        run(cfg)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert "last.ckpt" in str(failure.value)
    assert sorted(os.listdir(checkpoints)) == ["best-epoch000.ckpt", "last.ckpt"]  # no temp
    for name in ("best-epoch000.ckpt", "last.ckpt"):
        assert torch.load(checkpoints / name, weights_only=True)["epoch"] == 0
    assert not (tmp_path / "run" / "metrics.json").exists()
