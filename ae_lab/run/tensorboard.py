"""What a run tells TensorBoard beyond Lightning's curves (whose tags
:mod:`ae_lab.run.tensorboard_logger` arranges), so that the runs of a sweep compare:

* the run's **name** says what differs: a sweep job's event files go in
  ``tensorboard/<its overrides>/`` (``model=vae,model.beta=4``), a plain run's in ``tensorboard/``
  (its path already says its task and time);
* **HParams**: one row per run, its *trial ID* short and distinctive at its start, which is all the
  table's first column shows (``job1 model=vae,beta=4 · train/multiruns/<time>``; a plain run:
  ``<time> · train/runs``); the settings that were set on the command line or swept, the model,
  data and experiment preset, latent size, learning rate, batch size and seed, beside the final
  metrics (``test/…``, and the validation metrics of the evaluated weights as ``final/val/…``,
  never on the validation curves). Integers are written as text: TensorBoard prints every number
  with five significant digits (a batch of 32 as ``32.000``). A sweep's table has the columns of
  all its jobs (:mod:`ae_lab.run.tensorboard_hparams`);
* **Text**: the composed config and the command line that reproduces the run.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from ae_lab.run.tensorboard_hparams import (
    HPARAMS_SUFFIX,
    experiment_summary,
    hparam_info,
    kind_of,
    metric_order,
    session_summaries,
)

#: Overrides that say where things are, not what was run: left out of run names and HParams.
WHERE = ("data.root", "data.cache_dir", "paths.", "hydra.", "ckpt_path", "init_from", "task_name")
#: Settings every run's HParams show, beside the chosen model, data and experiment.
CORE_SETTINGS = (
    "model.latent_dim",
    "model.optimizer.lr",
    "data.batch_size",
    "seed",
    "trainer.max_epochs",
)
#: Config groups whose chosen option HParams shows (an unchosen preset is left out).
CHOSEN_GROUPS = ("model", "data", "experiment", "hparams_search")
MAX_NAME = 200  # characters of a run name (a path component is at most 255 bytes)
#: Between a trial ID's distinctive start and the folder that makes it unique.
TRIAL_SEPARATOR = " · "


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _is_where(override: str) -> bool:
    key = _key(override)
    return any(key == w or (w.endswith(".") and key.startswith(w)) for w in WHERE)


def swept_keys(sweep_dir: str | Path) -> set[str]:
    """The settings a sweep varies: those given as a sweep on its command line (``model=ae,vae``,
    ``range(…)``, ``choice(…)``…) and the search space of a sweeper such as Optuna's, read from the
    sweep's ``multirun.yaml`` (written before any job starts, whatever the launcher)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        master = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        given = list(OmegaConf.select(master, "hydra.overrides.task", default=[]) or [])
        parsed = OverridesParser.create().parse_overrides(given)
    except Exception:  # no readable record of the sweep: name the run by all its overrides
        return set()
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    keys |= {str(k) for k in (OmegaConf.select(master, "hydra.sweeper.params") or {})}
    return keys


def _swept_overrides(overrides: list[str], swept: set[str] | None) -> list[str]:
    kept = sorted(o for o in overrides if not _is_where(o))
    if swept:
        kept = [o for o in kept if _key(o) in swept] or kept
    return kept


def run_name(overrides: list[str], swept: set[str] | None = None) -> str:
    """The TensorBoard version (sub-folder) of a sweep job: its overrides of the ``swept``
    settings (all of them when none is known), sorted, joined by commas, without those that only
    say where files are; ``""`` when none is left."""
    name = ",".join(_swept_overrides(overrides, swept)).replace("..", "__")
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def short_name(overrides: list[str], swept: set[str] | None = None) -> str:
    """:func:`run_name`'s overrides with each key cut to its last part where no other one ends
    the same (``model=vae,beta=4`` for ``model=vae,model.beta=4``): a label, not a folder."""
    kept = _swept_overrides(overrides, swept)
    keys = [_key(o) for o in kept]
    lasts = [key.rsplit(".", 1)[-1] for key in keys]
    return ",".join(
        f"{last}={o.split('=', 1)[1]}" if "=" in o and lasts.count(last) == 1 else o
        for o, last in zip(kept, lasts, strict=True)
    )


def _under(path: Path, root: Path) -> str:
    path, root = path.resolve(), root.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def trial_id(
    output_dir: str | Path,
    log_dir: str | Path,
    label: str = "",
    sweep_dir: str | Path | None = None,
) -> str:
    """The run's row name in HParams, distinctive at its start and unique under ``log_dir`` (rows
    that share a name are merged into one): a sweep job's ``label`` then its sweep's folder
    (``job1 model=vae · train/multiruns/<time>``), a plain run's folder name then where it is
    (``<time> · train/runs``)."""
    if sweep_dir is not None:
        return f"{label}{TRIAL_SEPARATOR}{_under(Path(sweep_dir), Path(log_dir))}"
    output_dir = Path(output_dir)
    where = _under(output_dir.parent, Path(log_dir))
    return output_dir.name if where == "." else f"{output_dir.name}{TRIAL_SEPARATOR}{where}"


def session(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """:func:`write_hparams`'s ``trial`` (:func:`trial_id`) and ``experiment`` for this run: a
    sweep job leaves the table's columns to its sweep
    (:func:`~ae_lab.run.tensorboard_hparams.write_sweep_hparams`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    output_dir, log_dir = cfg.paths.output_dir, cfg.paths.log_dir
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {"trial": trial_id(output_dir, log_dir), "experiment": True}
    hydra = HydraConfig.get()
    label = f"job{hydra.job.num} {short_name(overrides, swept_keys(hydra.sweep.dir))}".rstrip()
    return {"trial": trial_id(output_dir, log_dir, label, hydra.sweep.dir), "experiment": False}


def _value(value: Any) -> float | str | bool:
    """A setting as HParams holds it: an integer as text (see the module's docstring)."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return str(value)
    return "null" if value is None else str(value)


def hparams(cfg: DictConfig, overrides: list[str], choices: Mapping[str, Any]) -> dict[str, Any]:
    """The settings HParams shows for a run: the chosen model/data (and experiment or search
    preset, when one was chosen), the core settings, and every override (``key=value``, as given)
    that is not about where files are."""
    params: dict[str, Any] = {
        group: str(choices[group]) for group in CHOSEN_GROUPS if choices.get(group) is not None
    }
    keys = [*CORE_SETTINGS, *(_key(o) for o in overrides if "=" in o and not _is_where(o))]
    for key in keys:
        if key in choices:  # a config group (model/corruption=masking): the option chosen
            if choices[key] is not None:
                params[key] = str(choices[key])
        elif key not in params:
            params[key] = _value(OmegaConf.select(cfg, key, default=None))
    return params


def final_metric_tags(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """metrics.json's numbers under the tags HParams reads: ``test/…`` as they are (logged once),
    ``val/…`` as ``final/val/…`` (not onto the validation curves), in
    :func:`~ae_lab.run.tensorboard_hparams.metric_order`."""
    tags = {}
    for key, value in metrics.items():
        if value is None:
            continue
        tags[f"final/{key}" if key.startswith("val/") else key] = float(value)
    return {tag: tags[tag] for tag in metric_order(tags)}


def write_hparams(
    log_dir: str | Path,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    step: int,
    trial: str = "",
    experiment: bool = True,
) -> None:
    """This run's HParams row (:func:`session_summaries`) and its metrics as scalars at ``step``,
    in the run's TensorBoard folder ``log_dir``, through a writer of its own (Lightning's logger
    closed its writer when training ended), in an event file named ``…`` :data:`HPARAMS_SUFFIX`.
    ``experiment``: the table's columns too, this run's settings and metrics (a single run's; a
    sweep's jobs leave them to
    :func:`~ae_lab.run.tensorboard_hparams.write_sweep_hparams`)."""
    with SummaryWriter(str(log_dir), filename_suffix=HPARAMS_SUFFIX) as writer:
        summaries = session_summaries(params, trial)
        if experiment:
            infos = [hparam_info(name, kind_of(value), False) for name, value in params.items()]
            summaries.insert(0, experiment_summary(infos, list(metrics)))
        for summary in summaries:
            writer.file_writer.add_summary(summary, step)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)


def command_line(overrides: list[str], script: str = "train.py") -> str:
    """``python train.py <overrides>``: how the run was made, for a reader (the commands printed
    for pasting back name this process's own interpreter: :mod:`ae_lab.run.commands`)."""
    return " ".join(["python", script, *map(shlex.quote, overrides)])


def write_text(writer: Any, cfg: DictConfig, overrides: list[str]) -> None:
    """The composed config (YAML) and the command line, in TensorBoard's Text tab."""
    yaml = OmegaConf.to_yaml(cfg, resolve=True)
    indent = "\n".join("    " + line for line in yaml.splitlines())  # Markdown code block
    writer.add_text("run/command", f"    {command_line(overrides)}", 0)
    writer.add_text("run/config", indent, 0)
