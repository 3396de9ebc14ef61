"""Lightning's progress bar, redrawn at most a few times a second.

Lightning redraws its bar after every batch (``refresh_rate=1``), and each redraw reads the logged
metrics (a device sync on a GPU) and writes the terminal: about 0.5 ms, a tenth of a small model's
training step on a CPU. Redrawing on a clock instead keeps the bar as live for the eye, whatever
the speed of the model, and the end of every loop is always drawn.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Args:
    interval_s: least time between two redraws (the last batch of a loop is always drawn).
    """

    def __init__(self, interval_s: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.interval_s = float(interval_s)
        self._drawn_at = 0.0

    def _should_update(self, current: int, total: int) -> bool:
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current == total or now - self._drawn_at >= self.interval_s:
            self._drawn_at = now
            return True
        return False
