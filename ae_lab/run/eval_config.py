"""``eval.py``'s config: the run's own, with the command line's overrides applied to it.

A checkpoint carries its run's composed config (:class:`~ae_lab.run.callbacks.RunConfig`); older ones,
or ones written without it, are matched with ``RUN/.hydra/`` beside their ``checkpoints/`` folder.

1. Before Hydra starts, :func:`prepare_argv` adds the run's group choices (``model=vae``,
   ``data=mnist``...) to the command line, so overrides such as ``model.nll_samples=1000`` find
   their keys, and points ``hydra.run.dir`` at ``RUN/eval/<time>``.
2. In the job, :func:`run_config` starts from the run's saved config and copies in only what the
   command line set (``data.root=DIR``, ``data=fashion_mnist``,
   ``callbacks.latent_interpolation.steps=100``): defaults that changed since the run cannot change
   what is evaluated. ``model.X=...`` overrides reach the loaded model as hyperparameters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import UserError
from ae_lab.run.commands import hydra_value

log = logging.getLogger(__name__)

EVAL_FOLDER = "eval"
#: Classes of an earlier layout that a run's saved config may name, and where they are now: a
#: checkpoint written before the move still evaluates.
MOVED_TARGETS = {
    **{
        f"ae_lab.callbacks.{name}": f"ae_lab.figures.{name}"
        for name in (
            "DenoisingPanel",
            "KLPerUnit",
            "LatentInterpolation",
            "LatentSpace",
            "Reconstructions",
            "WeightProduct",
        )
    },
    # prior samples became the samples of every model (a fitted density's, and the prior's)
    "ae_lab.callbacks.PriorSamples": "ae_lab.figures.Samples",
    "ae_lab.figures.PriorSamples": "ae_lab.figures.Samples",
    "ae_lab.callbacks.ResumableCheckpoint": "ae_lab.run.callbacks.ResumableCheckpoint",
    "ae_lab.tb_logger.TensorBoardLogger": "lightning.pytorch.loggers.TensorBoardLogger",
}
#: Top-level settings of earlier versions that no longer exist.
RETIRED_SETTINGS = ("lean_step",)
STAMP = "${now:%Y-%m-%d_%H-%M-%S}"


def run_folder(ckpt_path: str | Path) -> Path:
    """The run directory of a checkpoint: ``RUN`` for ``RUN/checkpoints/x.ckpt``, else the
    checkpoint's own folder."""
    path = Path(ckpt_path).expanduser().resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def saved_run(ckpt_path: str) -> tuple[str, dict[str, str]]:
    """``(config YAML, group choices)`` of the run that wrote ``ckpt_path``; a UserError naming
    what is missing when neither the checkpoint nor ``RUN/.hydra/`` has them."""
    from ae_lab.run.checkpoints import read_checkpoint

    saved = read_checkpoint(ckpt_path)
    if saved.run_config.get("config"):
        return saved.run_config["config"], dict(saved.run_config.get("choices") or {})
    hydra_dir = run_folder(ckpt_path) / ".hydra"
    if not (hydra_dir / "config.yaml").is_file():
        raise UserError(
            f"ckpt_path={ckpt_path}: the checkpoint holds no run config and {hydra_dir} has no "
            "config.yaml; keep the checkpoint in its run directory (RUN/checkpoints/)"
        )
    choices: dict[str, str] = {}
    if (hydra_dir / "hydra.yaml").is_file():
        found = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices")
        choices = {str(k): str(v) for k, v in (found or {}).items() if v is not None}
    return (hydra_dir / "config.yaml").read_text(), choices


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _value(override: str) -> str:
    """The value of ``key=value`` as Hydra reads it (quotes and escapes undone); as written when
    the grammar refuses it (Hydra then says what is wrong)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return str(OverridesParser.create().parse_override(override).value())
    except Exception:
        return override.split("=", 1)[1]


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the run's group choices and the eval folder added before the user's own
    overrides (which win); unchanged when there is no readable checkpoint to start from (the job
    then says what is wrong) or when help is asked for."""
    args = list(argv[1:])
    given = [a for a in args if not a.startswith("-") and "=" in a]
    ckpt = next((_value(a) for a in given if _key(a) == "ckpt_path"), None)
    if ckpt is None or any(a in ("--help", "-h", "--hydra-help") for a in args):
        return list(argv)
    try:
        _, choices = saved_run(ckpt)
    except UserError:
        return list(argv)
    keys = {_key(a) for a in given}
    added = [
        f"{group}={option}"
        for group, option in choices.items()
        if not group.startswith("hydra/") and option != "None" and group not in keys
    ]
    if "hydra.run.dir" not in keys:
        eval_dir = hydra_value(f"{run_folder(ckpt) / EVAL_FOLDER}/{STAMP}")
        added.append(f"hydra.run.dir={eval_dir}")
    return [argv[0], *added, *args]


def run_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """The run's saved config with this command line's overrides copied in from ``cfg`` (the
    composed eval config), and the ``model.X`` overrides as hyperparameters for the loaded model."""
    from hydra.core.hydra_config import HydraConfig

    if not cfg.get("ckpt_path"):
        raise UserError(
            "eval.py needs the checkpoint to evaluate: ckpt_path=RUN/checkpoints/last.ckpt"
        )
    text, choices = saved_run(cfg.ckpt_path)
    base = OmegaConf.create(text)
    for name in RETIRED_SETTINGS:
        base.pop(name, None)
    retarget_moved(base)
    added = {f"{group}={option}" for group, option in choices.items()}
    overrides = [o for o in HydraConfig.get().overrides.task if o not in added]
    groups = [o for o in overrides if _is_group(_key(o), choices)]
    model: dict[str, Any] = {}
    for override in [*groups, *(o for o in overrides if o not in groups)]:
        key = _key(override)
        if key in ("ckpt_path", "hydra.run.dir") or key.startswith("hydra."):
            continue
        path = key.replace("/", ".")
        if path == "model" or path.startswith("model."):
            model.update(_model_override(path, cfg))
            continue
        value = OmegaConf.select(cfg, path, throw_on_missing=False)
        OmegaConf.update(base, path, value, merge=False, force_add=True)
    base.ckpt_path = None  # evaluated, not resumed
    for dropped in drop_retired_arguments(base):
        log.warning(
            "the run's config sets %s, which this version no longer takes: ignored", dropped
        )
    return base, model


def retarget_moved(tree: Any) -> None:
    """Point, in place, every ``_target_`` of :data:`MOVED_TARGETS` at where the class is now."""
    if isinstance(tree, DictConfig):
        target = tree.get("_target_") if "_target_" in tree else None
        if isinstance(target, str) and target in MOVED_TARGETS:
            tree["_target_"] = MOVED_TARGETS[target]
        for _, child in tree.items_ex(resolve=False):
            retarget_moved(child)


def drop_retired_arguments(tree: Any, path: str = "") -> list[str]:
    """Remove, in place, the arguments a ``_target_`` of the run's config no longer takes (a run
    of an older version: ``data.num_workers``), so its checkpoint still evaluates; their paths."""
    from hydra.utils import get_object

    from ae_lab.run.checks import HYDRA_KEYS, parameters

    dropped: list[str] = []
    if isinstance(tree, DictConfig):
        if isinstance(tree.get("_target_"), str):
            try:
                takes, closed = parameters(get_object(tree["_target_"]))
            except Exception:  # cannot be imported: the config check says so
                takes, closed = {}, False
            for name in [str(k) for k in tree if str(k) not in HYDRA_KEYS]:
                if closed and name not in takes:
                    del tree[name]
                    dropped.append(f"{path}.{name}" if path else name)
        for key, node in list(tree.items_ex(resolve=False)):
            child = f"{path}.{key}" if path else str(key)
            dropped += drop_retired_arguments(node, child)
    return dropped


def _is_group(key: str, choices: Mapping[str, str]) -> bool:
    return "/" in key or key in choices


#: The model's settings that change how it is evaluated, not what it computes: the only
#: ``model.X`` eval.py takes (the rest describe the trained weights).
EVALUATION_SETTINGS = ("nll_samples", "compile")


def _model_override(path: str, cfg: DictConfig) -> dict[str, Any]:
    parts = path.split(".")
    if len(parts) != 2 or parts[1] not in EVALUATION_SETTINGS:
        settings = " or ".join(f"model.{name}=..." for name in EVALUATION_SETTINGS)
        raise UserError(
            f"{path}: eval.py evaluates the checkpoint's model as it was trained; only its "
            f"evaluation settings change ({settings}). To train another model, use train.py"
        )
    value = OmegaConf.select(cfg, path)
    return {parts[1]: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value}


def load_model(ckpt_path: str, overrides: Mapping[str, Any]) -> Any:
    """The checkpoint's model (weights-only loading) with its evaluation settings overridden."""
    from ae_lab.models import Autoencoder

    try:
        return Autoencoder.load_from_checkpoint(
            ckpt_path, map_location="cpu", weights_only=True, **dict(overrides)
        )
    except (TypeError, ValueError) as error:
        raise UserError(f"model: {error}") from None
