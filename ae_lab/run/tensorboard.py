"""What a run tells TensorBoard beyond Lightning's curves, so that the runs of a sweep compare:

* the run's **name** says what differs: a sweep job's event files go in
  ``tensorboard/<its overrides>/`` (``model=vae,model.beta=4``), a plain run's in ``tensorboard/``
  (its path already says its task and time);
* **HParams**: the settings that were set on the command line or swept, and the model, data,
  latent size, learning rate, batch size and seed, beside the final metrics (``test/…``, and the
  validation metrics of the evaluated weights as ``final/val/…``, never on the ``val/…`` curves);
* **Text**: the composed config and the command line that reproduces the run.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
CHOSEN_GROUPS = ("model", "data", "experiment")
MAX_NAME = 200  # characters of a run name (a path component is at most 255 bytes)


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


def run_name(overrides: list[str], swept: set[str] | None = None) -> str:
    """The TensorBoard version (sub-folder) of a sweep job: its overrides of the ``swept``
    settings (all of them when none is known), sorted, joined by commas, without those that only
    say where files are; ``""`` when none is left."""
    kept = sorted(o for o in overrides if not _is_where(o))
    if swept:
        kept = [o for o in kept if _key(o) in swept] or kept
    name = ",".join(kept).replace("..", "__")
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def _scalar(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


def hparams(cfg: DictConfig, overrides: list[str], choices: Mapping[str, Any]) -> dict[str, Any]:
    """The settings HParams shows for a run: the chosen model/data/experiment, the core settings,
    and every override (``key=value``, as given) that is not about where files are."""
    params: dict[str, Any] = {
        group: _scalar(choices.get(group)) for group in CHOSEN_GROUPS if group in choices
    }
    keys = [*CORE_SETTINGS, *(_key(o) for o in overrides if "=" in o and not _is_where(o))]
    for key in keys:
        if key in choices:  # a config group (model/corruption=masking): the option chosen
            params[key] = _scalar(choices[key])
        elif key not in params:
            params[key] = _scalar(OmegaConf.select(cfg, key, default=None))
    return params


def final_metric_tags(metrics: Mapping[str, float | None]) -> dict[str, float]:
    """metrics.json's numbers under the tags HParams reads: ``test/…`` as they are (logged once),
    ``val/…`` as ``final/val/…`` (not onto the validation curves)."""
    tags = {}
    for key, value in metrics.items():
        if value is None:
            continue
        tags[f"final/{key}" if key.startswith("val/") else key] = float(value)
    return tags


def write_hparams(
    writer: Any, params: Mapping[str, Any], metrics: Mapping[str, float], step: int
) -> None:
    """The HParams plugin's summaries for this run and its metrics as scalars at ``step``, in the
    run's own folder (``run_name="."``: torch's default would make a sub-run per call).

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter`` (a TensorBoardLogger's
    ``experiment``)."""
    writer.add_hparams(dict(params), dict(metrics), run_name=".", global_step=step)


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
