"""A stand-in for a long run, for tests that must catch a job mid-fit: a callback that sleeps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig

#: Written into the run directory at the first training batch; holds the training process's id.
FITTING = "fitting.pid"


class Slow(L.Callback):
    """Sleeps ``seconds`` after each training batch; with ``job=N``, only in job N of a sweep.
    At the first batch it writes :data:`FITTING` (this process's id) into the run directory, so a
    test knows the run is training, and which process to signal."""

    def __init__(self, seconds: float = 0.2, job: int | None = None) -> None:
        super().__init__()
        hydra = HydraConfig.get()
        self.seconds = seconds if job is None or hydra.job.num == job else 0.0
        self.marker = Path(hydra.runtime.output_dir) / FITTING

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
        time.sleep(self.seconds)
