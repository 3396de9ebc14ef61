"""Lightning's optimizer step without its per-step dispatch: the same work, the same hooks, in the
same order, ~0.15 ms a step less on a CPU.

Lightning's automatic optimization runs one training step through about a dozen layers: a closure
built from three partials, the ``optimizer_step`` hook, ``LightningOptimizer.step``, the strategy's
and the precision plugin's ``optimizer_step``, a wrapped closure, the ``backward`` strategy hook and
the precision plugin's backward hooks; and it calls every hook of every callback around zero_grad,
backward and the optimizer step, overridden or not (each through a profiler context). On the dense
autoencoder at batch 32 that is ~0.4 ms of a ~4.5 ms step on a CPU core, of which this saves
~0.15 ms (``benchmarks/step_profile.py lean_step=false`` against ``true``): the rest is torch's
own ``Optimizer.step`` wrapper and the ``training_step`` call, which both keep.

:class:`LeanAutomaticOptimization` takes the place of Lightning's ``_AutomaticOptimization`` in a
trainer (:func:`install`) and, where the setup is one it knows, runs the step directly:

1. ``training_step`` (through the strategy, so DDP's forward and autocast apply);
2. ``on_before_zero_grad`` hooks, ``optimizer_zero_grad`` (the module's, when overridden);
3. the strategy's ``pre_backward``, ``on_before_backward`` hooks, ``module.backward(loss)``,
   ``on_after_backward`` hooks, the strategy's ``post_backward``;
4. ``on_before_optimizer_step`` hooks and gradient clipping (``configure_gradient_clipping``);
5. ``optimizer.step(closure)``, the closure doing 1-4 inside it, as Lightning's does;

with the same progress counters (so ``global_step``, checkpoints and resuming are unchanged), and
calling only the hooks that a callback or the module overrides (a base hook does nothing). Every
other setup falls back to Lightning's own step, unchanged: gradient accumulation, a precision
plugin with a gradient scaler (``16-mixed``) or its own step, a strategy other than a single device
or DDP, a module that overrides ``optimizer_step``, manual optimization.

With a profiler (``trainer.profiler=simple``, ...), the sections Lightning's own step records around
it (``[Strategy]...backward``, ``[LightningModule]...optimizer_step``, and every callback's no-op
hooks) are not there; ``lean_step=false`` brings them back.

This relies on Lightning's internal loop classes (``lightning.pytorch.loops.optimization``): it is
written and tested against Lightning 2.6. :func:`install` leaves the trainer as it was when they are
not what it expects, and ``ae_lab.train`` runs Lightning's own step when this module cannot be
imported (a Lightning that moved them). ``lean_step: false`` in the config turns it off.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loops.optimization.automatic import Closure, ClosureResult
from lightning.pytorch.loops.optimization.automatic import _AutomaticOptimization as Automatic
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.trainer import call
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden

log = logging.getLogger(__name__)

#: The hooks around the optimizer step that callbacks and the module may override.
HOOKS = (
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
)

#: The precision plugin's methods the lean step stands in for; a plugin overriding one is not
#: plain (``MixedPrecision`` without a gradient scaler, bf16, only adds an autocast context).
PRECISION_METHODS = (
    "optimizer_step", "_wrap_closure", "_after_closure", "pre_backward", "backward",
    "post_backward", "_clip_gradients",
)  # fmt: skip


def _plain_precision(plugin: Any) -> bool:
    if type(plugin) is MixedPrecision and plugin.scaler is None:
        return True
    kind = type(plugin)
    return isinstance(plugin, Precision) and all(
        getattr(kind, name) is getattr(Precision, name) for name in PRECISION_METHODS
    )


def _plain_strategy(strategy: Any) -> bool:
    if type(strategy) is SingleDeviceStrategy:
        return True
    return type(strategy) is DDPStrategy and getattr(strategy, "_model_averager", None) is None


class _Setup:
    """What the lean step needs to know about a trainer, found once per fit (the module, the
    strategy, the precision plugin and the callbacks it was found for are its key)."""

    def __init__(self, trainer: L.Trainer) -> None:
        module = trainer.lightning_module
        self.key = _setup_key(trainer)
        self.lean = (
            _plain_strategy(trainer.strategy)
            and _plain_precision(trainer.precision_plugin)
            and not is_overridden("optimizer_step", module)
        )
        self.zero_grad_hook = is_overridden("optimizer_zero_grad", module)
        self.clipping_hook = is_overridden("configure_gradient_clipping", module)
        #: for each hook: the callbacks that override it, and whether the module does
        self.hooks = {
            hook: (
                [cb for cb in trainer.callbacks if is_overridden(hook, cb, parent=L.Callback)],
                is_overridden(hook, module),
            )
            for hook in HOOKS
        }


def _setup_key(trainer: L.Trainer) -> tuple[int, ...]:
    parts = (trainer.lightning_module, trainer.strategy, trainer.precision_plugin)
    return (*map(id, parts), *map(id, trainer.callbacks))


class LeanAutomaticOptimization(Automatic):
    """Lightning's automatic optimization, run directly where the setup allows (module docstring).

    A subclass of Lightning's own, so the fit loop's checkpoints hold the same progress state."""

    def __init__(self, trainer: L.Trainer) -> None:
        super().__init__(trainer)
        self._setup: _Setup | None = None

    def setup(self) -> _Setup:
        """The trainer's :class:`_Setup`, found again when its module, strategy, precision plugin
        or callbacks changed."""
        if self._setup is None or self._setup.key != _setup_key(self.trainer):
            self._setup = _Setup(self.trainer)
        return self._setup

    def applies(self, setup: _Setup) -> bool:
        """Whether this step can run lean (else Lightning's own step runs)."""
        trainer = self.trainer
        return (
            setup.lean
            and not self._skip_backward
            and trainer.accumulate_grad_batches == 1
            and len(trainer.optimizers) == 1
        )

    def run(self, optimizer: torch.optim.Optimizer, batch_idx: int, kwargs: OrderedDict) -> Any:
        setup = self.setup()
        if not self.applies(setup):
            return super().run(optimizer, batch_idx, kwargs)
        outcome: list[ClosureResult] = []

        def closure() -> torch.Tensor | None:
            with torch.enable_grad():
                result = self._lean_closure(setup, optimizer, batch_idx, kwargs)
            outcome.append(result)
            return result.loss

        progress = self.optim_progress.optimizer.step
        progress.increment_ready()
        optimizer.step(closure=closure)
        progress.increment_completed()
        if not outcome:  # Lightning's own step refuses this too (Closure.consume_result)
            raise MisconfigurationException(
                f"{type(optimizer).__name__}.step(closure) did not call the closure: the training "
                "step never ran. Use an optimizer that calls it, or lean_step=false"
            )
        result = outcome[-1]
        return {} if result.loss is None else result.asdict()

    # ---- the step --------------------------------------------------------------------------------
    def _lean_closure(
        self, setup: _Setup, optimizer: torch.optim.Optimizer, batch_idx: int, kwargs: OrderedDict
    ) -> ClosureResult:
        """What ``optimizer.step`` calls: the training step, zero_grad, backward, and what the
        precision plugin does once the closure returns."""
        result = self._training_step(kwargs)
        loss = result.closure_loss
        if loss is None:
            Closure.warning_cache.warn(
                "`training_step` returned `None`. If this was on purpose, ignore this warning..."
            )
        self._zero_grad(setup, optimizer, batch_idx)
        if loss is not None:
            self._backward(setup, loss)
        self._before_optimizer_step(setup, optimizer)
        return result

    def _zero_grad(self, setup: _Setup, optimizer: torch.optim.Optimizer, batch_idx: int) -> None:
        trainer = self.trainer
        progress = self.optim_progress.optimizer.zero_grad
        progress.increment_ready()
        self._hooks(setup, "on_before_zero_grad", optimizer)
        progress.increment_started()
        if setup.zero_grad_hook:
            call._call_lightning_module_hook(
                trainer, "optimizer_zero_grad", trainer.current_epoch, batch_idx, optimizer
            )
        else:
            optimizer.zero_grad()
        progress.increment_completed()

    def _backward(self, setup: _Setup, loss: torch.Tensor) -> None:
        """``Strategy.backward`` with a plain precision plugin."""
        strategy, module = self.trainer.strategy, self.trainer.lightning_module
        strategy.pre_backward(loss)
        self._hooks(setup, "on_before_backward", loss)
        previous, module._current_fx_name = module._current_fx_name, "backward"
        module.backward(loss)
        module._current_fx_name = previous
        self._hooks(setup, "on_after_backward")
        strategy.post_backward(loss.detach())

    def _before_optimizer_step(self, setup: _Setup, optimizer: torch.optim.Optimizer) -> None:
        """The precision plugin's ``_after_closure``: hooks, then gradient clipping."""
        trainer = self.trainer
        self._hooks(setup, "on_before_optimizer_step", optimizer)
        if trainer.gradient_clip_val or setup.clipping_hook:
            trainer.precision_plugin._clip_gradients(
                trainer.lightning_module,
                optimizer,
                trainer.gradient_clip_val,
                gradient_clip_algorithm=trainer.gradient_clip_algorithm,
            )

    def _hooks(self, setup: _Setup, hook: str, *args: Any) -> None:
        """``hook`` on the callbacks that override it, then on the module if it does: what
        Lightning's ``_call_callback_hooks`` and ``_call_lightning_module_hook`` do, without the
        calls to hooks that do nothing."""
        callbacks, module_overrides = setup.hooks[hook]
        trainer = self.trainer
        if callbacks:
            module = trainer.lightning_module
            previous, module._current_fx_name = module._current_fx_name, hook
            for callback in callbacks:
                with trainer.profiler.profile(f"[Callback]{callback.state_key}.{hook}"):
                    getattr(callback, hook)(trainer, module, *args)
            module._current_fx_name = previous
        if module_overrides:
            call._call_lightning_module_hook(trainer, hook, *args)


def install(trainer: L.Trainer) -> bool:
    """Put :class:`LeanAutomaticOptimization` in ``trainer``'s training loop; False (and the
    trainer unchanged) when the loop is not the one this was written for."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    current = getattr(epoch_loop, "automatic_optimization", None)
    if type(current) is not Automatic:
        log.debug("lean_step: Lightning's training loop is not the expected one; left as it is")
        return False
    epoch_loop.automatic_optimization = LeanAutomaticOptimization(trainer)
    return True
