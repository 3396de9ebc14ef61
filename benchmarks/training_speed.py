"""Training samples/s of the lab against the study's hand-written loop and a bare tensor loop.

    python benchmarks/training_speed.py                     # ../shared/data/mnist10k, 3 rounds
    python benchmarks/training_speed.py --data-root DIR --rounds 5 --epochs 8
    python benchmarks/training_speed.py --optimizer fused   # loop (c) with Adam(fused=True)
    python benchmarks/training_speed.py +model.optimizer.fused=true  # overrides for the lab
    python benchmarks/training_speed.py --batch-sizes 64 -- trainer.log_every_n_steps=50

The dense ``ae`` (784-512-256-128 encoder, mirrored decoder, ReLU, sigmoid output) on real MNIST
digits, at each batch size, four ways:

(a) study: ``torchvision.datasets.MNIST`` with a per-item ``transforms.ToTensor()``, a shuffling
    ``DataLoader`` (0 workers), ``Adam(lr=1e-3)``, summed MSE: the study's own scripts.
(b) bare: one in-memory float tensor indexed by a shuffled permutation per batch, the same model,
    default ``Adam(lr=1e-3)``.
(c) bare with the lab's settings: (b) with the optimizer the lab's config builds
    (``model/optimizer``, after the overrides given here; or the one ``--optimizer`` names) and the
    lab's ``flush_denormal``: the same optimizer and the same network as the lab.
(d) lab: ``ae_lab.run.train.run`` on the composed config ``model=ae callbacks=none`` with every
    default on (TensorBoard logger, progress bar, checkpoints; no figures), timed by
    :class:`benchmarks.timing.EpochClock` (training epoch, validation excluded; no hook per batch,
    which the bare loops do not have either).
(e) bare with the lab's model: (c)'s loop, but the module the lab's config builds (its nets, its
    objective: per-image summed error, mean over the batch), batches of uint8 digits made float as
    the lab's data module makes them: everything the lab computes, without Lightning. So (d)/(e)
    is Lightning's own cost, and (e)/(c) what the lab's model code costs beyond the study's
    ``nn.Sequential`` and summed MSE.

Every loop runs in a fresh Python process, as each would for a user: nothing one loop sets (the
CPU's denormal flag, which torch's threads take when they start; the environment Lightning's
import changes; the allocator's state) reaches another. Each runs ``--epochs`` epochs (6, as the
issue measured: 1 and 6 epochs, subtracted) and the first is dropped (start-up, allocator warm-up).
The loops run round-robin, in a rotated order, for ``--rounds`` rounds; the table shows the median
over rounds and the ratios are medians of the per-round ratios, so a busy machine slows both sides
of a ratio alike. The lab's timer is one more callback for Lightning to call (about 1% of a step at
batch 32); the lab's epochs include writing its checkpoints. Each round's line shows every epoch's
rate: a loop whose later epochs slow down (denormals, see ``ae_lab/run/denormals.py``) shows it there.

Three tables: samples per wall-clock second (what a user waits for), per CPU-second of the
process, and per wall-clock second in each round's fastest epoch. On a machine shared with other
work, torch's intra-op threads wait for busy cores at every operation (on a loaded 2-core machine,
2 threads ran these loops 4-8x slower than 1); there, run with ``--threads 1`` and read the
CPU-clock table, which counts only the work each loop does. Other work only ever slows a loop
down, so the fastest epoch is the closest to its undisturbed speed: on a machine whose speed
drifts within a run (this project's 2-core VM drifted 30% within minutes), its ratios are the
steadiest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.timing` importable for Hydra
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from ae_lab.run.denormals import flush_denormals  # noqa: E402
from benchmarks.lab import CLOCK, bare_epoch, compose, dense_ae, timed_run  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "mnist10k"
Epochs = list[tuple[int, float, float]]  # (samples, wall seconds, CPU seconds) per epoch
LOOPS = ("study", "bare", "bare_opt", "bare_lab", "lab")
OPTIMIZERS = {
    "default": {},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
    "single": {"foreach": False},
}


def study_model() -> nn.Module:
    """The study's dense autoencoder: 784-512-256-128 (ReLU), mirrored decoder, sigmoid output."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 128),
        nn.Linear(128, 256), nn.ReLU(),
        nn.Linear(256, 512), nn.ReLU(),
        nn.Linear(512, 784), nn.Sigmoid(),
        nn.Unflatten(1, (1, 28, 28)),
    )  # fmt: skip


def study_loop(root: Path, batch_size: int, epochs: int) -> Epochs:
    """(a) The study's way: per-item ToTensor in a DataLoader, Adam, summed MSE."""
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    model = study_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = []
    for _ in range(epochs):
        count, start, cpu = 0, time.perf_counter(), time.process_time()
        for x, _labels in loader:
            loss = F.mse_loss(model(x), x, reduction="sum")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            count += x.shape[0]
        out.append((count, time.perf_counter() - start, time.process_time() - cpu))
    return out


def bare_loop(
    images: torch.Tensor, batch_size: int, epochs: int, make_optimizer: Callable
) -> Epochs:
    """(b)/(c) One float tensor in memory, a shuffled permutation sliced per batch."""
    model = study_model()
    optimizer = make_optimizer(model.parameters())
    n = len(images) - len(images) % batch_size  # drop the last partial batch, as the lab does
    out = []
    for _ in range(epochs):
        start, cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(len(images))
        for i in range(0, n, batch_size):
            x = images[order[i : i + batch_size]]
            loss = F.mse_loss(model(x), x, reduction="sum")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        out.append((n, time.perf_counter() - start, time.process_time() - cpu))
    return out


def bare_lab_loop(root: Path, batch_size: int, epochs: int, overrides: list[str]) -> Epochs:
    """(e) The bare loop driving the lab's own model: the module the lab's config builds, its
    objective, its optimizer, batches of the lab's uint8 digits made float as its data module does;
    no Lightning. (d)/(e) is what Lightning's loop costs; (e)/(c) what the lab's model code costs
    beyond the study's ``nn.Sequential`` and summed MSE."""
    from ae_lab.data.arrays import IndexedImages  # noqa: PLC0415 (Lightning loads here)
    from ae_lab.run.build import build_model, no_nvml_probe  # noqa: PLC0415

    no_nvml_probe()  # as the lab's setup does: Lightning's import made every Adam step probe NVML

    with tempfile.TemporaryDirectory(prefix="ae_lab_bench_") as tmp:
        cfg = compose(["model=ae", *overrides], Path(tmp))
    model = build_model(cfg.model, (1, 28, 28))
    model.train()
    optimizer = instantiate(cfg.model.optimizer)(model.parameters())
    digits = IndexedImages(datasets.MNIST(str(root), train=True, download=False).data.unsqueeze(1))
    return [
        bare_epoch(model, optimizer, digits, batch_size, lambda x: x.float().div_(255))
        for _ in range(epochs)
    ]


def lab_loop(root: Path, batch_size: int, epochs: int, overrides: list[str]) -> Epochs:
    """(d) The lab through its real entry point, every default on, figures off."""
    records = timed_run([*dense_ae(root, batch_size, epochs), *overrides], timer=CLOCK)
    return [(r["samples"], r["seconds"], r["cpu_seconds"]) for r in records]


def steady_rate(epochs: Epochs, clock: str = "wall") -> float:
    """Samples per second of ``clock`` over all epochs but the first: wall or CPU time, or
    ``fastest``: the wall-clock rate of the fastest of those epochs (other work on the machine only
    ever slows a loop down, so its fastest epoch is the closest to its undisturbed speed)."""
    kept = epochs[1:] or epochs
    if clock == "fastest":
        return max(e[0] / e[1] for e in kept)
    column = 1 if clock == "wall" else 2
    return sum(e[0] for e in kept) / sum(e[column] for e in kept)


def lab_settings(overrides: list[str]) -> tuple[str, Callable, bool]:
    """The optimizer factory the lab's composed config builds, a short description of it, and the
    config's ``flush_denormal``."""
    with tempfile.TemporaryDirectory(prefix="ae_lab_bench_") as tmp:
        cfg = compose(["model=ae", *overrides], Path(tmp))
    node = OmegaConf.to_container(cfg.model.optimizer, resolve=True)
    name = node.pop("_target_").rsplit(".", 1)[-1]
    node.pop("_partial_", None)
    args = ", ".join(f"{k}={v}" for k, v in node.items())
    return f"{name}({args})", instantiate(cfg.model.optimizer), bool(cfg.get("flush_denormal"))


def optimizer_choice(args: argparse.Namespace) -> tuple[str, Callable, bool]:
    """Loop (c)'s optimizer (description, factory) and whether it flushes denormals (the lab's
    setting in either case)."""
    name, factory, flush = lab_settings(args.overrides)
    if args.optimizer == "lab":
        return f"{name} [lab config]", factory, flush
    kwargs = {"lr": 1e-3, **OPTIMIZERS[args.optimizer]}

    def make(params, kwargs=kwargs):
        return torch.optim.Adam(params, **kwargs)

    return "Adam(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")", make, flush


def training_images(root: Path) -> torch.Tensor:
    """The real MNIST training digits as one ``(N, 1, 28, 28)`` float tensor in [0, 1]."""
    images = datasets.MNIST(str(root), train=True, download=False).data
    return images.unsqueeze(1).float().div_(255)


def run_loop(args: argparse.Namespace) -> Epochs:
    """One loop at one batch size, in this (fresh) process: what a worker process runs."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bs = args.batch_size
    if args.worker == "lab":
        return lab_loop(args.root, bs, args.epochs, args.overrides)
    if args.worker == "study":
        return study_loop(args.root, bs, args.epochs)
    if args.worker == "bare_lab":
        flush_denormals(lab_settings(args.overrides)[2])
        return bare_lab_loop(args.root, bs, args.epochs, args.overrides)
    if args.worker == "bare":
        images = training_images(args.root)
        return bare_loop(images, bs, args.epochs, lambda p: torch.optim.Adam(p, lr=1e-3))
    _, factory, flush = optimizer_choice(args)
    # before the first parallel operation, as the lab does: torch's threads take the flag then
    flush_denormals(flush)
    return bare_loop(training_images(args.root), bs, args.epochs, factory)


def in_fresh_process(key: str, batch_size: int, seed: int, args: argparse.Namespace) -> Epochs:
    """:func:`run_loop` for ``key`` in a new Python process; its epochs, read from its stdout."""
    command = [
        sys.executable, __file__, "--worker", key, "--batch-size", str(batch_size),
        "--seed", str(seed), "--data-root", str(args.root), "--epochs", str(args.epochs),
        "--optimizer", args.optimizer,
        *(["--threads", str(args.threads)] if args.threads else []),
        "--", *args.overrides,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"loop {key} at batch {batch_size} failed:\n{done.stdout}{done.stderr}")
    return [tuple(epoch) for epoch in json.loads(done.stdout.strip().splitlines()[-1])]


def spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{format(median, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", help="config overrides for the lab (and loop (c)'s optimizer)"
    )
    parser.add_argument(
        "--data-root",
        dest="root",
        type=Path,
        default=DEFAULT_ROOT,
        help="folder holding MNIST/raw/ (default: ../shared/data/mnist10k beside the repo)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds (default 3)")
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per loop and round; the first is dropped"
    )
    parser.add_argument(
        "--optimizer",
        choices=["lab", *OPTIMIZERS],
        default="lab",
        help="loop (c)'s Adam: 'lab' builds the lab's model/optimizer config (default); "
        "default/single/foreach/fused: Adam(lr=1e-3) with that implementation",
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu", "fastest", "all"],
        default="all",
        help="report samples per wall-clock second, per CPU-second of the process, in each "
        "round's fastest epoch, or all three (default). On a machine shared with other work, "
        "--threads 1 and the CPU clock measure the work each loop does; the wall clock also "
        "counts waiting for a core; the fastest epoch is the least disturbed",
    )
    parser.add_argument(
        "--loops",
        nargs="+",
        choices=LOOPS,
        default=list(LOOPS),
        help="which loops to run (default all five: (a) study, (b) bare, (c) bare_opt, (d) lab, "
        "(e) bare_lab)",
    )
    # a worker process: one loop at one batch size, its epochs printed as JSON
    parser.add_argument("--worker", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    raw = args.root / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        print(
            f"no real MNIST under {args.root} (expected {raw}/train-images-idx3-ubyte): "
            "this benchmark needs real digits; pass the folder holding MNIST/raw/ with --data-root.",
            file=sys.stderr,
        )
        return 2
    if args.worker:
        print(json.dumps(run_loop(args)))
        return 0

    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus and (args.threads or torch.get_num_threads()) > 1:
        print(
            f"note: this machine is busy (load {load:.1f} on {cpus} CPUs); with "
            f"{torch.get_num_threads()} torch threads the wall clock mostly measures waiting: "
            "consider --threads 1 and the CPU-clock table"
        )
    opt_name, _, flush = optimizer_choice(args)
    names = {
        "study": "(a) study: torchvision MNIST + ToTensor, DataLoader, Adam",
        "bare": "(b) bare tensor loop, Adam(lr=0.001)",
        "bare_opt": f"(c) bare tensor loop, {opt_name}" + (", denormals flushed" if flush else ""),
        "lab": "(d) lab: train.run, model=ae callbacks=none",
        "bare_lab": "(e) bare tensor loop, the lab's model and optimizer",
    }
    names = {key: names[key] for key in args.loops}
    count = len(datasets.MNIST(str(args.root), train=True, download=False))
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads; {count} "
        f"real MNIST training digits from {args.root}; {args.epochs} epochs per loop (first "
        f"dropped), {args.rounds} rounds, each loop in a fresh process"
        + (f"; lab overrides: {' '.join(args.overrides)}" if args.overrides else "")
    )
    runs: dict[tuple[str, int], list[Epochs]] = {}
    started = time.perf_counter()
    order = list(names)
    for round_ in range(args.rounds):
        rotated = order[round_ % len(order) :] + order[: round_ % len(order)]
        for bs in args.batch_sizes:
            for key in rotated:
                epochs = in_fresh_process(key, bs, round_, args)
                runs.setdefault((key, bs), []).append(epochs)
                each = " ".join(f"{n / wall / 1e3:.1f}k" for n, wall, _ in epochs)
                print(
                    f"  round {round_ + 1}, batch {bs:>4}: {key:<9}"
                    f" {steady_rate(epochs, 'wall'):>7,.0f} samples/s wall,"
                    f" {steady_rate(epochs, 'cpu'):>7,.0f} per CPU-second; by epoch: {each}",
                    flush=True,
                )
    elapsed = time.perf_counter() - started
    clocks = ["wall", "cpu", "fastest"] if args.clock == "all" else [args.clock]
    for clock in clocks:
        rates = {k: [steady_rate(e, clock) for e in v] for k, v in runs.items()}
        print_table(names, rates, args.batch_sizes, clock)
    print(f"\n{elapsed:.0f} s in all")
    return 0


def print_table(
    names: dict[str, str], rates: dict[tuple[str, int], list[float]], sizes: list[int], clock: str
) -> None:
    """Samples/s per loop and batch size, then the ratios, as medians (min-max) over rounds."""
    ratios = [
        ("lab / study (target >= 2.0)", "lab", "study"),
        ("lab / bare, same settings (target >= 0.90)", "lab", "bare_opt"),
        ("lab / bare with the lab's model: Lightning's cost", "lab", "bare_lab"),
        ("bare with the lab's model / bare, same settings", "bare_lab", "bare_opt"),
        ("lab / bare, default Adam", "lab", "bare"),
        ("bare same settings / bare default Adam", "bare_opt", "bare"),
    ]
    width = max(len(label) for label in [*names.values(), *(r[0] for r in ratios)]) + 2
    cols = "".join(f"{f'batch {bs}':>24}" for bs in sizes)
    rounds = len(next(iter(rates.values())))
    unit = {
        "wall": "wall-clock second",
        "cpu": "CPU-second of the process (all threads)",
        "fastest": "wall-clock second in each round's fastest epoch",
    }[clock]
    print(f"\nsamples per {unit}; median (min-max) over {rounds} rounds")
    print(f"{'loop':<{width}}{cols}")
    for key, name in names.items():
        cells = "".join(f"{spread(rates[key, bs], ',.0f'):>24}" for bs in sizes)
        print(f"{name:<{width}}{cells}")
    print(f"{'ratio, median (min-max) of the per-round ratios':<{width}}")
    for label, top, bottom in ratios:
        if top not in names or bottom not in names:
            continue
        cells = ""
        for bs in sizes:
            per_round = [t / b for t, b in zip(rates[top, bs], rates[bottom, bs], strict=True)]
            cells += f"{spread(per_round, '.2f'):>24}"
        print(f"{label:<{width}}{cells}")


if __name__ == "__main__":
    sys.exit(main())
