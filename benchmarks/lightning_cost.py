"""What Lightning's loop costs the lab, measured in one process: lab epochs and bare epochs of the
same module, optimizer and batches, alternated.

    python benchmarks/lightning_cost.py                    # batch 32 and 128, 8 epochs each
    python benchmarks/lightning_cost.py --batch-sizes 64 --epochs 12 --threads 1
    python benchmarks/lightning_cost.py trainer.log_every_n_steps=50   # overrides for the lab

``training_speed.py`` compares loops run in separate processes, a minute apart; on a machine whose
speed drifts (this project's 2-core VM: 30% within minutes) its per-round ratios scatter by
+-15%. Here the lab trains as ``python train.py model=ae callbacks=none`` does (every default on,
timed by :class:`benchmarks.timing.EpochClock`, validation excluded, no hook per batch), and
before each of its training epochs after the first a callback runs one bare epoch, outside the
timer, on the same process, module, optimizer and data: the lab's own batches (``take`` +
``to_float``), the module's ``objective``, ``zero_grad``, ``backward``, ``step``, in a plain
``for`` loop. Each lab epoch is compared with the bare epoch right before it; the median of those
ratios is Lightning's cost (the issue's target: >= 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable for Hydra
    sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from benchmarks.lab import CLOCK, bare_epoch, dense_ae, timed_run  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "mnist10k"
#: the bare epochs of the current run: (steps, seconds)
BARE_EPOCHS: list[tuple[int, float]] = []


class BareEpoch(L.Callback):
    """Before each training epoch after the first, one epoch of a bare loop over the lab's own
    module, optimizer and training split (its callbacks come before the timer's, so this runs
    before the timed epoch starts)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch == 0:
            return
        data = trainer.datamodule
        images, seconds, _ = bare_epoch(pl_module, trainer.optimizers[0], data.splits["train"],
                                        data.batch_size, data.to_float)  # fmt: skip
        BARE_EPOCHS.append((images // data.batch_size, seconds))


def paired_ratios(root: Path, batch_size: int, epochs: int, overrides: list[str]) -> list[float]:
    """Per epoch after the first: the lab's samples/s over the bare loop's just before it."""
    BARE_EPOCHS.clear()
    bare = f"+callbacks.bare_epoch._target_={__name__}.BareEpoch"
    records = timed_run([*dense_ae(root, batch_size, epochs), bare, *overrides], timer=CLOCK)
    lab = [(r["steps"], r["seconds"]) for r in records[1:]]
    return [(bare_s / bare_n) / (lab_s / lab_n) for (lab_n, lab_s), (bare_n, bare_s)
            in zip(lab, BARE_EPOCHS, strict=True)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for the lab")
    parser.add_argument("--data-root", dest="root", type=Path, default=DEFAULT_ROOT,
                        help="folder holding MNIST/raw/ (default: ../shared/data/mnist10k)")  # fmt: skip
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--epochs", type=int, default=8, help="lab epochs per batch size (>= 2)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if not (args.root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        print(f"no real MNIST under {args.root}: pass the folder holding MNIST/raw/ with "
              "--data-root", file=sys.stderr)  # fmt: skip
        return 2
    if args.epochs < 2:
        print("--epochs must be at least 2 (the first is start-up)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; lab epochs against "
          f"bare epochs of the same module, optimizer and data, alternated in one process"
          + (f"; lab overrides: {' '.join(args.overrides)}" if args.overrides else ""))  # fmt: skip
    for size in args.batch_sizes:
        ratios = paired_ratios(args.root, size, args.epochs, args.overrides)
        each = " ".join(f"{r:.2f}" for r in ratios)
        print(f"batch {size:>4}: lab / bare {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}); by epoch: {each}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
