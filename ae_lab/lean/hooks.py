"""What a trainer's parts override, found once per fit, and hook calls that go only to those.

Lightning calls each hook of the training loop on every callback, overridden or not, each inside a
profiler section whose name it formats first (``[Callback]{callback.state_key}.{hook}``: for a
``ModelCheckpoint`` the repr of a dict), then on the module, whose hook it finds again every time;
the batch-transfer hooks are looked up on the module and the datamodule (``is_overridden``, three
times a step). A :class:`Setup` finds all of that once; :meth:`Setup.call` then calls, in
Lightning's order (the callbacks in the trainer's order, then the module), only the hooks that do
something, with ``_current_fx_name`` set as Lightning sets it (``self.log`` reads it), and inside
the same profiler sections when a profiler is in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

#: The hooks around the optimizer step that callbacks and the module may override.
STEP_HOOKS = (
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
)
#: The hooks around each training batch.
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
#: The hooks that move a batch to the device, shared by the module and the datamodule.
TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")

#: The precision plugin's methods the lean step stands in for; a plugin overriding one is not
#: plain (``MixedPrecision`` without a gradient scaler, bf16, only adds an autocast context).
PRECISION_METHODS = (
    "optimizer_step", "_wrap_closure", "_after_closure", "pre_backward", "backward",
    "post_backward", "_clip_gradients",
)  # fmt: skip


def plain_precision(plugin: Any) -> bool:
    if type(plugin) is MixedPrecision and plugin.scaler is None:
        return True
    kind = type(plugin)
    return isinstance(plugin, Precision) and all(
        getattr(kind, name) is getattr(Precision, name) for name in PRECISION_METHODS
    )


def plain_strategy(strategy: Any) -> bool:
    """One device, or DDP without a model averager: strategies whose batch transfer, batch hooks
    and backward the lean loop does as they would."""
    if type(strategy) is SingleDeviceStrategy:
        return True
    return type(strategy) is DDPStrategy and getattr(strategy, "_model_averager", None) is None


def setup_key(trainer: L.Trainer) -> tuple[int, ...]:
    """What a :class:`Setup` depends on, by identity: when any of it changes, it is found again."""
    parts = (
        trainer.lightning_module, trainer.datamodule, trainer.strategy,
        trainer.precision_plugin, trainer.profiler,
    )  # fmt: skip
    return (*map(id, parts), *map(id, trainer.callbacks))


class Setup:
    """What the lean loop needs to know about a trainer: which of its parts override which hook,
    and whether the step and the batch can run lean at all."""

    def __init__(self, trainer: L.Trainer) -> None:
        module = trainer.lightning_module
        self.key = setup_key(trainer)
        #: a profiler is in use: hooks run inside Lightning's profiler sections
        self.profiling = not isinstance(trainer.profiler, PassThroughProfiler)
        strategy = trainer.strategy
        #: the optimizer step can run lean (:mod:`ae_lab.lean.step`)
        self.lean_step = (
            plain_strategy(strategy)
            and plain_precision(trainer.precision_plugin)
            and not is_overridden("optimizer_step", module)
        )
        #: the batch can run lean (:mod:`ae_lab.lean.batch`)
        self.lean_batch = plain_strategy(strategy) and not any(
            getattr(type(strategy), name) is not getattr(Strategy, name)
            for name in ("batch_to_device", "on_train_batch_start")
        )
        #: ``strategy.training_step`` would only call the module's: one device, the module not
        #: wrapped, a precision plugin with no context for the step (32-true; not bf16's autocast)
        plugin = type(trainer.precision_plugin)
        self.direct_training_step = (
            type(strategy) is SingleDeviceStrategy
            and strategy.model is module
            and plugin.train_step_context is Precision.train_step_context
            and plugin.forward_context is Precision.forward_context
        )
        #: the strategy does something before or after backward (DDP does; one device does not)
        self.backward_hooks = any(
            getattr(type(strategy), name) is not getattr(Strategy, name)
            for name in ("pre_backward", "post_backward")
        )
        self.zero_grad_hook = is_overridden("optimizer_zero_grad", module)
        self.clipping_hook = is_overridden("configure_gradient_clipping", module)
        self.takes_batch_idx = is_param_in_hook_signature(
            module.training_step, "batch_idx", min_args=2
        )
        #: for each hook: the callbacks that override it, and whether the module does
        self.hooks = {
            hook: (
                [cb for cb in trainer.callbacks if is_overridden(hook, cb, parent=L.Callback)],
                is_overridden(hook, module),
            )
            for hook in (*STEP_HOOKS, *BATCH_HOOKS)
        }
        #: the same callbacks' hooks, as bound methods (called as they are without a profiler;
        #: a hook assigned to a callback instance later, in the same fit, is not seen)
        self.methods = {
            hook: [getattr(cb, hook) for cb in callbacks]
            for hook, (callbacks, _) in self.hooks.items()
        }
        #: for each transfer hook: the module or datamodule whose override runs, or None (the
        #: base hook: the batch unchanged, or moved by ``move_data_to_device``). Lightning's
        #: choice, with its warning when both override one.
        selector = trainer._data_connector._datahook_selector
        self.transfer: dict[str, Any] = {}
        for hook in TRANSFER_HOOKS:
            owner = selector.get_instance(hook) if selector is not None else module
            self.transfer[hook] = owner if is_overridden(hook, owner) else None

    def call(self, trainer: L.Trainer, hook: str, *args: Any) -> Any:
        """``hook`` on the callbacks that override it, then on the module if it does (what it
        returns): Lightning's ``_call_callback_hooks`` and ``_call_lightning_module_hook``, without
        the calls to hooks that do nothing."""
        callbacks, module_overrides = self.hooks[hook]
        module = trainer.lightning_module
        if callbacks:
            previous, module._current_fx_name = module._current_fx_name, hook
            if not self.profiling:
                for method in self.methods[hook]:
                    method(trainer, module, *args)
            else:
                for callback in callbacks:
                    self.in_section(
                        trainer,
                        lambda cb=callback: f"[Callback]{cb.state_key}.{hook}",
                        getattr(callback, hook),
                        trainer,
                        module,
                        *args,
                    )
            module._current_fx_name = previous
        if module_overrides:
            return self.call_module(trainer, hook, *args)
        return None

    def call_module(self, trainer: L.Trainer, hook: str, *args: Any) -> Any:
        """The module's ``hook``, as ``_call_lightning_module_hook`` calls it."""
        module = trainer.lightning_module
        previous, module._current_fx_name = module._current_fx_name, hook
        output = self.in_section(
            trainer,
            lambda: f"[LightningModule]{type(module).__name__}.{hook}",
            getattr(module, hook),
            *args,
        )
        module._current_fx_name = previous
        return output

    def call_transfer(self, trainer: L.Trainer, hook: str, *args: Any) -> Any:
        """The module's or the datamodule's override of a batch-transfer hook (Lightning's
        ``_call_batch_hook``)."""
        owner = self.transfer[hook]
        if isinstance(owner, L.LightningModule):
            return self.call_module(trainer, hook, *args)
        if not self.profiling:
            return getattr(owner, hook)(*args)
        return self.in_section(
            trainer,
            lambda: f"[LightningDataModule]{type(owner).__name__}.{hook}",
            getattr(owner, hook),
            *args,
        )

    def in_section(
        self, trainer: L.Trainer, section: Callable[[], str], function: Callable, *args: Any
    ) -> Any:
        """``function(*args)``, inside the profiler section ``section()`` names when a profiler is
        in use (the name, which Lightning formats at every call, only then)."""
        if not self.profiling:
            return function(*args)
        with trainer.profiler.profile(section()):
            return function(*args)


class SetupCache:
    """The trainer's :class:`Setup`, found again when its module, datamodule, strategy, precision
    plugin, profiler or callbacks changed (a new ``fit``, a callback added)."""

    def __init__(self, trainer: L.Trainer) -> None:
        self.trainer = trainer
        self._setup: Setup | None = None

    def get(self) -> Setup:
        if self._setup is None or self._setup.key != setup_key(self.trainer):
            self._setup = Setup(self.trainer)
        return self._setup
