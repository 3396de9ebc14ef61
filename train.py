"""Train an autoencoder: ``python train.py model=vae data=mnist``. See ``--help`` and README.md.

Exit status: 0 finished, 1 failed (or a job of a sweep failed), 2 bad setting, 130/143
interrupted; see ae_lab/cli.py.
"""

from typing import Any

import hydra
from omegaconf import DictConfig

from ae_lab import cli


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> Any:
    # Imported here so that `--help` and config errors answer without loading torch.
    from ae_lab.run.train import run

    return cli.run_task(run, cfg)


if __name__ == "__main__":
    cli.main(main)
