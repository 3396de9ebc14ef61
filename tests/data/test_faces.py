"""Image-folder DataModules (plain folders, CelebA, anime faces): layouts, splits, shapes,
batches, errors and the configs."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ae_lab.data import AnimeFacesDataModule, CelebADataModule, ImageFolderDataModule
from ae_lab.data.image_cache import MappedImages, store
from ae_lab.errors import UserError
from tests.helpers.faces import (
    add_bad_files,
    celeba_names,
    make_anime,
    make_celeba_kaggle,
    make_celeba_torchvision,
    make_plain_jpeg_folder,
    official_partition,
    partition_sizes,
    write_partition,
    write_solid,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
SPLITS = ("train", "val", "test")


def celeba(root, tmp_path, **kwargs) -> CelebADataModule:
    kwargs = {"cache_dir": str(tmp_path / "cache"), "cache_workers": 1, "size": 32, **kwargs}
    dm = CelebADataModule(str(root), **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def sizes(dm) -> list[int]:
    return [dm.split_size(split) for split in SPLITS]


def split_files(dm) -> dict[str, list[str]]:
    """The source file of every image of each split."""
    files = dm.cache.files
    out = {}
    for split in SPLITS:
        images = dm.splits[split].images
        rows = images.index if images.index is not None else range(images.start, images.stop)
        out[split] = [files[r] for r in rows]
    return out


# ---- CelebA layouts and splits -------------------------------------------------------------------
def test_torchvision_layout_uses_the_official_partition(tmp_path):
    make_celeba_torchvision(tmp_path / "data", n=20)
    dm = celeba(tmp_path / "data", tmp_path)
    assert sizes(dm) == partition_sizes(20) == [12, 4, 4]
    names, parts = celeba_names(20), official_partition(20)
    expected = {
        s: [n for n, p in zip(names, parts, strict=True) if p == k] for k, s in enumerate(SPLITS)
    }
    assert split_files(dm) == expected


def test_kaggle_layout_uses_its_csv_partition(tmp_path):
    folder = make_celeba_kaggle(tmp_path / "kaggle", n=20)
    dm = celeba(tmp_path / "kaggle", tmp_path)
    assert dm.cache.source == folder.resolve()
    assert sizes(dm) == [12, 4, 4]


def test_img_align_celeba_folder_with_partition_in_root(tmp_path):
    root = tmp_path / "celeba"
    names = make_plain_jpeg_folder(root / "img_align_celeba", n=10)
    write_partition(root / "list_eval_partition.txt", names, [0] * 6 + [1] * 3 + [2])
    assert sizes(celeba(root, tmp_path)) == [6, 3, 1]


def test_plain_folder_gets_a_seeded_fractional_split(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    dm = celeba(tmp_path / "faces", tmp_path, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert sizes(dm) == [14, 2, 4]
    files = split_files(dm)
    assert sorted(sum(files.values(), [])) == celeba_names(20)  # disjoint and complete
    again = celeba(tmp_path / "faces", tmp_path, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert split_files(again) == files
    other = celeba(tmp_path / "faces", tmp_path, val_fraction=0.1, test_fraction=0.2, seed=2)
    assert split_files(other) != files
    unseeded = celeba(tmp_path / "faces", tmp_path, val_fraction=0.1, test_fraction=0.2, seed=None)
    assert split_files(unseeded) == split_files(
        celeba(tmp_path / "faces", tmp_path, val_fraction=0.1, test_fraction=0.2, seed=0)
    )


def test_torchvision_layout_without_partition_file_splits_by_fraction(tmp_path):
    make_celeba_torchvision(tmp_path, n=20, partition=False)
    assert sizes(celeba(tmp_path, tmp_path)) == [16, 2, 2]


def test_listed_but_missing_or_unreadable_files_are_left_out(tmp_path):
    folder = make_celeba_torchvision(tmp_path, n=20)
    (folder / "000001.jpg").unlink()  # train
    (folder / "000013.jpg").write_bytes(b"")  # val
    (folder / "000020.jpg").write_text("not a jpeg")  # test
    write_solid(folder / "extra.jpg", (1, 2, 3))  # not in the partition
    dm = celeba(tmp_path, tmp_path)
    assert sizes(dm) == [11, 3, 3]
    assert "extra.jpg" not in sum(split_files(dm).values(), [])


def test_partition_naming_none_of_the_images_falls_back_to_a_seeded_split(tmp_path, caplog):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    write_partition(tmp_path / "faces" / "list_eval_partition.txt", ["x.jpg", "y.jpg"], [0, 1])
    dm = celeba(tmp_path / "faces", tmp_path)
    assert sizes(dm) == [16, 2, 2]
    assert "names none of the images" in caplog.text


def test_splits_are_views_of_one_cache(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    dm = celeba(tmp_path / "faces", tmp_path)
    views = [dm.splits[split].images for split in SPLITS]
    assert all(isinstance(v, MappedImages) for v in views)
    assert {v.path for v in views} == {str(dm.cache.array_path)}
    assert dm.splits["train"].labels.eq(-1).all()  # faces have no labels


# ---- shapes and pixels ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("crop", "size", "shape"),
    [(148, 64, (3, 64, 64)), (None, None, (3, 218, 178)), (178, None, (3, 178, 178)),
     (None, [48, 40], (3, 48, 40)), (148, 20, (3, 20, 20))],
)  # fmt: skip
def test_celeba_shapes_for_crop_and_size(tmp_path, crop, size, shape):
    make_plain_jpeg_folder(tmp_path / "faces", n=5)
    dm = celeba(tmp_path / "faces", tmp_path, crop=crop, size=size)
    assert dm.image_shape == shape


def test_anime_mixed_sizes_become_one_square(tmp_path):
    make_anime(tmp_path / "anime", n=20)
    dm = AnimeFacesDataModule(
        str(tmp_path / "anime"), size=40, cache_dir=str(tmp_path / "cache"), cache_workers=2
    )
    dm.prepare_data()
    assert dm.image_shape == (3, 40, 40)
    assert sizes(dm) == [16, 2, 2]
    assert dm.cache.source == (tmp_path / "anime" / "images").resolve()


def test_anime_flat_folder_of_mixed_formats(tmp_path):
    make_anime(tmp_path / "mine", n=10, flat=True, suffixes=(".png", ".jpeg", ".webp", ".bmp"))
    dm = AnimeFacesDataModule(str(tmp_path / "mine"), size=24, cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert dm.image_shape == (3, 24, 24) and sum(sizes(dm)) == 10


def test_solid_colour_survives_the_round_trip(tmp_path):
    write_solid(tmp_path / "faces" / "a.jpg", (250, 10, 90))
    write_solid(tmp_path / "faces" / "b.png", (5, 128, 255))
    dm = celeba(tmp_path / "faces", tmp_path, val_fraction=0, test_fraction=0)
    assert dm.cache.files == ["a.jpg", "b.png"]
    images, _ = dm.splits["train"].__getitems__([0, 1])
    colours = dm.to_float(images).mean(dim=(2, 3)) * 255
    assert torch.allclose(colours[0], torch.tensor([250.0, 10, 90]), atol=3)  # JPEG: nearly
    assert torch.allclose(colours[1], torch.tensor([5.0, 128, 255]), atol=1e-3)  # PNG: exactly


# ---- batches -------------------------------------------------------------------------------------
def test_batches_are_uint8_and_become_floats_after_transfer(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    dm = celeba(tmp_path / "faces", tmp_path, batch_size=8)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # 16 train images, drop_last
    images, labels = batches[0]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    floats, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert floats.dtype == torch.float32 and floats.min() >= 0 and floats.max() <= 1
    assert torch.allclose(floats * 255, images.float())
    val = torch.cat([b[0] for b in dm.val_dataloader()])
    assert torch.equal(val, torch.from_numpy(np.array(dm.splits["val"].images)))


def test_batches_read_the_map_and_a_split_pickles_without_its_pixels(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    dm = celeba(tmp_path / "faces", tmp_path, batch_size=4)
    dataset = dm.splits["train"]
    assert len(pickle.dumps(dataset)) < 2000  # 16 images of 3x32x32 would be 49 kB
    loader = dm.train_dataloader()
    seen = torch.cat([images for images, _ in loader])
    expected = torch.from_numpy(np.array(dataset.images))
    assert seen.shape == expected.shape == (16, 3, 32, 32)
    assert sorted(map(bytes, seen.flatten(1).numpy())) == sorted(
        map(bytes, expected.flatten(1).numpy())
    )
    del loader


def test_a_datamodule_holds_its_cache_while_it_lives(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    dm = celeba(tmp_path / "faces", tmp_path)
    paths = (dm.cache.manifest_path, dm.cache.array_path)
    assert not store.remove_unused(*paths)  # what pruning does: it keeps what is held
    del dm
    gc.collect()
    assert store.remove_unused(*paths) and not paths[1].exists()


def test_a_second_datamodule_reuses_the_cache(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=20)
    first = celeba(tmp_path / "faces", tmp_path)
    second = celeba(tmp_path / "faces", tmp_path)
    assert first.cache.built and not second.cache.built
    assert second.cache.array_path == first.cache.array_path


def test_bad_files_do_not_end_the_run(tmp_path):
    make_plain_jpeg_folder(tmp_path / "faces", n=10)
    skipped = add_bad_files(tmp_path / "faces")
    dm = celeba(tmp_path / "faces", tmp_path)
    assert [name for name, _ in dm.cache.skipped] == skipped
    assert sum(sizes(dm)) == 14  # 10 faces + 4 converted


# ---- errors --------------------------------------------------------------------------------------
def test_missing_celeba_is_a_short_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "nowhere", tmp_path / "empty"):
        with pytest.raises(UserError) as error:
            celeba(root, tmp_path)
        message = str(error.value)
        assert "celeba/img_align_celeba" in message and "\n" not in message
        assert f"jessicali9530/celeba-dataset -p {root} --unzip" in message
        assert len(message.replace(str(root), "ROOT")) < 300


def test_zip_not_unzipped_is_named(tmp_path):
    (tmp_path / "celeba-dataset.zip").write_bytes(b"PK")
    with pytest.raises(UserError, match="celeba-dataset.zip: unzip it"):
        celeba(tmp_path, tmp_path)


def test_missing_anime_is_a_short_user_error(tmp_path):
    dm = AnimeFacesDataModule(str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match="splcher/animefacedataset -p .* --unzip"):
        dm.prepare_data()


def test_folder_of_only_bad_files_is_a_user_error(tmp_path):
    add_bad_files(tmp_path / "faces")
    for name in ("cmyk.jpg", "grey.png", "palette.png", "rgba.png"):
        (tmp_path / "faces" / name).unlink()
    with pytest.raises(UserError, match="no usable images"):
        celeba(tmp_path / "faces", tmp_path, crop=None)


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    import torchvision

    def refuse(*args, **kwargs):
        raise RuntimeError("Google Drive quota exceeded")

    monkeypatch.setattr(torchvision.datasets, "CelebA", refuse)
    with pytest.raises(UserError, match="quota exceeded.*kaggle datasets download"):
        celeba(tmp_path / "celeba", tmp_path, download=True)
    calls = []
    monkeypatch.setattr(torchvision.datasets, "CelebA", lambda *a, **k: calls.append(a))
    with pytest.raises(UserError, match="CelebA not found"):
        celeba(tmp_path / "celeba", tmp_path)  # download=false: nothing is fetched
    assert calls == []


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="size"):
        CelebADataModule(str(tmp_path), size="big")
    with pytest.raises(UserError, match="crop"):
        CelebADataModule(str(tmp_path), crop=-3)
    with pytest.raises(UserError, match="val_fraction"):
        CelebADataModule(str(tmp_path), val_fraction=0.6, test_fraction=0.5)
    for wait in (-1, None, "abc", float("inf"), float("nan"), True):
        with pytest.raises(UserError, match=r"data.cache_wait_s must be a number of seconds >= 0"):
            AnimeFacesDataModule(str(tmp_path), cache_wait_s=wait)
    assert AnimeFacesDataModule(str(tmp_path), cache_wait_s=0).cache_wait_s == 0


# ---- any folder of images ------------------------------------------------------------------------
def test_a_plain_image_folder_datamodule(tmp_path):
    make_anime(tmp_path / "mine", n=10, flat=True)
    dm = ImageFolderDataModule(str(tmp_path / "mine"), size=16, cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert dm.image_shape == (3, 16, 16) and sum(sizes(dm)) == 10
    assert dm.cache.array_path.name.startswith("images-16x16-")
    with pytest.raises(UserError, match=r"no images \(.jpg.*\) in .*nowhere; set data.root"):
        ImageFolderDataModule(str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "c")).setup()


# ---- the configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "cls", "shape"),
    [("celeba", CelebADataModule, (3, 64, 64)), ("anime", AnimeFacesDataModule, (3, 64, 64))],
)
def test_config_builds_the_datamodule(tmp_path, data, cls, shape):
    if data == "celeba":
        make_celeba_torchvision(tmp_path / "data", n=10)
    else:
        make_anime(tmp_path / "data", n=10)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    f"data={data}",
                    f"data.root={tmp_path / 'data'}",
                    f"paths.data_dir={tmp_path}",
                    "data.cache_workers=1",
                ],
            )
    finally:
        GlobalHydra.instance().clear()
    assert cfg.data.cache_dir == f"{tmp_path}/cache"
    assert cfg.data.download is False and "num_workers" not in cfg.data
    assert cfg.data.cache_wait_s == 600
    dm = instantiate(cfg.data)
    assert isinstance(dm, cls)
    dm.prepare_data()
    assert dm.image_shape == shape and dm.cache_wait_s == 600
    assert dm.cache.array_path.parent == tmp_path / "cache"
