"""Settings checked against the code: every ``_target_`` node of the config matched against its
target's signature. An argument the target does not take, or a value whose type its annotation
rules out (``int``, ``float``, ``bool``, ``str``, ``None``, ``Optional``, ``Union``, ``Literal``,
lists and tuples), is refused with the valid names or types. This covers every
``lightning.Trainer`` argument, every optimizer and scheduler, and the lab's own classes, with
nothing listed by hand; classes the checker does not know accept anything. The few top-level
settings that are no constructor's argument have their types in :data:`SETTINGS`.
"""

from __future__ import annotations

import collections.abc
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from hydra.utils import get_object

from ae_lab.errors import one_line
from ae_lab.models.optimization import RUN_LENGTH_ARGUMENTS

#: Keys of a ``_target_`` node that are Hydra's, not the target's arguments.
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

#: Top-level settings that no constructor receives, with their types.
SETTINGS: dict[str, Any] = {
    "seed": int | None,
    "matmul_precision": Literal["highest", "high", "medium"] | None,
    "flush_denormal": bool,
    "ckpt_path": str | None,
    "init_from": str | None,
    "task_name": str,
    "optimized_metric": str | None,
}

#: The top-level sections, each a mapping composed from conf/ (a group, or paths and measures).
SECTIONS = frozenset({"model", "data", "trainer", "callbacks", "logger", "paths", "measures"})

#: The types a value from YAML or the command line can have, besides null, lists and mappings.
PLAIN = (bool, int, float, str)
#: Required arguments the lab passes when it builds the object, not the config (the model's
#: image shape comes from the data).
SUPPLIED_AT_BUILD = frozenset({"input_shape"})


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


@functools.cache
def _signature(target: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):  # a builtin: nothing to learn
        return None


def required(target: Callable[..., Any]) -> set[str]:
    """The keyword arguments ``target`` cannot be called without."""
    signature = _signature(target)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if signature is None:
        return set()
    return {
        name
        for name, p in signature.parameters.items()
        if p.kind in kinds and p.default is inspect.Parameter.empty and name != "self"
    }


def defaults(target: Callable[..., Any]) -> dict[str, Any]:
    """``{name: default}`` of the arguments of ``target`` that have one."""
    signature = _signature(target)
    if signature is None:
        return {}
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty
    }


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
    # a class the checker does not know: any value may convert to it, but null is no value
    return value is not None


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
            others.insert(0, "one of " + ", ".join(map(show, literals)))
        return " or ".join(dict.fromkeys(others))
    if origin is Literal:
        return "one of " + ", ".join(map(show, args))
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
    if (origin or hint) in (dict, collections.abc.Mapping, collections.abc.Callable):
        return "a config with a _target_"
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


def show(value: Any) -> str:
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
    if not node.get("_partial_"):  # (a factory's missing arguments come when it is called)
        for name in sorted(required(target) - set(node) - SUPPLIED_AT_BUILD):
            where = f"{path}.{name}" if path else name
            problems.append(f"{where} is missing: {node['_target_']} needs it; restore it")
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
        elif value is None and defaults(target).get(name, ...) is None:
            continue  # null is the argument's own default
        elif not conforms(value, takes[name]):
            fix = _group_hint(where) if value is None else ""
            problems.append(f"{where}={show(value)}: must be {describe(takes[name])}{fix}")
    return problems


def _group_hint(path: str) -> str:
    """``"; choose one: model/net=conv|mlp"`` when ``path`` is a config group of conf/."""
    from ae_lab.compose import CONF

    folder = CONF.joinpath(*path.split("."))
    options = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return f"; choose one: {'/'.join(path.split('.'))}={'|'.join(options)}" if options else ""


def check_unknown(tree: Mapping[str, Any], interpolated: set[str]) -> list[str]:
    """Top-level keys the lab never reads (``+seeed=3``: the ``+`` adds any key, typos included),
    unless another setting interpolates them (``+lr=1e-3 model.optimizer.lr='${lr}'``)."""
    known = sorted(SETTINGS) + sorted(SECTIONS)
    problems = []
    for name in tree:
        if name in SETTINGS or name in SECTIONS or name in interpolated:
            continue
        inside = [f"{s}.{name}" for s in sorted(SECTIONS) if name in (tree.get(s) or {})]
        close = inside or difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(
            f"{name}: not a setting of the lab{hint}; the top-level settings are {', '.join(known)}"
        )
    return problems


def check_settings(tree: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}={show(tree[name])}: must be {describe(hint)}"
        for name, hint in SETTINGS.items()
        if name in tree and not conforms(tree[name], hint)
    ]
