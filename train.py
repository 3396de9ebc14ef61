"""Train an autoencoder: ``python train.py model=vae data=mnist``. See ``--help`` and README.md."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here so that `--help` and config errors answer without loading torch.
    from ae_lab.errors import RunFailed, RunInterrupted, UserError
    from ae_lab.train import run

    try:
        run(cfg)
    except (UserError, RunFailed, RunInterrupted) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
