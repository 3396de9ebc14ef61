"""Remake a run's metrics and figures from a checkpoint:
``python eval.py ckpt_path=RUN/checkpoints/last.ckpt``. See ``--help`` and README.md.

Writes ``RUN/eval/<time>/`` (``metrics.json``, ``figures/``); the run's own files are never
touched. Exit status as for train.py (ae_lab/cli.py).
"""

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from ae_lab import cli
from ae_lab.run.eval_config import prepare_argv


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> Any:
    # Imported here so that `--help` and config errors answer without loading torch.
    from ae_lab.run.eval_checkpoint import evaluate_checkpoint

    return cli.run_task(evaluate_checkpoint, cfg)


if __name__ == "__main__":
    sys.argv = prepare_argv(sys.argv)
    cli.main(main)
