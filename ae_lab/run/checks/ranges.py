"""Settings whose valid values their type does not say, declared by path in :data:`RULES`
(``data.batch_size >= 1``, ``0 < data.val_fraction < 1``, ``model.optimizer.lr > 0``...): the one
place each range is checked. Several refuse a run that would train or measure nothing
(``trainer.max_epochs=0``, ``trainer.limit_val_batches=0``, ``model.latent_dim=0``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ae_lab.run.checks.types import show


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (each included unless ``*_open``), plus the ``special``
    values with their meaning (``{-1: "no limit"}``). ``null`` passes (its type is checked)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    special: Mapping[Any, str] = field(default_factory=dict)

    def admits(self, value: Any) -> bool:
        if value is None or value in self.special:
            return True
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True  # a wrong type is the type check's to report
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def __str__(self) -> str:
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {show(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {show(self.high)}")
        text = " and ".join(bounds) or "any number"
        for value, meaning in self.special.items():
            text += f", or {show(value)} ({meaning})"
        return text


@dataclass(frozen=True)
class Devices(Range):
    """``trainer.devices``: a count (``>= 1``, ``-1`` or ``"auto"``), or which devices, as a list
    of indices or a string of them (``"0,1"``), as Lightning reads it."""

    def admits(self, value: Any) -> bool:
        if isinstance(value, str) and value.strip() != "auto":
            ids = [part.strip() for part in value.split(",") if part.strip()]
            return bool(ids) and all(part.lstrip("-").isdigit() for part in ids)
        if isinstance(value, list):
            return bool(value) and all(type(i) is int and i >= 0 for i in value)
        return super().admits(value)

    def __str__(self) -> str:
        return super().__str__() + ", or device indices ([0, 1] or '0,1')"


@dataclass(frozen=True)
class OneOf(Range):
    """One of ``values`` (compared as text: Lightning reads ``32`` and ``"32"`` alike), with what
    the others lack in ``why``."""

    values: tuple[str, ...] = ()
    why: str = ""

    def admits(self, value: Any) -> bool:
        return value is None or str(value) in self.values

    def __str__(self) -> str:
        return f"one of {', '.join(self.values)}" + (f" ({self.why})" if self.why else "")


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, low_open=True, high_open=True)
PROBABILITY = Range(0, 1)
NO_LIMIT = {-1: "no limit"}

#: Valid ranges of settings, by path; ``*`` stands for any key of a mapping or item of a list.
#: A rule applies wherever its path exists (``model.beta`` only to models that have a ``beta``).
RULES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),
    "data.batch_size": AT_LEAST_1,
    "data.val_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.cache_workers": AT_LEAST_1,
    "data.crop": AT_LEAST_1,
    "data.holdout_class": AT_LEAST_0,  # below the dataset's class count: its constructor says
    "data.pad_to": Range(1, 128),  # px a side; every split is held padded in memory
    "model.latent_dim": Range(1, special={None: "as wide as the input"}),
    "model.net.hidden_dims.*": AT_LEAST_1,
    "model.net.channels.*": AT_LEAST_1,
    "model.net.dense_dims.*": AT_LEAST_1,
    "model.penalty.weight": AT_LEAST_0,
    "model.penalty.active_threshold": AT_LEAST_0,
    "model.penalty.target": FRACTION,
    "model.nll_samples": AT_LEAST_1,
    "model.beta": AT_LEAST_0,
    "model.warmup_steps": AT_LEAST_0,
    "model.codebook_size": Range(2),
    "model.codebook_dim": Range(1, special={None: "the whole code is one vector"}),
    "model.commitment": AT_LEAST_0,
    "model.ema": Range(0, 1, True, True, special={None: "the codebook learned by gradient"}),
    "model.dead_code_steps": Range(1, special={None: "never restart"}),
    "model.corruption.p": PROBABILITY,
    "model.corruption.std": AT_LEAST_0,
    "model.optimizer.lr": POSITIVE,
    "model.optimizer.weight_decay": AT_LEAST_0,
    "model.optimizer.momentum": AT_LEAST_0,
    "model.scheduler.max_lr": POSITIVE,
    "measures.probe_labels": Range(2, 60_000),  # at most the codes a split gives
    "measures.knn_k": Range(1, 1000),
    "callbacks.*.every_n_epochs": Range(1, special={None: "about 10 draws over the run"}),
    # Figures are held in memory whole and drawn between epochs: sizes a figure can show, and
    # that a full-size face image still fits (a GIF of 2*steps frames of a grid x grid mosaic)
    "callbacks.*.num_examples": Range(1, 256),
    "callbacks.*.num_points": Range(1, 5000),
    "callbacks.latent_interpolation.grid": Range(1, 6),
    "callbacks.latent_interpolation.steps": Range(2, 120),
    "callbacks.latent_interpolation.strip_columns": Range(1, 20),
    "callbacks.latent_interpolation.frame_ms": Range(1, 10_000),
    "callbacks.latent_space.manifold_size": Range(2, 40),
    "callbacks.filters.num_units": Range(1, 1024),
    "callbacks.samples.components": Range(1, 100),  # each refitted at every draw
    "callbacks.samples.num_codes": Range(2, 60_000),  # a split is encoded once a draw
    "callbacks.samples.max_iter": Range(1, 1000),
    "callbacks.projector.thumbnail": Range(8, 256),  # px a side; the sprite stays <= 8192 px
    "callbacks.traversals.num_units": Range(1, 32),
    "callbacks.traversals.steps": Range(2, 25),
    "callbacks.traversals.frame_ms": Range(1, 10_000),
    "callbacks.model_checkpoint.save_top_k": Range(0, special={-1: "all"}),
    "trainer.max_epochs": Range(1, special=NO_LIMIT),
    "trainer.max_steps": Range(1, special=NO_LIMIT),
    "trainer.min_epochs": AT_LEAST_0,
    "trainer.min_steps": AT_LEAST_0,
    "trainer.limit_train_batches": POSITIVE,
    "trainer.limit_val_batches": POSITIVE,
    "trainer.limit_test_batches": POSITIVE,
    "trainer.devices": Devices(1, special={-1: "all", "auto": "all available"}),
    # the data modules hand float32 images to models whose weights a "-true" precision other than
    # 32 would make bf16/fp16/fp64, and the figures and metrics read float32
    "trainer.precision": OneOf(
        values=("32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16"),
        why="the lab trains in float32 weights; bf16-mixed for speed on a GPU",
    ),
    "trainer.num_nodes": AT_LEAST_1,
    "trainer.accumulate_grad_batches": AT_LEAST_1,
    "trainer.check_val_every_n_epoch": AT_LEAST_1,
    "trainer.log_every_n_steps": AT_LEAST_1,
    "trainer.gradient_clip_val": AT_LEAST_0,
    "trainer.val_check_interval": POSITIVE,
    "trainer.overfit_batches": AT_LEAST_0,
    "trainer.reload_dataloaders_every_n_epochs": AT_LEAST_0,
}


def select(tree: Any, pattern: str) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every node of a plain container matching a dotted ``pattern``."""

    def walk(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
        if not parts:
            yield path, node
            return
        head, rest = parts[0], parts[1:]
        if isinstance(node, Mapping):
            keys = list(node) if head == "*" else [head] if head in node else []
            for key in keys:
                yield from walk(node[key], rest, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list) and head == "*":
            for i, item in enumerate(node):
                yield from walk(item, rest, f"{path}[{i}]")

    yield from walk(tree, pattern.split("."), "")


def check_ranges(tree: Mapping[str, Any]) -> list[str]:
    problems = []
    for pattern, valid in RULES.items():
        for path, value in select(tree, pattern):
            if not valid.admits(value):
                problems.append(f"{path}={show(value)}: must be {valid}")
    return problems
