"""The run's composed config inside every checkpoint, so ``eval.py`` can rebuild the run (its data,
its figures) from a checkpoint alone, even one moved away from its run directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L


class RunConfig(L.Callback):
    """Args:
    config: the run's composed config as YAML, unresolved (``${paths.output_dir}`` and the like
        resolve again where the checkpoint is evaluated).
    choices: the option chosen in each config group (``model: vae``, ``data: mnist``...).
    """

    def __init__(self, config: str, choices: Mapping[str, str]) -> None:
        self.config = config
        self.choices = dict(choices)

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config, "choices": self.choices}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resuming keeps this run's own config (the resumed run may override settings)."""
