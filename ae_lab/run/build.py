"""Build a run's parts from its composed config: the data module, the model sized from the data,
and the trainer with the callbacks and loggers every run needs.

Every constructor goes through :func:`build`, so what a constructor refuses reaches the user as one
``error:`` line naming the setting, like the checks before it (:mod:`ae_lab.run.checks`).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import UserError, one_line
from ae_lab.figures import FigureCallback
from ae_lab.run import parallel
from ae_lab.run import tensorboard as tb
from ae_lab.run.callbacks import DivergenceGuard, GracefulStop, RandomState, RunConfig
from ae_lab.run.checkpoint_io import AtomicCheckpointIO
from ae_lab.run.checks import check_splits

#: The progress bar is redrawn every this many batches (every batch costs a terminal write).
PROGRESS_REFRESH_BATCHES = 20

#: Trainer arguments newer than the oldest Lightning supported, with the value a run gets where the
#: installed Trainer takes them and the config does not set them (``+trainer.X=VALUE`` does).
NEWER_TRAINER_ARGUMENTS: dict[str, Any] = {
    # Lightning >= 2.6; off: ae_lab writes HParams itself at the end of a run, with the final metrics
    "enable_autolog_hparams": False,
}


def build(node: DictConfig, setting: str, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; what the constructor refuses (a :class:`UserError`, a
    ``ValueError``, Lightning's ``MisconfigurationException``, a missing optional package) becomes
    a :class:`UserError` naming ``setting``. Anything else is a bug and keeps its traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        # a value the constructor refuses, or a setting that needs a package not installed
        # (trainer.accelerator=tpu without torch_xla)
        if isinstance(cause, ValueError | MisconfigurationException | ModuleNotFoundError):
            raise UserError(f"{setting}: {one_line(cause)}") from None
        raise


def _instantiate_all(group: DictConfig | None, name: str, **kwargs: Any) -> list[Any]:
    """Every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not group:
        return []
    return [
        build(entry, f"{name}.{key}", **kwargs.get(key, {}))
        for key, entry in group.items()
        if entry and "_target_" in entry
    ]


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...]) -> L.LightningModule:
    """The model a ``model/`` config describes, sized for images of ``input_shape``, once a
    weightless copy of it has shown that its training state fits in memory.

    Nested parts (net, optimizer, corruption) reach the model as plain configs that it builds and
    keeps in its hyperparameters, so its checkpoints reload with ``weights_only=True``.
    """
    options = {"input_shape": input_shape, "_recursive_": False, "_convert_": "all"}
    with torch.device("meta"):  # shapes only: no memory for the weights
        check_fits(sum(p.numel() for p in build(model_cfg, "model", **options).parameters()))
    return build(model_cfg, "model", **options)


#: Bytes a float32 parameter takes while training: itself, its gradient and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def check_fits(parameters: int, available: int | None = None) -> None:
    """Refuse a model whose weights, gradients and optimizer state alone exceed the memory this
    machine has free (``available`` bytes; read from the system when None)."""
    available = free_memory() if available is None else available
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    if available is not None and needed > available:
        raise UserError(
            f"model: {parameters / 1e6:,.1f} M parameters need about {_size(needed)} to train "
            f"(weights, gradients and Adam's state), but {_size(available)} of memory is free: "
            "make the model smaller (model.net.hidden_dims=..., model.net.channels=..., "
            "model.latent_dim=...)"
        )


def free_memory() -> int | None:
    """Bytes of memory free for a new model: on the GPU when one will train it, else the CPU's
    available memory (Linux's MemAvailable); None when unknown."""
    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:,.0f} TB"


def prepare_data(cfg: DictConfig) -> L.LightningDataModule:
    """The data module, its files found (downloaded, cached) and its splits checked."""
    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()  # finds, downloads or caches the files; a short error when it cannot
    check_splits(datamodule, cfg.data)
    return datamodule


def _no_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")  # Lightning's advert for its cloud logger


def quiet_libraries() -> None:
    """One copy of each log line (through Hydra's handlers: console and the run's log file), and
    none of the notices that a user cannot act on (deprecations, Lightning's adverts)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    advertiser = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_advert not in advertiser.filters:
        advertiser.addFilter(_no_advert)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def no_nvml_probe() -> None:
    """Without a GPU, turn off the NVML-based CUDA check that Lightning's import turns on: with a
    CUDA build of torch and no driver, every optimizer step then probes NVML and fails."""
    if not torch.cuda.is_available():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def hydra_job() -> tuple[list[str], dict[str, Any], bool]:
    """The job's overrides, its group choices and whether it is a sweep job (none outside
    Hydra)."""
    if not HydraConfig.initialized():
        return [], {}, False
    hydra = HydraConfig.get()
    overrides = list(hydra.overrides.task)
    choices = {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra/")}
    return overrides, choices, hydra.mode == RunMode.MULTIRUN


def progress_bar(cfg: DictConfig) -> bool:
    """``trainer.enable_progress_bar``, whose null means on, except in a job of a parallel sweep:
    jobs running at once would draw their bars over each other on the one terminal."""
    asked = cfg.trainer.get("enable_progress_bar")
    if asked is not None:
        return bool(asked)
    return (parallel.parallel_jobs() or 1) == 1


def _callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The configured callbacks, after those every run needs: the divergence guard first (it must
    check before a figure draws or a checkpoint is saved), the random state, the graceful stop and
    the run's config kept in each checkpoint (for ``eval.py``)."""
    _, choices, _ = hydra_job()
    config = RunConfig(OmegaConf.to_yaml(cfg), {k: str(v) for k, v in choices.items()})
    fixed: list[L.Callback] = [DivergenceGuard(), RandomState(), GracefulStop(), config]
    configured = _instantiate_all(cfg.get("callbacks"), "callbacks")
    if progress_bar(cfg) and not any(isinstance(c, TQDMProgressBar) for c in configured):
        fixed.append(TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_BATCHES))
    return [*fixed, *configured]


def _loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers; a sweep job's TensorBoard events go in a folder named by its
    overrides (``tensorboard/model=vae,model.beta=4/``), so its run says what differs."""
    overrides, _, in_sweep = hydra_job()
    versions = {}
    for key, entry in (cfg.get("logger") or {}).items():
        tensorboard = entry and str(entry.get("_target_", "")).endswith("TensorBoardLogger")
        if tensorboard and in_sweep and not entry.get("version"):
            swept = tb.swept_keys(HydraConfig.get().sweep.dir)
            versions[key] = {"version": tb.run_name(overrides, swept)}
    return _instantiate_all(cfg.get("logger"), "logger", **versions)


def _plugins(cfg: DictConfig) -> list[Any]:
    """``trainer.plugins``, plus atomic checkpoint writes unless a CheckpointIO is given."""
    given = cfg.trainer.get("plugins")
    if not given:
        plugins = []
    else:
        plugins = instantiate(given, _convert_="all")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def _is_figure(target: Any) -> bool:
    try:
        found = get_object(str(target))
    except Exception:  # the config check reports a target that cannot be imported
        return False
    return isinstance(found, type) and issubclass(found, FigureCallback)


def build_trainer(cfg: DictConfig, for_evaluation: bool = False) -> L.Trainer:
    """The trainer of a run; ``for_evaluation``: one device, the figure callbacks only, no logger
    and no checkpoints (``eval.py`` writes only into its own folder)."""
    if for_evaluation:
        figures = {
            key: entry for key, entry in (cfg.get("callbacks") or {}).items()
            if entry and _is_figure(entry.get("_target_"))
        }  # fmt: skip
        return build(cfg.trainer, "trainer", callbacks=_instantiate_all(figures, "callbacks"),
                     logger=False, devices=1, num_nodes=1, strategy="auto",
                     enable_checkpointing=False)  # fmt: skip
    return build(
        cfg.trainer,
        "trainer",
        callbacks=_callbacks(cfg),
        logger=_loggers(cfg) or False,
        plugins=_plugins(cfg),
        enable_progress_bar=progress_bar(cfg),
        **_newer_arguments(cfg.trainer),
    )


def _newer_arguments(trainer_cfg: DictConfig) -> dict[str, Any]:
    """:data:`NEWER_TRAINER_ARGUMENTS` that the installed Trainer takes and the config leaves out."""
    takes = inspect.signature(L.Trainer).parameters
    return {
        name: value
        for name, value in NEWER_TRAINER_ARGUMENTS.items()
        if name in takes and name not in trainer_cfg
    }
