"""``ckpt_path=`` resumes the same run: the checkpoint's saved settings
(:class:`~ae_lab.run.callbacks.RunConfig`) are compared with this run's (:func:`check_resume`):
the same data, model, objective, optimizer and steps, with training left to do, and not stopped
inside a gradient accumulation window whose gradients it does not carry. Only where and how the
run reads, logs and draws may differ, its length may grow, and its batch may shrink (after running
out of memory). Reading the checkpoint and checking its shapes: :mod:`ae_lab.run.checkpoints`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ae_lab.errors import UserError
from ae_lab.models.optimization import RUN_LENGTH_ARGUMENTS
from ae_lab.run.checkpoints import Progress, SavedWeights, jsonable
from ae_lab.run.checks.types import show
from ae_lab.run.commands import command, hydra_value

log = logging.getLogger(__name__)

#: The fix for a checkpoint of another run, ``{path}`` its path.
OTHER_RUN_FIX = (
    "Resume with the settings it was trained with, or start a new run from its weights with "
    "init_from={path}"
)
#: The settings that define a run, compared on resume: what the images and splits are, what the
#: model, its objective and its optimizer are, and what one optimizer step and one epoch are.
DEFINING = ("seed", "data", "model")
DEFINING_TRAINER = (
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "overfit_batches",
)
#: Settings under :data:`DEFINING` that may differ on resume: where the data is read from and how
#: fast, and what only the final evaluation uses; nothing the training computes depends on them.
MAY_DIFFER = (
    "data.root",  # a moved dataset is the same dataset
    "data.download",
    "data.on_device",
    "data.cache_dir",
    "data.cache_workers",
    "data.cache_wait_s",
    # a smaller batch after running out of memory (the epoch under way restarts from its first
    # batch: ae_lab.data.batches says so)
    "data.batch_size",
    "model.compile",  # compiled in place: the same weights and the same steps
    "model.nll_samples",  # test/nll only
    "model.optimizer.fused",  # the same update, in one kernel
    "model.optimizer.foreach",
)
#: The run's length (``limit_train_batches`` shortens its epochs): it may change on resume, unless a
#: schedule was sized by it.
LENGTH = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches")
#: Shown in one refusal, at most.
SHOWN = 4
_ABSENT = object()


def check_resume(saved: SavedWeights, cfg: DictConfig, choices: Mapping[str, Any]) -> None:
    """Refuse to resume, before anything loads, from a checkpoint of another run (its saved settings
    differ from ``cfg`` where they define the run), of a run that has nothing left to train, or
    saved inside a gradient accumulation window without that window's gradients. A checkpoint
    without a saved config is left to the shape check (:func:`check_checkpoint`, once the model
    is built) and the hyperparameter check (:func:`check_hyperparameters`)."""
    if (theirs := saved.config) is not None:
        differences = _run_differences(theirs, cfg, saved.run_config.get("choices") or {}, choices)
        if differences:
            _refuse_other_run(saved, differences)
    if saved.progress is not None:
        _check_left_to_train(saved, saved.progress, cfg)
        _check_accumulation(saved, saved.progress, cfg)


def check_hyperparameters(saved: SavedWeights, model: Any) -> None:
    """For a checkpoint without its run's config (written by an older version): refuse one whose
    model hyperparameters (its net, objective and optimizer) differ from this run's."""
    if saved.config is not None:
        return  # compared in full by check_resume
    theirs = {"model": _plain(OmegaConf.create(jsonable(saved.hyper_parameters)))}
    ours = {"model": _plain(OmegaConf.create(jsonable(dict(model.hparams))))}
    differences = [d for d in _diff(theirs, ours, "") if not _may_differ(d[0])]
    if differences:
        _refuse_other_run(saved, [_describe(path, a, b) for path, a, b in differences])


def _refuse_other_run(saved: SavedWeights, differences: Sequence[str]) -> None:
    more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
    fix = OTHER_RUN_FIX.format(path=hydra_value(saved.path))
    raise UserError(
        f"ckpt_path={saved.path} is a checkpoint of another run: "
        f"{'; '.join(differences[:SHOWN])}{more}. {fix}"
    )


def _run_differences(
    theirs: DictConfig,
    ours: DictConfig,
    their_choices: Mapping[str, Any],
    choices: Mapping[str, Any],
) -> list[str]:
    """``setting=value (checkpoint: value)`` for each setting defining the run that differs; a
    config group chosen differently is named once (``data=fashion_mnist (checkpoint: mnist)``)
    instead of each setting it changes."""
    compared = [*DEFINING, *(f"trainer.{name}" for name in DEFINING_TRAINER)]
    if _schedule_spans_run(theirs) or _schedule_spans_run(ours):
        compared += LENGTH  # its length was the run's: a longer run is another schedule
    a = {path: _plain_at(theirs, path) for path in compared}
    b = {path: _plain_at(ours, path) for path in compared}
    differences = [d for d in _diff(a, b, "") if not _may_differ(d[0])]
    groups = {
        str(group): (str(their_choices.get(group)), str(option))
        for group, option in choices.items()
        if group in their_choices and str(their_choices.get(group)) != str(option)
    }
    shown: list[str] = []
    for path, there, here in differences:
        group = _deepest_group(path, groups)
        line = (
            f"{group}={groups[group][1]} (checkpoint: {groups[group][0]})"
            if group
            else _describe(path, there, here)
        )
        if line not in shown:
            shown.append(line)
    return shown


def _deepest_group(path: str, groups: Mapping[str, Any]) -> str | None:
    """The config group (``model/optimizer``) whose node holds ``path``, the deepest one."""
    holding = [
        g
        for g in groups
        if path == g.replace("/", ".") or path.startswith(g.replace("/", ".") + ".")
    ]
    return max(holding, key=len) if holding else None


def _may_differ(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in MAY_DIFFER)


def _describe(path: str, there: Any, here: Any) -> str:
    return f"{path}={_show(here)} (checkpoint: {_show(there)})"


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(not set)"
    if isinstance(value, Mapping):
        return str(value.get("_target_") or json.dumps(value, default=str))
    return show(value)


def _diff(a: Any, b: Any, path: str) -> list[tuple[str, Any, Any]]:
    """``(path, a's value, b's value)`` of each leaf that differs between two plain trees."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        found = []
        for key in [*a, *(k for k in b if k not in a)]:
            child = f"{path}.{key}" if path else str(key)
            found += _diff(a.get(key, _ABSENT), b.get(key, _ABSENT), child)
        return found
    return [] if _same(a, b) else [(path, a, b)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)  # 1 and 1.0 from YAML are the same setting
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _plain_at(cfg: DictConfig, path: str) -> Any:
    """The setting at ``path`` as plain values, interpolations resolved where they can be (a saved
    config's ``${paths.data_dir}`` may not resolve outside its run: then as written)."""
    parent, _, key = path.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or key not in node:
        return _ABSENT
    return _plain(_child(node, key))


def _child(node: DictConfig | ListConfig, key: Any) -> Any:
    try:
        return node[key]
    except Exception:  # an interpolation that does not resolve here: compared as written
        return OmegaConf.to_container(node, resolve=False)[key]


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return {str(k): _plain(_child(node, k)) for k in node}
    if isinstance(node, ListConfig):
        return [_plain(_child(node, i)) for i in range(len(node))]
    return node


def _schedule_spans_run(cfg: DictConfig) -> bool:
    """Whether ``model.scheduler`` takes its length (``T_max``, ``total_steps``) from the run's."""
    scheduler = OmegaConf.select(cfg, "model.scheduler", throw_on_resolution_failure=False)
    return isinstance(scheduler, DictConfig) and any(
        name in scheduler and scheduler[name] is None for name in RUN_LENGTH_ARGUMENTS
    )


def _max_epochs(trainer: DictConfig) -> tuple[int, int]:
    """``(max_epochs, max_steps)`` as Lightning takes them (-1: no limit)."""
    max_steps = trainer.get("max_steps")
    max_steps = -1 if max_steps is None else int(max_steps)
    max_epochs = trainer.get("max_epochs")
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 and trainer.get("max_time") is None else -1
    return int(max_epochs), max_steps


def _check_left_to_train(saved: SavedWeights, progress: Progress, cfg: DictConfig) -> None:
    """Refuse a checkpoint whose run already reaches this run's length: resuming would train
    nothing (Lightning ends the fit at once) and only evaluate its best checkpoint again."""
    max_epochs, max_steps = _max_epochs(cfg.trainer)
    epochs, steps = progress.epochs, progress.global_step
    if max_steps != -1 and steps >= max_steps:
        reached, longer = f"trainer.max_steps={max_steps}", f"trainer.max_steps=M with M > {steps}"
    elif max_epochs != -1 and epochs >= max_epochs:
        reached, longer = (
            f"trainer.max_epochs={max_epochs}",
            f"trainer.max_epochs=M with M > {epochs}",
        )
    else:
        return
    path = hydra_value(saved.path)
    if _schedule_spans_run(cfg):  # a longer run would be another schedule (see check_resume)
        longer = f"start a new run from its weights with init_from={path} (its schedule has ended)"
    else:
        longer = f"resume with {longer}"
    evaluate = command("eval.py", [f"ckpt_path={path}"])
    raise UserError(
        f"ckpt_path={saved.path} is of a finished run: it has trained {_count(epochs, 'epoch')} "
        f"({_count(steps, 'step')}), which reaches {reached}, so resuming would train nothing. To "
        f"train longer, {longer}; to evaluate it: {evaluate}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_accumulation(saved: SavedWeights, progress: Progress, cfg: DictConfig) -> None:
    """Refuse a checkpoint saved inside a window of ``trainer.accumulate_grad_batches`` that does
    not carry the window's gradients (written under DDP, by Lightning's own ModelCheckpoint, or by
    an older version): resumed, the window's step would miss the batches before the stop."""
    k = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    inside = k > 1 and progress.batches % k != 0 and not progress.last_batch
    if not inside or progress.accumulated_gradients:
        return
    earlier = f" such as {progress.best}" if progress.best else ""
    raise UserError(
        f"ckpt_path={saved.path} was saved inside a gradient accumulation window (after "
        f"{progress.batches % k} of its trainer.accumulate_grad_batches={k} batches) without the "
        "gradients accumulated so far, so resuming from it would not continue the run exactly. "
        f"Resume from a checkpoint saved at a window's end{earlier}, or start a new run from its "
        f"weights with init_from={hydra_value(saved.path)}"
    )


# ---- init_from: a new run from a checkpoint's weights ------------------------------------------
