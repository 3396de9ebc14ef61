"""A run's config composed in-process, exactly as ``python train.py <overrides>`` composes it: for
tests, benchmarks and notebooks that call :func:`ae_lab.run.train.run` themselves."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

#: The checkout's config tree, the one train.py composes from.
CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(
    overrides: list[str], output_dir: Path, conf: Path = CONF, config_name: str = "train"
) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, with its run directory set to
    ``output_dir`` (the ``hydra`` node is resolved into ``HydraConfig`` and removed, as in a job's
    ``cfg``); ``conf`` is the config tree (the project's own unless a test makes another)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg
