"""ResumableCheckpoint keeps Lightning's ModelCheckpoint state key, so checkpoints resume into both."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

from ae_lab.callbacks import ResumableCheckpoint


def test_the_state_key_is_model_checkpoints_for_the_same_arguments(tmp_path) -> None:
    for kwargs in ({"monitor": "val/loss", "mode": "min"}, {"every_n_train_steps": 5}):
        ours = ResumableCheckpoint(dirpath=tmp_path, **kwargs)
        theirs = ModelCheckpoint(dirpath=tmp_path, **kwargs)
        assert ours.state_key == theirs.state_key
        assert ours.state_key == ours.state_key  # kept once made
