"""``data.holdout_class`` (a class out of train and val, kept in test) and ``data.pad_to`` (images
zero-padded to a centred square), on the MNIST-format datamodules and refused where they cannot
apply."""

import pytest
import torch

from ae_lab.data import AnimeFacesDataModule, FashionMNISTDataModule, MNISTDataModule
from ae_lab.data.mnist import pad_images
from ae_lab.errors import UserError
from ae_lab.run.build import build
from ae_lab.run.checks import check_config


def test_a_held_out_class_leaves_train_and_val_and_stays_in_test(mnist_root):
    full = MNISTDataModule(str(mnist_root), val_fraction=0.2, seed=1)
    held = MNISTDataModule(str(mnist_root), val_fraction=0.2, seed=1, holdout_class=3)
    full.setup(), held.setup()
    for split in ("train", "val"):
        labels = full.splits[split].labels
        assert (labels == 3).any()  # the synthetic set has every class in every split
        assert not (held.splits[split].labels == 3).any()
        # the other images are the same ones, in the same order
        keep = labels != 3
        assert torch.equal(held.splits[split].images, full.splits[split].images[keep])
        assert torch.equal(held.splits[split].labels, labels[keep])
    assert torch.equal(held.splits["test"].images, full.splits["test"].images)
    assert torch.equal(held.splits["test"].labels, full.splits["test"].labels)
    assert held.holdout_class == 3 and full.holdout_class is None
    # what the batches and the figures see
    _, labels = held.sample_batch(None, split="train")
    assert 3 not in labels.tolist() and 3 in held.sample_batch(None, split="test")[1].tolist()


def test_holding_out_keeps_the_fixed_binarisation_of_the_other_images(mnist_root):
    full = MNISTDataModule(str(mnist_root), binarize="stochastic")
    held = MNISTDataModule(str(mnist_root), binarize="stochastic", holdout_class=0)
    full.setup(), held.setup()
    keep = full.splits["train"].labels != 0
    assert torch.equal(held.splits["train"].images, full.splits["train"].images[keep])


@pytest.mark.parametrize("label", [10, 11])
def test_a_class_the_dataset_lacks_is_refused_with_the_valid_ones(mnist_root, label):
    with pytest.raises(UserError) as refused:
        FashionMNISTDataModule(str(mnist_root), holdout_class=label)
    message = str(refused.value)
    assert message.startswith(f"data.holdout_class={label}: FashionMNISTDataModule has no class")
    assert "0 T-shirt/top" in message and "9 Ankle boot" in message and "\n" not in message
    with pytest.raises(UserError, match=r"give one of 0, 1, 2, .*, 9$"):
        MNISTDataModule(str(mnist_root), holdout_class=label)


def test_a_dataset_without_labels_refuses_a_held_out_class(tmp_path):
    # refused as it is built, before any image is looked for
    with pytest.raises(UserError, match=r"^data.holdout_class=2: AnimeFacesDataModule's images "
                       r"have no class labels.*remove data.holdout_class"):  # fmt: skip
        AnimeFacesDataModule(str(tmp_path / "anime"), holdout_class=2)


def test_the_refusals_reach_the_user_as_one_line(compose, tmp_path, mnist_root):
    cfg = compose([f"data.root={mnist_root}", "data.holdout_class=12"])
    check_config(cfg)  # a type and a range the checks admit: the dataset knows its classes
    with pytest.raises(UserError, match=r"^data.holdout_class=12: MNISTDataModule has no class"):
        build(cfg.data, "data")
    cfg = compose(["data=celeba", f"data.root={tmp_path}", "+data.holdout_class=1"])
    with pytest.raises(UserError, match=r"CelebADataModule's images have no class labels"):
        build(cfg.data, "data")
    for bad, says in [("-1", "must be >= 0"), ("abc", "must be an integer or null")]:
        with pytest.raises(UserError, match=f"data.holdout_class=.*{says}"):
            check_config(compose([f"data.holdout_class={bad}"]))
    with pytest.raises(UserError, match=r"data.pad_to=1000: must be >= 1 and <= 128"):
        check_config(compose(["data.pad_to=1000"]))


def test_padding_centres_the_images_in_a_zero_border(mnist_root):
    plain = MNISTDataModule(str(mnist_root))
    padded = MNISTDataModule(str(mnist_root), pad_to=32)
    assert padded.image_shape == (1, 32, 32) and plain.image_shape == (1, 28, 28)
    for split in ("train", "val", "test"):
        big, small = padded.splits[split].images, plain.splits[split].images
        assert torch.equal(big[..., 2:30, 2:30], small)
        assert big.sum() == small.sum()  # the border is zeros
    x, _ = padded.sample_batch(4)
    assert x.shape == (4, 1, 32, 32) and x.dtype == torch.float32


def test_an_odd_margin_puts_its_extra_pixel_below_and_right():
    images = torch.full((2, 1, 3, 2), 7, dtype=torch.uint8)
    out = pad_images(images, 6)
    assert out.shape == (2, 1, 6, 6) and out.dtype == torch.uint8
    rows, cols = (out[0, 0] == 7).nonzero().unbind(1)
    assert rows.unique().tolist() == [1, 2, 3] and cols.unique().tolist() == [2, 3]
    square = images[:, :, :2]
    assert torch.equal(pad_images(square, 2), square)  # already that size


def test_padding_below_the_image_size_is_refused(mnist_root):
    with pytest.raises(UserError, match=r"^data.pad_to=27: smaller than the images \(28x28\); "
                       r"give data.pad_to>=28"):  # fmt: skip
        MNISTDataModule(str(mnist_root), pad_to=27).setup()
