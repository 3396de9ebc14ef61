"""Checkpoints given on the command line (``ckpt_path=``): read as data only, checked against the
model they are meant for before anything trains, and the run config they carry for ``eval.py``."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ae_lab.errors import UserError, one_line


@dataclass(frozen=True)
class SavedWeights:
    """What :func:`check_checkpoint` compares: a checkpoint's weight shapes and hyperparameters."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    hyper_parameters: dict[str, Any]
    #: the run's config and group choices, as :class:`~ae_lab.run.callbacks.RunConfig` kept them
    run_config: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str) -> SavedWeights:
    """The weight shapes of the checkpoint at ``ckpt_path``; a :class:`UserError` when it is
    missing, a directory, or no readable Lightning checkpoint. Loaded as data only
    (``weights_only=True``): a checkpoint cannot run code."""
    import torch

    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"ckpt_path={path} does not exist")
    if file.is_dir():
        found = sorted(p.name for p in file.glob("*.ckpt")) or sorted(
            str(p.relative_to(file)) for p in file.glob("checkpoints/*.ckpt")
        )
        hint = f" (it holds {', '.join(found[:4])})" if found else ""
        raise UserError(f"ckpt_path={path} is a directory{hint}; give the checkpoint file")
    if not zipfile.is_zipfile(file):
        raise UserError(
            f"ckpt_path={path} is not a checkpoint: not a file written by torch.save (damaged, "
            "cut short, or another kind of file)"
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"ckpt_path={path} is not a Lightning checkpoint: it holds Python objects, not only "
            "weights and settings, and is not loaded (it could run code)"
        ) from None
    except Exception as exc:
        reason = one_line(exc).split(". ")[0][:200]
        raise UserError(f"ckpt_path={path} is not a readable checkpoint ({reason})") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping):
        raise UserError(f"ckpt_path={path} is not a Lightning checkpoint (it has no state_dict)")
    return SavedWeights(
        path=path,
        shapes={k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)},
        hyper_parameters=dict(checkpoint.get("hyper_parameters") or {}),
        run_config=dict((checkpoint.get("callbacks") or {}).get("RunConfig") or {}),
    )


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
        raise UserError(
            f"ckpt_path={saved.path} holds another model's weights: {saved_with}"
            f"{'; '.join(differences[:3])}{more}. Resume with the model and data settings it "
            "was trained with."
        )


def _differing_settings(saved: Mapping[str, Any], ours: Mapping[str, Any]) -> str:
    """``name=value (this run: value)`` for the first hyperparameters that differ."""
    plain = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731 -- tuples as lists
    names = sorted(set(saved) | set(ours))
    differing = [n for n in names if n in saved and n in ours and plain(saved[n]) != plain(ours[n])]
    differing += [n for n in names if (n in saved) != (n in ours)]
    shown = []
    for name in differing[:4]:
        there = plain(saved[name]) if name in saved else "(none)"
        here = plain(ours[name]) if name in ours else "(none)"
        shown.append(f"{name}={there} (this run: {here})")
    return ", ".join(shown)
