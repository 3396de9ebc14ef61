"""Lightning's optimizer step without its per-step dispatch: the same work and hooks, in the same
order.

Lightning's automatic optimization runs one training step through about a dozen layers: a closure
built from three partials, the ``optimizer_step`` hook, ``LightningOptimizer.step``, the strategy's
and the precision plugin's ``optimizer_step``, a wrapped closure, the ``backward`` strategy hook and
the precision plugin's backward hooks; and it calls every hook of every callback around zero_grad,
backward and the optimizer step, overridden or not. On the dense autoencoder at batch 32 that was
~0.15 ms a step on a CPU core (``benchmarks/step_profile.py``); what remains is torch's own
``Optimizer.step`` wrapper, which a bare loop pays too.

:class:`LeanAutomaticOptimization` takes the place of Lightning's ``_AutomaticOptimization`` in the
lean training loop (:mod:`ae_lab.lean`) and, where the setup is one it knows, runs the step
directly:

1. ``training_step`` (through the strategy, so DDP's forward and autocast apply);
2. ``on_before_zero_grad`` hooks, ``optimizer_zero_grad`` (the module's, when overridden);
3. the strategy's ``pre_backward``, ``on_before_backward`` hooks, ``module.backward(loss)``,
   ``on_after_backward`` hooks, the strategy's ``post_backward``;
4. ``on_before_optimizer_step`` hooks and gradient clipping (``configure_gradient_clipping``);
5. ``optimizer.step(closure)``, the closure doing 1-4 inside it, as Lightning's does (for torch's
   own optimizers that call the closure first thing, and with no step pre-hooks, ``closure()``
   then ``optimizer.step()``: the same, a round trip through the optimizer shorter);

with the same progress counters (so ``global_step``, checkpoints and resuming are unchanged), and
calling only the hooks that a callback or the module overrides (:mod:`ae_lab.lean.hooks`). Every
other setup runs Lightning's own step, unchanged: gradient accumulation, a precision plugin with a
gradient scaler (``16-mixed``) or its own step, a strategy other than a single device or DDP, a
module that overrides ``optimizer_step``, manual optimization.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import lightning as L
import torch
import torch.optim.optimizer as torch_optimizer
from lightning.pytorch.loops.optimization.automatic import Closure, ClosureResult
from lightning.pytorch.loops.optimization.automatic import _AutomaticOptimization as Automatic
from lightning.pytorch.trainer import call
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ae_lab.lean.hooks import Setup, SetupCache

#: torch's optimizers whose ``step(closure)`` calls the closure once, under ``torch.enable_grad``,
#: before anything else it does (``LBFGS`` calls it again and again; an optimizer of another
#: library may do anything with it)
CLOSURE_FIRST = (
    torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adagrad,
    torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta,
    torch.optim.ASGD, torch.optim.Rprop,
)  # fmt: skip


def closure_first(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step(closure)`` does what ``closure(); optimizer.step()`` does: one of
    :data:`CLOSURE_FIRST`, and no step pre-hooks (of the optimizer or global), which ``step`` runs
    before it calls the closure."""
    return (
        type(optimizer) in CLOSURE_FIRST
        and not getattr(optimizer, "_optimizer_step_pre_hooks", True)
        and not getattr(torch_optimizer, "_global_optimizer_pre_hooks", True)
    )


class LeanAutomaticOptimization(Automatic):
    """Lightning's automatic optimization, run directly where the setup allows (module docstring).

    A subclass of Lightning's own, so the fit loop's checkpoints hold the same progress state."""

    def __init__(self, trainer: L.Trainer, setups: SetupCache | None = None) -> None:
        super().__init__(trainer)
        self.setups = setups or SetupCache(trainer)

    def setup(self) -> Setup:
        """The trainer's :class:`~ae_lab.lean.hooks.Setup`."""
        return self.setups.get()

    def applies(self, setup: Setup) -> bool:
        """Whether this step can run lean (else Lightning's own step runs)."""
        trainer = self.trainer
        return (
            setup.lean_step
            and not self._skip_backward
            and trainer.accumulate_grad_batches == 1
            and len(trainer.optimizers) == 1
        )

    def run(
        self,
        optimizer: torch.optim.Optimizer,
        batch_idx: int,
        kwargs: OrderedDict,
        setup: Setup | None = None,
    ) -> Any:
        """One optimizer step; ``setup``: the one the lean batch found for this batch (else it is
        found here, as when Lightning's own batch calls this)."""
        setup = setup or self.setup()
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
        if setup.profiling or not closure_first(optimizer):
            optimizer.step(closure=closure)
        else:  # what step(closure) does, without the closure's round trip through the optimizer
            closure()
            optimizer.step()
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
        self, setup: Setup, optimizer: torch.optim.Optimizer, batch_idx: int, kwargs: OrderedDict
    ) -> ClosureResult:
        """What ``optimizer.step`` calls: the training step, zero_grad, backward, and what the
        precision plugin does once the closure returns."""
        result = self._lean_training_step(setup, kwargs)
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

    def _lean_training_step(self, setup: Setup, kwargs: OrderedDict) -> ClosureResult:
        """Lightning's ``_training_step``: the strategy's ``training_step`` (the module's directly
        where that is all the strategy's would do: ``Setup.direct_training_step``; with the
        module's ``_current_fx_name`` set, in its profiler section when profiling), its unused
        ``post_training_step``, the output as a ``ClosureResult``. A loss returned as a tensor is
        taken as it is: Lightning divides it by ``accumulate_grad_batches``, which is 1 wherever
        the lean step runs (an operation and a node in the graph, each step, for nothing)."""
        trainer = self.trainer
        strategy, module = trainer.strategy, trainer.lightning_module
        previous, module._current_fx_name = module._current_fx_name, "training_step"
        output = setup.in_section(
            trainer,
            lambda: f"[Strategy]{type(strategy).__name__}.training_step",
            module.training_step if setup.direct_training_step else strategy.training_step,
            *kwargs.values(),
        )
        module._current_fx_name = previous
        strategy.post_training_step()  # (Lightning calls it, unused, for backward compatibility)
        if output is None and trainer.world_size > 1:
            raise RuntimeError(
                "Skipping the `training_step` by returning None in distributed training is not "
                "supported. It is recommended that you rewrite your training logic to avoid having "
                "to skip the step in the first place."
            )
        if isinstance(output, torch.Tensor):
            return ClosureResult(output)
        return ClosureResult.from_training_step_output(output, trainer.accumulate_grad_batches)

    def _zero_grad(self, setup: Setup, optimizer: torch.optim.Optimizer, batch_idx: int) -> None:
        trainer = self.trainer
        progress = self.optim_progress.optimizer.zero_grad
        progress.increment_ready()
        setup.call(self.trainer, "on_before_zero_grad", optimizer)
        progress.increment_started()
        if setup.zero_grad_hook:
            call._call_lightning_module_hook(
                trainer, "optimizer_zero_grad", trainer.current_epoch, batch_idx, optimizer
            )
        else:
            optimizer.zero_grad()
        progress.increment_completed()

    def _backward(self, setup: Setup, loss: torch.Tensor) -> None:
        """``Strategy.backward`` with a plain precision plugin (the strategy's own hooks only where
        it has them)."""
        strategy, module = self.trainer.strategy, self.trainer.lightning_module
        if setup.backward_hooks:
            strategy.pre_backward(loss)
        setup.call(self.trainer, "on_before_backward", loss)
        previous, module._current_fx_name = module._current_fx_name, "backward"
        module.backward(loss)
        module._current_fx_name = previous
        setup.call(self.trainer, "on_after_backward")
        if setup.backward_hooks:
            strategy.post_backward(loss.detach())

    def _before_optimizer_step(self, setup: Setup, optimizer: torch.optim.Optimizer) -> None:
        """The precision plugin's ``_after_closure``: hooks, then gradient clipping."""
        trainer = self.trainer
        setup.call(self.trainer, "on_before_optimizer_step", optimizer)
        if trainer.gradient_clip_val or setup.clipping_hook:
            trainer.precision_plugin._clip_gradients(
                trainer.lightning_module,
                optimizer,
                trainer.gradient_clip_val,
                gradient_clip_algorithm=trainer.gradient_clip_algorithm,
            )
