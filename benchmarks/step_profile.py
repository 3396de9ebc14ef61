"""Where the lab's training step spends its time: CPU microseconds per step, by part.

    python benchmarks/step_profile.py                                # model=ae, batch 32, 1 thread
    python benchmarks/step_profile.py --batch-size 128 --rounds 3 +model.optimizer.fused=true
    python benchmarks/step_profile.py trainer.enable_progress_bar=false data.batch_size=64

Runs the lab in-process exactly as ``benchmarks/training_speed.py`` does (``model=ae
callbacks=none`` on real MNIST, every default on, plus the overrides given) and times, with the
thread's CPU clock, the functions Lightning and torch call for each training step: the batch
fetch, the batch-transfer hooks, ``training_step`` (and the ``self.log`` calls in it), backward,
``zero_grad``, the optimizer's arithmetic, Lightning's optimizer wrappers and hooks, the progress
bar, the other callbacks' batch hooks and the logger connector. What is left is the loop itself.
Parts are exclusive: they add up to the step. Only training epochs after the first count
(validation excluded).

The CPU clock of one thread counts only the time the step runs, not the time it waits for a core,
so on a machine shared with other work the parts are still comparable. Run with ``--threads 1``
(the default) for that reason: with more threads, work done by torch's helper threads is not seen.

This wraps Lightning's internal functions (``lightning.pytorch.trainer.call``, the training epoch
loop, the data fetcher, the logger connector): written against Lightning 2.6; a part whose
function is missing is reported as missing rather than guessed.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable for Hydra
    sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from ae_lab.lean import hooks as lean_hooks  # noqa: E402

from ae_lab import lean  # noqa: E402
from benchmarks.lab import dense_ae, timed_run  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "mnist10k"
CLOCK = time.thread_time_ns


class Recorder:
    """Thread-CPU nanoseconds and calls per wrapped function, while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.totals: dict[str, list[int]] = {}
        self.depth: dict[str, int] = {}
        self.missing: list[str] = []

    def wrap(self, owner: Any, attr: str, name: str, key_arg: int | None = None) -> None:
        """Time calls of ``owner.attr`` under ``name`` (``name:<arg>`` with ``key_arg``).

        Nested calls under the same key (``log_dict`` calling ``log``) count once.
        """
        function = getattr(owner, attr, None)
        if function is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return
        recorder = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not recorder.active:
                return function(*args, **kwargs)
            key = name if key_arg is None else f"{name}:{args[key_arg]}"
            depth = recorder.depth.get(key, 0)
            recorder.depth[key] = depth + 1
            start = CLOCK()
            try:
                return function(*args, **kwargs)
            finally:
                recorder.depth[key] = depth
                if depth == 0:
                    total = recorder.totals.setdefault(key, [0, 0])
                    total[0] += 1
                    total[1] += CLOCK() - start

        setattr(owner, attr, timed)

    def ns(self, key: str) -> float:
        return self.totals.get(key, [0, 0])[1]

    def calls(self, key: str) -> int:
        return self.totals.get(key, [0, 0])[0]


RECORDER = Recorder()


class ProfileWindow(L.Callback):
    """Turns the recorder on for training epochs after the first, off during validation."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        RECORDER.active = trainer.current_epoch >= 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._was_active, RECORDER.active = RECORDER.active, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        RECORDER.active = getattr(self, "_was_active", False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        RECORDER.active = False


def install() -> None:
    """Wrap the functions each part of the step is timed by."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.core.module import LightningModule
    from lightning.pytorch.loops import fetchers, training_epoch_loop
    from lightning.pytorch.loops.optimization import automatic
    from lightning.pytorch.trainer import call
    from lightning.pytorch.trainer.connectors.logger_connector import logger_connector

    wrap = RECORDER.wrap
    wrap(training_epoch_loop._TrainingEpochLoop, "advance", "step")
    wrap(fetchers._PrefetchDataFetcher, "__next__", "fetch")
    wrap(LightningModule, "_on_before_batch_transfer", "before_transfer")
    wrap(call, "_call_callback_hooks", "cb", key_arg=1)
    wrap(call, "_call_lightning_module_hook", "lm", key_arg=1)
    wrap(call, "_call_strategy_hook", "st", key_arg=1)
    connector = logger_connector._LoggerConnector
    for method in ("on_batch_start", "on_batch_end", "update_train_step_metrics"):
        wrap(connector, method, f"connector.{method}")
    wrap(automatic._AutomaticOptimization, "run", "automatic")
    wrap(automatic.Closure, "closure", "closure")
    # ae_lab's lean loop (lean_step=true): its batch, its hook calls and its step stand in for
    # Lightning's epoch loop, hook dispatch, closure and wrappers
    wrap(lean.LeanTrainingEpochLoop, "advance", "step")
    wrap(lean.LeanTrainingEpochLoop, "_to_device", "lean_transfer")
    wrap(lean.LeanTrainingEpochLoop, "_read_logged_values", "connector.on_batch_end")
    wrap(lean_hooks.Setup, "call", "cb", key_arg=2)
    step = lean.LeanAutomaticOptimization
    wrap(step, "run", "automatic")
    for method in ("_lean_closure", "_zero_grad", "_backward", "_before_optimizer_step"):
        wrap(step, method, f"lean{method}")
    wrap(step, "_lean_training_step", "st:training_step")  # (with its ClosureResult)
    wrap(LightningModule, "log", "logging")
    wrap(LightningModule, "log_dict", "logging")
    for module, name in (("torch.optim.adam", "adam"), ("torch.optim.adamw", "adamw")):
        wrap(importlib.import_module(module), name, "optimizer_math")
    wrap(torch.optim.Optimizer, "zero_grad", "zero_grad")
    wrap(torch.Tensor, "backward", "backward")
    for bar in (TQDMProgressBar, RichProgressBar):  # each overrides the batch hooks it uses
        for hook in ("on_train_batch_start", "on_train_batch_end"):
            if hook in vars(bar):
                wrap(bar, hook, "progress_bar")


def parts(steps: int) -> dict[str, float]:
    """Exclusive microseconds per step of each part, from the recorded inclusive totals."""
    r = RECORDER.ns
    zero_grad_hooks = r("lm:optimizer_zero_grad") + r("cb:on_before_zero_grad")
    zero_grad_hooks += r("lm:on_before_zero_grad")
    batch_hooks = r("cb:on_train_batch_start") + r("cb:on_train_batch_end")
    connector = sum(r(f"connector.{m}") for m in ("on_batch_start", "on_batch_end"))
    connector += r("connector.update_train_step_metrics")
    transfer = r("before_transfer") + r("st:batch_to_device") + r("lean_transfer")
    known_in_step = (
        r("fetch")
        + transfer
        + r("automatic")
        + batch_hooks
        + r("lm:on_train_batch_start")
        + r("lm:on_train_batch_end")
        + r("st:on_train_batch_start")
        + connector
    )
    if r("lean_lean_closure"):  # the lean step: its own parts stand in for Lightning's wrappers
        zero_grad_hooks = r("lean_zero_grad")
        backward_wrapped = r("lean_backward")
        closure = r("lean_lean_closure") - r("lean_before_optimizer_step")
        optimizer_step = r("automatic")
    else:
        backward_wrapped = r("st:backward")
        closure = r("closure")
        optimizer_step = r("lm:optimizer_step")
    ns = {
        "batch fetch (loader + Lightning fetcher)": r("fetch"),
        "batch transfer hooks (+ uint8->float)": transfer,
        "training_step: forward + loss": r("st:training_step") - r("logging"),
        "training_step: self.log / log_dict": r("logging"),
        "backward (autograd)": r("backward"),
        "backward: Lightning hooks + wrappers": backward_wrapped - r("backward"),
        "zero_grad": r("zero_grad"),
        "zero_grad: Lightning hooks + wrappers": zero_grad_hooks - r("zero_grad"),
        "closure glue": closure - r("st:training_step") - backward_wrapped - zero_grad_hooks,
        "optimizer arithmetic (Adam/AdamW)": r("optimizer_math"),
        "optimizer.step wrappers + hooks": optimizer_step - closure - r("optimizer_math"),
        "automatic-optimization loop": r("automatic") - optimizer_step,
        "progress bar": r("progress_bar"),
        "other callbacks' batch hooks": batch_hooks - r("progress_bar"),
        "logger connector (+ logger writes)": connector,
        "loop + module batch hooks (rest)": r("step") - known_in_step,
    }
    us = {name: value / 1e3 / steps for name, value in ns.items()}
    us["= training step"] = r("step") / 1e3 / steps
    return us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for the lab")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="per run; the first is not timed")
    parser.add_argument("--rounds", type=int, default=1, help="runs; the table shows medians")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args(argv)
    if not (args.data_root / "MNIST" / "raw").is_dir():
        print(f"no MNIST under {args.data_root}; pass --data-root", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    install()
    if RECORDER.missing:
        print(f"not timed (not in this Lightning/torch): {', '.join(RECORDER.missing)}")

    overrides = [
        *dense_ae(args.data_root, args.batch_size, args.epochs),
        f"+callbacks.profile_window._target_={__name__}.ProfileWindow",
        *args.overrides,
    ]
    runs: list[dict[str, float]] = []
    for _ in range(args.rounds):
        RECORDER.totals.clear()
        records = timed_run(overrides)[1:]
        steps = sum(r["steps"] for r in records)
        us = parts(steps)
        us["process CPU per step (all threads)"] = (
            1e6 * sum(r["cpu_seconds"] for r in records) / steps
        )
        us["wall-clock per step"] = 1e6 * sum(r["seconds"] for r in records) / steps
        runs.append(us)
    logs = RECORDER.calls("logging") / max(1, steps)
    print(
        f"batch {args.batch_size}, {torch.get_num_threads()} thread(s), {steps} steps per run, "
        f"{args.rounds} run(s); self.log or log_dict calls per step (outermost): {logs:.2f}"
    )
    if args.overrides:
        print(f"overrides: {' '.join(args.overrides)}")
    print(f"{'part of the training step':<44}{'us/step':>10}{'min-max':>16}")
    for name in runs[0]:
        values = [run[name] for run in runs]
        spread = f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""
        print(f"{name:<44}{statistics.median(values):>10,.0f}{spread:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
