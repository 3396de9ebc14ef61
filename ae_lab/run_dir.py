"""The rule that protects finished runs: a run directory holding results is never trained into."""

from __future__ import annotations

from pathlib import Path

from ae_lab.errors import UserError


def refuse_to_overwrite(output_dir: str | Path) -> None:
    """Raise :class:`UserError` when ``output_dir`` already holds a run's results."""
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    if (output_dir / "metrics.json").exists() or (
        checkpoints.is_dir() and any(checkpoints.iterdir())
    ):
        raise UserError(
            f"{output_dir} already holds a run (metrics.json or checkpoints/); nothing was changed. "
            "Choose a new hydra.run.dir, or resume from it into a new one with "
            f"ckpt_path={checkpoints / 'last.ckpt'}."
        )
