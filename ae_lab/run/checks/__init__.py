"""Every setting checked before anything is trained, each bad one refused with a
:class:`~ae_lab.errors.UserError` that names it and says what would be valid.

1. **Types, from the code** (:mod:`.types`): every ``_target_`` node against its target's
   signature, and the top-level settings against their declared types.
2. **Ranges, declared** (:mod:`.ranges`): the settings whose valid values the type does not say.
3. **What needs more than one setting or the data** (here): a schedule with no known run length,
   an empty split; :mod:`ae_lab.run.checkpoints` checks a ``ckpt_path``.

What constructors refuse themselves (``data.size=big``, ``trainer.accelerator=gpu`` without a GPU)
comes out through :func:`ae_lab.run.build.build` as the same kind of short error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ae_lab.errors import UserError, one_line
from ae_lab.models.optimization import RUN_LENGTH_ARGUMENTS
from ae_lab.run.checks.ranges import RULES, check_ranges
from ae_lab.run.checks.types import (
    HYDRA_KEYS,
    check_arguments,
    check_settings,
    check_unknown,
    parameters,
)

__all__ = ["HYDRA_KEYS", "RULES", "check_config", "check_splits", "parameters", "resolved"]


def check_run_length(tree: Mapping[str, Any]) -> list[str]:
    """A schedule that is sized by the run's length needs a run with a known length."""
    scheduler = tree.get("model", {}).get("scheduler")
    trainer = tree.get("trainer", {})
    if not isinstance(scheduler, Mapping):
        return []
    sized_by_run = [
        name for name in RUN_LENGTH_ARGUMENTS if name in scheduler and scheduler[name] is None
    ]
    unbounded = trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (-1, None)
    if sized_by_run and unbounded:
        name = sized_by_run[0]
        return [
            f"model.scheduler ({scheduler['_target_']}) spans the whole run, but "
            "trainer.max_epochs=-1 and trainer.max_steps=-1 give it no end: set "
            f"trainer.max_epochs>=1 or trainer.max_steps>=1, or model.scheduler.{name}=N"
        ]
    return []


def check_checkpointing(tree: Mapping[str, Any]) -> list[str]:
    """``trainer.enable_checkpointing=false`` beside the checkpoint callback every run has."""
    trainer, callbacks = tree.get("trainer", {}), tree.get("callbacks") or {}
    if trainer.get("enable_checkpointing") is False and callbacks.get("model_checkpoint"):
        return [
            "trainer.enable_checkpointing=false: every run keeps last.ckpt, so that a stopped "
            "run can resume; to keep only it, set callbacks.model_checkpoint.save_top_k=0, or "
            "remove checkpoints altogether with ~callbacks.model_checkpoint"
        ]
    return []


def check_validation_interval(trainer: Mapping[str, Any], train_batches: int) -> None:
    """An integer ``trainer.val_check_interval`` counts batches within an epoch (unless
    ``check_val_every_n_epoch`` is null): more than an epoch's ``train_batches`` never validates,
    which Lightning refuses with a traceback once the fit has begun."""
    interval, limit = trainer.get("val_check_interval"), trainer.get("limit_train_batches")
    if type(interval) is not int or trainer.get("check_val_every_n_epoch") is None:
        return
    if type(limit) is int:
        train_batches = min(train_batches, limit)
    elif isinstance(limit, float):
        train_batches = int(train_batches * limit)
    if interval > train_batches:
        raise UserError(
            f"trainer.val_check_interval={interval}: an epoch has {train_batches} training "
            f"batches here; give at most {train_batches}, a fraction of the epoch (0.5), or "
            "trainer.check_val_every_n_epoch=null to count batches across epochs"
        )


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The whole config with every interpolation resolved, as plain containers."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "config"
        raise UserError(f"{key}: {one_line(str(exc).splitlines()[0])}") from None


def interpolated(cfg: DictConfig) -> set[str]:
    """The top-level names that the config's interpolations read (``${lr}``: ``lr``)."""
    return set(re.findall(r"\$\{\s*([A-Za-z_][\w]*)", OmegaConf.to_yaml(cfg, resolve=False)))


def check_config(cfg: DictConfig) -> None:
    """Every check that needs only the config; one :class:`UserError` listing what is wrong."""
    tree = resolved(cfg)
    problems = check_unknown(tree, interpolated(cfg)) + check_settings(tree) + check_arguments(tree)
    problems += check_ranges(tree) + check_run_length(tree) + check_checkpointing(tree)
    if problems:
        raise UserError("; ".join(dict.fromkeys(problems)))


#: The data settings that size the held-out splits.
FRACTIONS = ("val_fraction", "test_fraction")


def check_splits(datamodule: Any, data_cfg: DictConfig) -> None:
    """Refuse a split with no images: nothing to train on, or metrics of nothing."""
    from ae_lab.data.base import SPLITS

    sizes = {split: datamodule.split_size(split) for split in SPLITS}
    empty = [split for split, size in sizes.items() if size == 0]
    if empty:
        knobs = [f"data.{k} (now {data_cfg[k]})" for k in FRACTIONS if k in data_cfg]
        fix = f"raise {' or '.join(knobs)}" if knobs else f"check data.root={data_cfg.root}"
        counts = ", ".join(f"{split} {size}" for split, size in sizes.items())
        raise UserError(
            f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
            f"(images: {counts}): {fix} so that every split holds images"
        )
