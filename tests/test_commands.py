"""Every command the lab prints can be pasted back as it is: values quoted for Hydra's grammar,
then for the shell; run directories whose paths hold ``=``, ``,``, quotes or spaces included."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from ae_lab.run.commands import hydra_value
from ae_lab.run.train import run
from tests.conftest import REPO, TINY_RUN
from tests.test_failures import signal_when, start

#: Paths a user may well have: a sweep job's folder named by its overrides, a quote, spaces...
AWKWARD = ["/runs/a", "/runs/lr=0.1,beta=2", "/it's mine/x", "/a b/c", "null", "1e-3",
           "/x/${now:%Y}", "/back\\slash'", "/trailing\\", "[1,2]", "/{a}/b", "/a'b'c"]  # fmt: skip


@pytest.mark.parametrize("value", AWKWARD)
def test_a_value_reads_back_as_itself(value):
    written = hydra_value(value)
    assert OverridesParser.create().parse_override(f"key={written}").value() == value
    if "=" not in value and "," not in value and " " not in value and "'" not in value:
        assert written == value or value in ("null", "1e-3", "[1,2]", "/{a}/b", "/trailing\\")


@pytest.mark.slow
def test_the_printed_resume_command_runs_as_printed(tmp_path, mnist_root):
    run_dir = tmp_path / "lr=0.1,beta=2 it's" / "run"
    args = [f"data.root={mnist_root}", "callbacks=none", "trainer.max_epochs=3",
            "data.batch_size=8", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
            "trainer.enable_progress_bar=false"]  # fmt: skip
    process = start(*args, f"hydra.run.dir={hydra_value(str(run_dir))}")
    stderr = signal_when(process, run_dir / "checkpoints" / "last.ckpt", signal.SIGTERM)
    assert process.returncode == 143, stderr[-3000:]
    (command,) = [line.strip() for line in stderr.splitlines() if "train.py" in line]
    resumed = tmp_path / "resumed"
    result = subprocess.run(
        f"{command} hydra.run.dir={shlex.quote(str(resumed))}", shell=True, cwd=REPO,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (resumed / "metrics.json").is_file()


def test_eval_of_a_run_whose_path_needs_quoting_writes_into_it(compose, tmp_path, mnist_root):
    run_dir = tmp_path / "model=ae,lr=0.1" / "run"
    run(compose([f"data.root={mnist_root}", *TINY_RUN], run_dir))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={hydra_value(str(ckpt))}", "callbacks=none"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (evaluation,) = (run_dir / "eval").iterdir()
    assert (evaluation / "metrics.json").is_file()
