"""Checkpoints given on the command line, read as data only and checked before anything trains.

- ``ckpt_path=`` **resumes the same run**: the checkpoint must be of this run's model and image size
  (:func:`check_checkpoint`), and of the same run (:func:`check_resume`): the same data, model,
  objective, optimizer and steps as the settings saved in it
  (:class:`~ae_lab.run.callbacks.RunConfig`),
  with training left to do, and not stopped inside a gradient accumulation window whose gradients
  it does not carry. Only where and how the run reads, logs and draws may differ, and its length may
  grow.
- ``init_from=`` **starts a new run** from a checkpoint's model weights (fine-tuning, another
  dataset): only the shapes must match (:func:`check_checkpoint`); :func:`load_weights` loads them.
  Epoch 0, a new optimizer, no best carried over, fresh random states.

The two are exclusive, except that resuming a run started with ``init_from=X`` may repeat it (its
resume command does): the weights then come from ``ckpt_path``.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import UserError, one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where training stood when a checkpoint was written (from Lightning's loop state)."""

    #: whole epochs trained, as Lightning counts them when it resumes
    epochs: int
    global_step: int
    #: training batches done in the epoch under way, and whether the last of them ended the epoch
    batches: int
    last_batch: bool
    #: the gradients of a window of ``trainer.accumulate_grad_batches`` not yet stepped
    #: (:class:`~ae_lab.run.callbacks.ResumableCheckpoint`)
    accumulated_gradients: bool
    #: the best checkpoint recorded in it ("" when none)
    best: str = ""


@dataclass(frozen=True)
class SavedWeights:
    """What :func:`check_checkpoint` compares: a checkpoint's weight shapes and hyperparameters."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    hyper_parameters: dict[str, Any]
    #: the run's config and group choices, as :class:`~ae_lab.run.callbacks.RunConfig` kept them
    run_config: dict[str, Any] = field(default_factory=dict)
    #: the setting that named it: ``ckpt_path`` (resume) or ``init_from`` (a new run from it)
    setting: str = "ckpt_path"
    #: where training stood; None for a checkpoint without Lightning's loop state
    progress: Progress | None = None

    @property
    def config(self) -> DictConfig | None:
        """The run's composed config (unresolved); None for a checkpoint written without it."""
        text = self.run_config.get("config")
        return OmegaConf.create(text) if text else None


def read_checkpoint(path: str, setting: str = "ckpt_path") -> SavedWeights:
    """The weight shapes of the checkpoint that ``setting`` names; a :class:`UserError` when it is
    missing, a directory, or no readable Lightning checkpoint. Loaded as data only
    (``weights_only=True``): a checkpoint cannot run code."""
    checkpoint = _load(path, setting)
    import torch

    state = checkpoint["state_dict"]
    return SavedWeights(
        path=path,
        shapes={k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)},
        hyper_parameters=dict(checkpoint.get("hyper_parameters") or {}),
        run_config=dict((checkpoint.get("callbacks") or {}).get("RunConfig") or {}),
        setting=setting,
        progress=_progress(checkpoint),
    )


def _load(path: str, setting: str) -> dict[str, Any]:
    import torch

    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"{setting}={path} does not exist")
    if file.is_dir():
        found = sorted(p.name for p in file.glob("*.ckpt")) or sorted(
            str(p.relative_to(file)) for p in file.glob("checkpoints/*.ckpt")
        )
        hint = f" (it holds {', '.join(found[:4])})" if found else ""
        raise UserError(f"{setting}={path} is a directory{hint}; give the checkpoint file")
    if not zipfile.is_zipfile(file):
        raise UserError(
            f"{setting}={path} is not a checkpoint: not a file written by torch.save (damaged, "
            "cut short, or another kind of file)"
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{setting}={path} is not a Lightning checkpoint: it holds Python objects, not only "
            "weights and settings, and is not loaded (it could run code)"
        ) from None
    except Exception as exc:
        reason = one_line(exc).split(". ")[0][:200]
        raise UserError(f"{setting}={path} is not a readable checkpoint ({reason})") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping):
        raise UserError(f"{setting}={path} is not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


def _progress(checkpoint: Mapping[str, Any]) -> Progress | None:
    """Where training stood; None when the checkpoint has no (readable) loop state."""
    try:
        loop = checkpoint["loops"]["fit_loop"]
        epochs, batches = loop["epoch_progress"]["current"], loop["epoch_loop.batch_progress"]
        last_batch = bool(batches["is_last_batch"])
        done = int(epochs["processed"])
        # an epoch whose last batch was done but not yet counted: Lightning counts it on resuming,
        # unless its validation was stopped and runs again first (run/callbacks/checkpoint.py)
        if last_batch and int(epochs["started"]) > done and not _validation_to_rerun(loop):
            done += 1
        states = [s for s in (checkpoint.get("callbacks") or {}).values() if isinstance(s, Mapping)]
        return Progress(
            epochs=done,
            global_step=int(checkpoint.get("global_step", 0)),
            batches=int(batches["current"]["completed"]),
            last_batch=last_batch,
            accumulated_gradients=any(s.get("accumulated_gradients") for s in states),
            best=next((str(s["best_model_path"]) for s in states if s.get("best_model_path")), ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _validation_to_rerun(loop: Mapping[str, Any]) -> bool:
    """Whether the fit's validation was saved as stopped inside its first batch: a stop during a
    validation, which Lightning runs again from its start on resuming."""
    total = (loop.get("epoch_loop.val_loop.batch_progress") or {}).get("total") or {}
    return int(total.get("ready", 0)) == int(total.get("processed", 0)) + 1


def check_checkpoint(saved: SavedWeights, model: Any) -> None:
    """Refuse a checkpoint of another model or image size: its weights must match the model this
    run builds, name for name and shape for shape."""
    theirs = saved.shapes
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    differences = [f"{k} missing" for k in ours if k not in theirs]
    differences += [f"{k} not in this model" for k in theirs if k not in ours]
    differences += [
        f"{k} is {list(theirs[k])} there, {list(ours[k])} here"
        for k in ours
        if k in theirs and theirs[k] != ours[k]
    ]
    if differences:
        settings = _differing_settings(saved.hyper_parameters, dict(model.hparams))
        more = f"; {len(differences) - 3} more" if len(differences) > 3 else ""
        saved_with = f"it was saved with {settings}; " if settings else ""
        fix = (
            "Resume with the model and data settings it was trained with."
            if saved.setting == "ckpt_path"
            else "Start from a checkpoint of the same net, latent size and bottleneck, on images "
            "of the same size."
        )
        raise UserError(
            f"{saved.setting}={saved.path} holds another model's weights: {saved_with}"
            f"{'; '.join(differences[:3])}{more}. {fix}"
        )


def jsonable(value: Any) -> Any:
    """``value`` as JSON reads it back: tuples as lists, anything unknown as its text."""
    return json.loads(json.dumps(value, default=str))


def _differing_settings(saved: Mapping[str, Any], ours: Mapping[str, Any]) -> str:
    """``name=value (this run: value)`` for the first hyperparameters that differ."""
    plain = jsonable
    names = sorted(set(saved) | set(ours))
    differing = [n for n in names if n in saved and n in ours and plain(saved[n]) != plain(ours[n])]
    differing += [n for n in names if (n in saved) != (n in ours)]
    shown = []
    for name in differing[:4]:
        there = plain(saved[name]) if name in saved else "(none)"
        here = plain(ours[name]) if name in ours else "(none)"
        shown.append(f"{name}={there} (this run: {here})")
    return ", ".join(shown)


# ---- ckpt_path against init_from ----------------------------------------------------------------
def check_exclusive(cfg: DictConfig, saved: SavedWeights | None) -> None:
    """``init_from`` and ``ckpt_path`` together are refused, except when ``ckpt_path`` is a
    checkpoint of a run started with this very ``init_from`` (its resume command repeats it)."""
    start = cfg.get("init_from")
    if not start or saved is None:
        return
    theirs = saved.config.get("init_from") if saved.config is not None else None
    if theirs and _same_file(str(theirs), str(start)):
        return
    raise UserError(
        f"init_from={start} and ckpt_path={saved.path} are both set: ckpt_path resumes the run "
        "that wrote it (its optimizer, epoch and best), init_from starts a new run from a "
        "checkpoint's weights; give one of them"
    )


def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def load_weights(saved: SavedWeights, model: Any) -> None:
    """Load the checkpoint's model weights into ``model`` (weights-only loading, shapes checked
    first); nothing else of it: no optimizer, loop position, best or random state."""
    import torch

    check_checkpoint(saved, model)
    state = torch.load(Path(saved.path).expanduser(), map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    choices = saved.run_config.get("choices") or {}
    trained = ", ".join(f"{g}={choices[g]}" for g in ("data", "model") if g in choices)
    where = (
        f" (epoch {saved.progress.epochs}, step {saved.progress.global_step}"
        f"{'; ' + trained if trained else ''})"
        if saved.progress is not None
        else ""
    )
    log.info(
        "init_from=%s: a new run starts from the model weights of that checkpoint%s: epoch 0, a "
        "new optimizer, no best carried over",
        saved.path,
        where,
    )
