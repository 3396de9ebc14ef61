import gzip

import numpy as np
import pytest
import torch

from ae_lab.data import FashionMNISTDataModule, MNISTDataModule
from ae_lab.data.idx import read_idx
from ae_lab.errors import UserError
from tests.helpers.mnist import idx_bytes, write_mnist


def test_idx_round_trip_plain_and_gz(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_idx_is_reported(tmp_path):
    (tmp_path / "a").write_bytes(idx_bytes(np.zeros((4, 5), np.uint8))[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "a")


def test_whole_set_in_memory_with_a_seeded_split(mnist_root):
    dm = MNISTDataModule(str(mnist_root), val_fraction=0.25, seed=3)
    dm.prepare_data()
    dm.setup()
    assert dm.image_shape == (1, 28, 28)
    assert [dm.split_size(s) for s in ("train", "val", "test")] == [450, 150, 200]
    train = dm.splits["train"]
    assert isinstance(train.images, torch.Tensor) and train.images.dtype == torch.uint8
    again = MNISTDataModule(str(mnist_root), val_fraction=0.25, seed=3)
    again.setup()
    assert torch.equal(again.splits["val"].images, dm.splits["val"].images)
    other = MNISTDataModule(str(mnist_root), val_fraction=0.25, seed=4)
    other.setup()
    assert not torch.equal(other.splits["val"].images, dm.splits["val"].images)


def test_batches_are_uint8_until_they_reach_the_device(mnist_root):
    dm = MNISTDataModule(str(mnist_root), batch_size=50)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (50, 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (50,)
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(x * 255, images.float())


def test_binarize(mnist_root):
    dm = MNISTDataModule(str(mnist_root), binarize=True)
    x, _ = dm.sample_batch(20)
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_sample_batch_is_fixed_by_its_seed(mnist_root):
    dm = MNISTDataModule(str(mnist_root))
    a, la = dm.sample_batch(8, seed=1)
    b, lb = dm.sample_batch(8, seed=1)
    c, _ = dm.sample_batch(8, seed=2)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)


def test_files_directly_in_root_and_gzipped(fashion_root):
    dm = FashionMNISTDataModule(str(fashion_root))
    dm.prepare_data()
    assert dm.raw_folder() == fashion_root
    assert dm.split_size("test") == 200


def test_fashion_finds_the_debian_package_folder(tmp_path, monkeypatch):
    debian = write_mnist(tmp_path / "usr-share-datasets-fashion-mnist", gz=True)
    monkeypatch.setattr(FashionMNISTDataModule, "system_folders", (str(debian),))
    dm = FashionMNISTDataModule(str(tmp_path / "empty"), download=False)
    dm.prepare_data()
    assert dm.raw_folder() == debian


def test_missing_files_without_download_give_a_short_error(tmp_path):
    dm = MNISTDataModule(str(tmp_path), download=False)
    with pytest.raises(UserError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "data.root" in message and len(message) < 400


def test_failed_download_says_how_to_get_the_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(MNISTDataModule, "dataset_class", offline)
    with pytest.raises(UserError, match="downloading them failed .*no network") as error:
        MNISTDataModule(str(tmp_path), download=True).prepare_data()
    assert "data.root" in str(error.value)


def test_real_mnist_when_present(real_mnist):
    dm = MNISTDataModule(str(real_mnist))
    dm.setup()
    train, val, test = (dm.split_size(s) for s in ("train", "val", "test"))
    # the 8k/2k digits beside the checkout, or the full 60k/10k set: 10% of train held out
    assert (train + val, test) in {(8000, 2000), (60000, 10000)} and val == (train + val) // 10
    x, y = dm.sample_batch(100)
    assert 0.1 < x.mean() < 0.2 and set(y.tolist()) == set(range(10))


def test_stochastic_binarization_is_one_fixed_draw_of_the_intensities(mnist_root):
    import torch

    first = MNISTDataModule(str(mnist_root), binarize="stochastic", seed=3)
    again = MNISTDataModule(str(mnist_root), binarize="stochastic", seed=3)
    grey = MNISTDataModule(str(mnist_root))
    x, _ = first.sample_batch(None, split="test")
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(x, again.sample_batch(None, split="test")[0])
    intensity = grey.sample_batch(None, split="test")[0]
    assert ((x == 1) <= (intensity > 0)).all()  # black pixels stay black
    bright, mid = intensity > 0.95, (intensity > 0.3) & (intensity < 0.7)
    assert x[bright].mean() > 0.95 and 0.3 < x[mid].mean() < 0.7  # drawn with those odds
