"""How the model's parts (net, optimizer, corruption, penalty, schedule) are given: as a plain
config, kept in the checkpoint's hyperparameters, or as a Python object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import instantiate

#: A part of the model given either as a plain config (``{"_target_": ..., ...}``, kept in the
#: checkpoint's hyperparameters, so ``load_from_checkpoint`` rebuilds it with ``weights_only``
#: loading) or directly as a Python object (a factory, a callable).
Spec = Mapping[str, Any] | Callable[..., Any]


def build(spec: Spec | None) -> Any:
    """The object a spec describes: ``instantiate`` for a config, the object itself otherwise."""
    if spec is None:
        return None
    return instantiate(spec, _convert_="all") if isinstance(spec, Mapping) else spec
