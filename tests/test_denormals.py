"""Denormals flushed on every thread that computes, or a warning that says they are not.

Each case runs in a fresh interpreter: the flag belongs to each thread, and whether torch's
intra-op threads have started yet is the point of the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from ae_lab.run.denormals import denormals

if not torch.set_flush_denormal(False):
    pytest.skip("this CPU has no flush-to-zero flag", allow_module_level=True)


def run_fresh(body: str) -> subprocess.CompletedProcess:
    code = "import torch\ntorch.set_num_threads(2)\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_probe_is_made_of_denormals():
    # read as bits: any float arithmetic on them (even a conversion to float64) reads zeros in a
    # process whose main thread flushes denormals, as this one does once a test trained a model
    bits = denormals(4).view(torch.int32)
    exponent, mantissa = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    assert bool((bits >= 0).all() & (exponent == 0).all() & (mantissa != 0).all())


def test_flushing_before_the_threads_start_reaches_every_thread():
    done = run_fresh(
        """
        from ae_lab.run.denormals import denormals, flush_denormals, flushed
        assert flush_denormals(True)
        assert bool(flushed().all()), flushed().float().mean()
        # a matmul (MKL's threads too) turns a denormal input into zeros
        a = denormals(256 * 256).view(256, 256)
        assert not bool((a @ torch.eye(256)).any())
        """
    )
    assert done.returncode == 0, done.stderr
    assert "flush_denormal" not in done.stderr


def test_flushing_after_the_threads_started_warns():
    done = run_fresh(
        """
        torch.ones(1 << 20).mul(2.0)  # a parallel operation: the intra-op threads start
        from ae_lab.run.denormals import flush_denormals, flushed
        assert not flush_denormals(True)
        assert bool(flushed().any()) and not bool(flushed().all())
        """
    )
    assert done.returncode == 0, done.stderr
    assert "flush_denormal=True applies to the main thread only" in done.stderr


def test_keeping_denormals_keeps_them():
    done = run_fresh(
        """
        from ae_lab.run.denormals import flush_denormals, flushed
        assert flush_denormals(False)
        assert not bool(flushed().any())
        """
    )
    assert done.returncode == 0, done.stderr
