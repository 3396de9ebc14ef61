"""Lightning's TensorBoardLogger, with the curves' tags arranged so that TensorBoard opens on the
loss curves.

TensorBoard's Time Series page groups cards by the tag's first part (``train`` of ``train/kl``),
sorts the groups by character code, so capitals come before lower case, and opens the first two.
The figures' images are lower case (``kl_per_unit/…``, ``reconstructions/…``), and so are the
final numbers that HParams reads (``test/…``, ``final/val/…``). This logger writes the curves under
capitalised groups, the loss first:

* ``train/loss``, ``train/loss_epoch``, ``val/loss`` → ``Loss/train``, ``Loss/train_epoch``,
  ``Loss/val``;
* every other term of a stage → ``Train/…``, ``Val/…`` (``Train/kl``, ``Val/psnr``);
* Lightning's own ``epoch`` counter, which it adds to every call, is left out (a flat card of no
  use before the curves; ``logger=csv`` keeps it).

Only the TensorBoard tags change: the metrics keep their names everywhere else (``val/loss`` for
the checkpoint's monitor, ``metrics.json``, sweeps, the CSV logger).
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

#: The metric prefixes of the stages and the group each one's curves go to.
STAGES = {"train": "Train", "val": "Val", "test": "Test"}
#: The group of every stage's loss: it sorts before the other groups (``L`` < ``T`` < ``V`` < ``a``).
LOSS_GROUP = "Loss"
#: Keys Lightning adds to the logged metrics that are not curves of the model.
LEFT_OUT = frozenset({"epoch"})


def curve_tag(name: str) -> str | None:
    """The TensorBoard tag of the metric ``name``; None for one that is left out. Names outside
    the stages (a user's own ``my_metric``) keep their tag."""
    if name in LEFT_OUT:
        return None
    stage, slash, term = name.partition("/")
    if not slash or stage not in STAGES:
        return name
    if term == "loss" or term.startswith("loss_"):  # loss_epoch: the epoch's mean
        return f"{LOSS_GROUP}/{stage}{term[len('loss') :]}"
    return f"{STAGES[stage]}/{term}"


class CurvesFirstTensorBoardLogger(TensorBoardLogger):
    """A ``TensorBoardLogger`` (any of its arguments) that writes each metric under
    :func:`curve_tag`'s tag, so that TensorBoard's landing view starts with the loss curves."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        tagged = {tag: value for name, value in metrics.items() if (tag := curve_tag(name))}
        if tagged:
            super().log_metrics(tagged, step)
