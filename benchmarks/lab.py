"""Run the lab in-process exactly as ``python train.py <overrides>`` would, and time its epochs.

The config is composed from ``conf/`` by :func:`ae_lab.compose.compose_config` (as the tests do) and handed to
``ae_lab.run.train.run``; an :class:`benchmarks.timing.EpochTimer` is added by a config override, so
nothing here depends on the lab's internals.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from ae_lab.compose import compose_config as compose

TIMER = "benchmarks.timing.EpochTimer"
#: the timer for comparisons with loops that have no hook per batch (see ``EpochClock``)
CLOCK = "benchmarks.timing.EpochClock"


def dense_ae(root: Path, batch_size: int, epochs: int) -> list[str]:
    """The overrides the speed benchmarks train the lab with: the dense ``ae`` on the real MNIST
    under ``root``, every default on but the figures (``callbacks=none``: checkpoints only)."""
    return [
        "model=ae",
        "callbacks=none",
        f"data.root='{root}'",
        "data.download=false",
        f"data.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
    ]


def bare_epoch(
    module: Any,
    optimizer: Any,
    split: Any,
    batch_size: int,
    to_float: Callable[[Any], Any],
) -> tuple[int, float, float]:
    """One epoch of a plain ``for`` loop over the lab's own model, no Lightning: a shuffled
    permutation of the uint8 ``split`` (an ``IndexedImages``) sliced into batches, each made float
    by ``to_float``, ``module.objective``, ``zero_grad``, ``backward``, ``step``; the incomplete
    last batch dropped, as the lab drops it. Returns (images, wall seconds, CPU seconds)."""
    import torch  # noqa: PLC0415 (torch loads when a benchmark runs, not at import)

    usable = len(split) - len(split) % batch_size
    start, cpu = time.perf_counter(), time.process_time()
    order = torch.randperm(len(split))
    for i in range(0, usable, batch_size):
        images, _ = split.take(order[i : i + batch_size])
        loss = module.objective(to_float(images))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return usable, time.perf_counter() - start, time.process_time() - cpu


def timed_run(
    overrides: list[str], log_file: Path | None = None, timer: str = TIMER
) -> list[dict[str, Any]]:
    """Train through ``ae_lab.run.train.run`` (in a fresh temporary run directory) and return the
    :class:`~benchmarks.timing.EpochTimer` record of every training epoch (``timer``: the class
    that times them, an ``EpochTimer`` or a subclass such as ``EpochClock``).

    The run's console output (progress bar, warnings) goes to ``log_file`` (default: a file in the
    temporary directory, so the progress bar still renders every refresh as it does for a user).
    """
    from ae_lab.run.train import run  # torch and Lightning load here, not at import

    with tempfile.TemporaryDirectory(prefix="ae_lab_bench_") as tmp:
        tmp = Path(tmp)
        epochs_file = tmp / "epochs.jsonl"
        timing = [f"+callbacks.timer._target_={timer}", f"+callbacks.timer.path='{epochs_file}'"]
        cfg = compose([*overrides, *timing], tmp / "run")
        log_path = log_file or tmp / "console.log"
        try:
            with (
                log_path.open("a") as log,
                contextlib.redirect_stderr(log),
                contextlib.redirect_stdout(log),
            ):
                run(cfg)
        except BaseException:
            tail = log_path.read_text()[-3000:] if log_path.exists() else ""
            print(f"the lab's run failed; the end of its console output:\n{tail}")
            raise
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None
        return [json.loads(line) for line in epochs_file.read_text().splitlines()]
