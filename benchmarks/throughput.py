"""Training samples/s of every model in ``conf/model/`` on whatever device this machine has.

    python benchmarks/throughput.py                                  # CUDA if present, else CPU
    python benchmarks/throughput.py --batch-sizes 128 1024 --steps 200
    python benchmarks/throughput.py --models ae vae trainer.precision=bf16-mixed data.on_device=true
    python benchmarks/throughput.py --data-root ../shared/data/mnist10k   # real digits

Each model trains through the lab's own entry point (``ae_lab.run.train.run`` on the composed config,
``callbacks=none``: TensorBoard logger, progress bar and checkpoints on, no figures), on MNIST-shaped
data: synthetic digits written to a temporary folder in MNIST's files, or the real ones with
``--data-root``. Trailing ``key=value`` arguments are passed to every run's config unchanged. The
models are the files in ``conf/model/`` (discovered, never listed here). Every run trains
``--epochs`` epochs of ``--steps`` batches and the first epoch is dropped; an epoch is timed by
:class:`benchmarks.timing.EpochTimer` (validation excluded, the device synchronised at both ends).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.timing` importable for Hydra
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ae_lab.compose import CONF  # noqa: E402
from benchmarks.lab import timed_run  # noqa: E402


def discover_models() -> list[str]:
    """Every option of the ``model`` config group (``conf/model/*.yaml``)."""
    return sorted(path.stem for path in (CONF / "model").glob("*.yaml"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) in the IDX format MNIST ships in."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def synthetic_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """MNIST-shaped digits (28x28 uint8, 10 labels) in ``root/MNIST/raw/``: blurred random strokes,
    so that the data path and the loss see realistic values (mostly 0, some bright pixels)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        coarse = rng.random((n, 7, 7)) > 0.7
        images = np.kron(coarse, np.ones((4, 4))).astype(np.float32)
        images = (images + np.roll(images, 1, 1) + np.roll(images, 1, 2)) / 3
        write_idx(raw / f"{split}-images-idx3-ubyte", (images * 255).astype(np.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="config overrides passed to every run")
    parser.add_argument("--models", nargs="+", help="model configs to run (default: all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is dropped")
    parser.add_argument(
        "--steps",
        type=int,
        help="batches per epoch (trainer.limit_train_batches); default: 50 on a CPU, the whole "
        "training split on a GPU",
    )
    parser.add_argument(
        "--data-root", type=Path, help="real MNIST (a folder holding MNIST/raw/); default synthetic"
    )
    parser.add_argument(
        "--n", type=int, help="synthetic training images (default 60000 on a GPU, 8000 on a CPU)"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.models:  # `--models ae vae key=value`: the key=value words are overrides
        args.overrides += [m for m in args.models if "=" in m]
        args.models = [m for m in args.models if "=" not in m]

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    if args.threads:
        torch.set_num_threads(args.threads)
        device = device if cuda else f"CPU, {args.threads} threads"
    steps = args.steps if args.steps is not None else (None if cuda else 50)
    models = args.models or discover_models()
    unknown = sorted(set(models) - set(discover_models()))
    if unknown:
        print(
            f"unknown model config(s) {unknown}; choose from {discover_models()}", file=sys.stderr
        )
        return 2

    with tempfile.TemporaryDirectory(prefix="ae_lab_throughput_") as tmp:
        if args.data_root:
            root, data = args.data_root, f"real MNIST from {args.data_root}"
        else:
            n = args.n or (60000 if cuda else 8000)
            root, data = synthetic_mnist(Path(tmp), n, max(1000, n // 6)), f"{n} synthetic digits"
        print(f"torch {torch.__version__} on {device}; {data}; overrides: {args.overrides or '-'}")
        print(f"{args.epochs} epochs of {steps or 'all'} batches per run, the first dropped\n")
        print(
            f"{'model':<16}{'batch':>7}{'params':>12}{'samples/s':>12}{'ms/step':>10}{'spread':>16}"
        )
        failed = []
        for model in models:
            for bs in args.batch_sizes:
                overrides = [
                    f"model={model}",
                    "callbacks=none",
                    f"data.root='{root}'",
                    "data.download=false",
                    f"data.batch_size={bs}",
                    f"trainer.max_epochs={args.epochs}",
                    "trainer.limit_val_batches=2",
                    "trainer.limit_test_batches=2",
                    *([f"trainer.limit_train_batches={steps}"] if steps else []),
                    *args.overrides,
                ]
                started = time.perf_counter()
                try:
                    records = timed_run(overrides)
                except Exception as exc:  # one model failing must not hide the others' numbers
                    reason = " ".join(str(exc).split())[:120]
                    print(f"{model:<16}{bs:>7}  failed: {type(exc).__name__}: {reason}")
                    failed.append(model)
                    continue
                kept = records[1:] or records
                rates = [r["samples"] / r["seconds"] for r in kept]
                rate = sum(r["samples"] for r in kept) / sum(r["seconds"] for r in kept)
                ms = 1e3 * sum(r["seconds"] for r in kept) / sum(r["steps"] for r in kept)
                spread = f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else ""
                print(
                    f"{model:<16}{bs:>7}{records[0]['parameters']:>12,}{rate:>12,.0f}{ms:>10.2f}"
                    f"{spread:>16}   ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
