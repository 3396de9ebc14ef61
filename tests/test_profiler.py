"""The trainer's default profiler: nothing profiled, nothing allocated per hook; a chosen one kept."""

from __future__ import annotations

from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

from ae_lab.profiler import NoProfiler
from ae_lab.train import build_trainer


def test_no_profiler_hands_back_one_reusable_context() -> None:
    profiler = NoProfiler()
    first, second = profiler.profile("a"), profiler.profile("b")
    assert first is second
    with first as entered, second:  # nested use, as Lightning nests hooks
        assert entered is None


def test_a_run_gets_the_cheap_profiler_unless_it_asks_for_one(compose) -> None:
    cfg = compose(["callbacks=none", "logger=[]"])
    assert isinstance(build_trainer(cfg).profiler, NoProfiler)
    cfg = compose(["callbacks=none", "logger=[]", "trainer.profiler=simple"])
    profiler = build_trainer(cfg).profiler
    assert isinstance(profiler, SimpleProfiler) and not isinstance(profiler, PassThroughProfiler)
