"""Wall time of the bake-off sweep (issue: the whole Fashion-MNIST bake-off on a 2-core CPU with
the joblib launcher), run exactly as a user runs it, plus each job's epoch times.

    .venv/bin/python benchmarks/bakeoff_time.py --data-root ../shared/data/fashion-mnist \
        [--epochs 60] [--jobs 2] [--out /tmp/bakeoff] [-- extra overrides]

Prints the sweep's wall time, each job's wall time (from its config written at the start to its
metrics.json) and, for fewer than 60 epochs, the wall time 60 epochs would take at the same pace.
The sweep's report.md is in --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_EPOCHS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=PROTOCOL_EPOCHS)
    parser.add_argument("--jobs", type=int, default=2, help="joblib jobs at once")
    parser.add_argument("--out", default="/tmp/bakeoff_benchmark")
    parser.add_argument("extra", nargs="*", help="more overrides, after --")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    command = [
        sys.executable, "train.py", "-m", "experiment=bakeoff", f"data={args.data}",
        f"data.root={args.data_root}", "data.download=false", f"trainer.max_epochs={args.epochs}",
        "hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}", f"hydra.sweep.dir={out}",
        *args.extra,
    ]  # fmt: skip
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if done.returncode:
        print(done.stderr.decode()[-3000:], file=sys.stderr)
    print(f"\nsweep: {wall / 60:.1f} min wall, exit {done.returncode}, report: {out}/report.md")
    print(f"{'job':<20} {'job min':>8}  outcome")
    for job in sorted(
        out.glob("*/.hydra/config.yaml"), key=lambda p: int(p.parts[-3].split("_")[0])
    ):
        run_dir = job.parent.parent
        overrides = (job.parent / "overrides.yaml").read_text().split("\n")
        name = next((o.split("=")[1] for o in overrides if "bakeoff=" in o), run_dir.name)
        metrics = run_dir / "metrics.json"
        if metrics.exists():
            minutes = (metrics.stat().st_mtime - job.stat().st_mtime) / 60
            print(f"{name:<20} {minutes:>8.1f}  completed")
        else:
            print(f"{name:<20} {'':>8}  no metrics.json")
    if args.epochs < PROTOCOL_EPOCHS:
        scale = PROTOCOL_EPOCHS / args.epochs
        print(f"at this pace, {PROTOCOL_EPOCHS} epochs: about {wall * scale / 60:.0f} min wall")


if __name__ == "__main__":
    main()
