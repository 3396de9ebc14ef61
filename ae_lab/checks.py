"""Every setting checked before anything is trained, each bad one refused with a
:class:`~ae_lab.errors.UserError` that names it and says what would be valid.

Three layers, most of it generic:

1. **Types, from the code** (:func:`check_arguments`). Every ``_target_`` node of the config is
   matched against its target's signature: an argument the target does not take, or a value whose
   type its annotation rules out (``int``, ``float``, ``bool``, ``str``, ``None``, ``Optional``,
   ``Union``, ``Literal``, lists and tuples), is refused with the valid names or types. Classes the
   checker does not know accept anything. This covers every ``lightning.Trainer`` argument, every
   optimizer and scheduler, and our own classes, with nothing listed by hand. The few top-level
   settings that are no constructor's argument have their types in :data:`SETTINGS`.
2. **Ranges, declared** (:data:`RULES`): the settings whose valid values the type does not say
   (``data.batch_size >= 1``, ``0 < data.val_fraction < 1``, ``model.optimizer.lr > 0``...).
   Several of them refuse a run that would train or measure nothing (``trainer.max_epochs=0``,
   ``trainer.limit_val_batches=0``, ``model.latent_dim=0``).
3. **What needs more than one setting or the data** (:func:`check_run_length`,
   :func:`check_splits`, :func:`check_checkpoint`): a schedule with no known run length, an empty
   split, a checkpoint of another model.

What constructors refuse themselves (``data.size=big``, ``trainer.accelerator=gpu`` without a GPU)
comes out through :func:`build` as the same kind of short error.
"""

from __future__ import annotations

import collections.abc
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ae_lab.cli import one_line
from ae_lab.errors import UserError

#: Keys of a ``_target_`` node that are Hydra's, not the target's arguments.
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

#: Top-level settings that no constructor receives, with their types.
SETTINGS: dict[str, Any] = {
    "seed": int | None,
    "matmul_precision": Literal["highest", "high", "medium"] | None,
    "flush_denormal": bool,
    "lean_step": bool,
    "ckpt_path": str | None,
    "task_name": str,
    "optimized_metric": str | None,
}

#: A schedule's arguments that ae_lab.models fills in with the run's length when they are null.
RUN_LENGTH_ARGUMENTS = ("total_steps", "T_max")

#: The types a value from YAML or the command line can have, besides null, lists and mappings.
PLAIN = (bool, int, float, str)


# ---- ranges ------------------------------------------------------------------------------------
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
            bounds.append(f"{'>' if self.low_open else '>='} {_show(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {_show(self.high)}")
        text = " and ".join(bounds) or "any number"
        for value, meaning in self.special.items():
            text += f", or {_show(value)} ({meaning})"
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
    "model.latent_dim": Range(1, special={None: "as wide as the input"}),
    "model.net.hidden_dims.*": AT_LEAST_1,
    "model.net.channels.*": AT_LEAST_1,
    "model.net.dense_dims.*": AT_LEAST_1,
    "model.penalty.weight": AT_LEAST_0,
    "model.penalty.active_threshold": AT_LEAST_0,
    "model.nll_samples": AT_LEAST_1,
    "model.beta": AT_LEAST_0,
    "model.warmup_steps": AT_LEAST_0,
    "model.corruption.p": PROBABILITY,
    "model.corruption.std": AT_LEAST_0,
    "model.optimizer.lr": POSITIVE,
    "model.optimizer.weight_decay": AT_LEAST_0,
    "model.optimizer.momentum": AT_LEAST_0,
    "model.scheduler.max_lr": POSITIVE,
    "callbacks.*.every_n_epochs": Range(1, special={None: "about 10 draws over the run"}),
    "callbacks.*.num_examples": AT_LEAST_1,
    "callbacks.latent_interpolation.grid": AT_LEAST_1,
    "callbacks.latent_interpolation.steps": Range(2),
    "callbacks.latent_interpolation.strip_columns": AT_LEAST_1,
    "callbacks.latent_interpolation.frame_ms": AT_LEAST_1,
    "callbacks.latent_space.num_points": AT_LEAST_1,
    "callbacks.latent_space.manifold_size": Range(2),
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
                problems.append(f"{path}={_show(value)}: must be {valid}")
    return problems


# ---- types, from the targets' signatures -------------------------------------------------------
@functools.cache
def parameters(target: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """``({name: annotation}, closed)`` of what ``target`` takes as keyword arguments; ``closed``
    when it takes no others. A class's ``__init__`` that passes ``**kwargs`` on is followed up its
    bases while they come from the same package (``ae_lab``'s variants pass theirs to the base)."""
    if inspect.isclass(target):
        chain = [c.__init__ for c in target.__mro__ if "__init__" in vars(c) and c is not object]
    else:
        chain = [target]
    package = _package(target)
    found: dict[str, Any] = {}
    for function in chain:
        if _package(function) != package:
            return found, False
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin: nothing to learn
            return found, False
        hints = _hints(function)
        for name, param in signature.parameters.items():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name != "self":
                found.setdefault(name, hints.get(name, Any))
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            return found, True
    return found, False


def _package(thing: Any) -> str:
    return (getattr(thing, "__module__", None) or "").split(".")[0]


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation that names something not importable: take each on its own
        hints = {}
        for name, param in inspect.signature(function).parameters.items():
            hints[name] = param.annotation
            if isinstance(param.annotation, str):
                try:
                    hints[name] = eval(param.annotation, function.__globals__)  # noqa: S307
                except Exception:
                    hints[name] = Any
        return hints


def conforms(value: Any, hint: Any) -> bool:
    """Whether a plain config value (from YAML or the command line) can be ``hint``."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar | str):
        return True
    if hint is None or hint is type(None):
        return value is None
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # built into an object first: its own arguments are checked on their own
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        # A plain value (a number, a string) is judged by the plain types of the union when it has
        # any: lr='abc' is not "float | Tensor", though Tensor is a class the checker does not know.
        plain = [arg for arg in args if arg in PLAIN or typing.get_origin(arg) is Literal]
        if isinstance(value, PLAIN) and plain:
            args = tuple(plain) + (type(None),)
        return any(conforms(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, list | tuple):
            return False
        if container is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(map(conforms, value, args))
        return not args or all(conforms(item, args[0]) for item in value)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    return True  # a class the checker does not know: anything may convert to it


def describe(hint: Any) -> str:
    """``hint`` in words: "an integer or null", "one of 16, '16-mixed', ..."."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        plain = [arg for arg in args if arg in PLAIN or typing.get_origin(arg) is Literal]
        if plain:  # what a config value can be (see conforms)
            args = (*plain, type(None)) if type(None) in args else tuple(plain)
        literals = [
            a for arg in args if typing.get_origin(arg) is Literal for a in typing.get_args(arg)
        ]
        others = [describe(arg) for arg in args if typing.get_origin(arg) is not Literal]
        if literals:
            others.insert(0, "one of " + ", ".join(map(_show, literals)))
        return " or ".join(dict.fromkeys(others))
    if origin is Literal:
        return "one of " + ", ".join(map(_show, args))
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = {_plural(arg) for arg in args}
            return f"a list of {len(args)} {items.pop() if len(items) == 1 else 'values'}"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if hint is None or hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    """``hint`` as the items of a list: "integers", "numbers" ("values" when not plain)."""
    args = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    plain = [arg for arg in args if arg in PLAIN]
    words = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
    return words[plain[0]] if len(plain) == 1 else "values"


def _show(value: Any) -> str:
    """A value as it is written on the command line: null, true, 'text', [1, 2]."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def check_arguments(tree: Any, path: str = "") -> list[str]:
    """Every ``_target_`` node under ``tree`` against its target's signature."""
    problems: list[str] = []
    if isinstance(tree, Mapping):
        if isinstance(tree.get("_target_"), str):
            problems += _check_node(tree, path)
        for key, value in tree.items():
            problems += check_arguments(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            problems += check_arguments(value, f"{path}[{i}]")
    return problems


def _check_node(node: Mapping[str, Any], path: str) -> list[str]:
    try:
        target = get_object(node["_target_"])
    except Exception as exc:
        return [f"{path}._target_={node['_target_']} cannot be imported ({one_line(exc)})"]
    if not callable(target):
        return [f"{path}._target_={node['_target_']} is not a class or function"]
    takes, closed = parameters(target)
    problems = []
    for name, value in node.items():
        if name in HYDRA_KEYS:
            continue
        where = f"{path}.{name}" if path else name
        if name not in takes:
            if closed:
                close = difflib.get_close_matches(name, takes, n=1)
                hint = (
                    f"did you mean {close[0]}?" if close else f"valid: {', '.join(sorted(takes))}"
                )
                problems.append(f"{where}: {node['_target_']} takes no argument {name!r}; {hint}")
        elif value is None and name in RUN_LENGTH_ARGUMENTS:
            continue  # filled in by the model (check_run_length says when it cannot be)
        elif not conforms(value, takes[name]):
            problems.append(f"{where}={_show(value)}: must be {describe(takes[name])}")
    return problems


def check_settings(tree: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}={_show(tree[name])}: must be {describe(hint)}"
        for name, hint in SETTINGS.items()
        if name in tree and not conforms(tree[name], hint)
    ]


# ---- what takes more than one setting ----------------------------------------------------------
def check_run_length(tree: Mapping[str, Any]) -> list[str]:
    """A schedule that is sized by the run's length needs a run with a known length."""
    scheduler = tree.get("model", {}).get("scheduler")
    trainer = tree.get("trainer", {})
    if not isinstance(scheduler, Mapping):
        return []
    sized_by_run = [
        name for name in RUN_LENGTH_ARGUMENTS if name in scheduler and scheduler[name] is None
    ]
    unbounded = trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (-1, None)
    if sized_by_run and unbounded:
        name = sized_by_run[0]
        return [
            f"model.scheduler ({scheduler['_target_']}) spans the whole run, but "
            "trainer.max_epochs=-1 and trainer.max_steps=-1 give it no end: set "
            f"trainer.max_epochs>=1 or trainer.max_steps>=1, or model.scheduler.{name}=N"
        ]
    return []


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The whole config with every interpolation resolved, as plain containers."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "config"
        raise UserError(f"{key}: {one_line(str(exc).splitlines()[0])}") from None


def check_config(cfg: DictConfig) -> None:
    """Every check that needs only the config; one :class:`UserError` listing what is wrong."""
    tree = resolved(cfg)
    problems = check_settings(tree) + check_arguments(tree)
    problems += check_ranges(tree) + check_run_length(tree)
    if problems:
        raise UserError("; ".join(dict.fromkeys(problems)))


# ---- building, and what needs the built objects ------------------------------------------------
def build(node: DictConfig, setting: str, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; what the constructor refuses (a :class:`UserError`, a
    ``ValueError``, Lightning's ``MisconfigurationException``, a missing optional package) becomes
    a :class:`UserError` naming ``setting``. Anything else is a bug and keeps its traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        # a value the constructor refuses, or a setting that needs a package not installed
        # (trainer.accelerator=tpu without torch_xla)
        if isinstance(cause, ValueError | MisconfigurationException | ModuleNotFoundError):
            raise UserError(f"{setting}: {one_line(cause)}") from None
        raise


#: The data settings that size the held-out splits.
FRACTIONS = ("val_fraction", "test_fraction")


def check_splits(datamodule: Any, data_cfg: DictConfig) -> None:
    """Refuse a split with no images: nothing to train on, or metrics of nothing."""
    from ae_lab.data.base import SPLITS

    sizes = {split: datamodule.split_size(split) for split in SPLITS}
    empty = [split for split, size in sizes.items() if size == 0]
    if empty:
        knobs = [f"data.{k} (now {data_cfg[k]})" for k in FRACTIONS if k in data_cfg]
        fix = f"raise {' or '.join(knobs)}" if knobs else f"check data.root={data_cfg.root}"
        counts = ", ".join(f"{split} {size}" for split, size in sizes.items())
        raise UserError(
            f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
            f"(images: {counts}): {fix} so that every split holds images"
        )
