"""``python -m ae_lab.data.image_cache.prune``: what it removes, what it keeps, and why."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ae_lab.data.image_cache import CacheLease
from ae_lab.data.image_cache.prune import main
from tests.helpers.faces import make_plain_jpeg_folder, write_solid
from tests.helpers.image_cache import build, names_in

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def caches(tmp_path, folder):
    """A cache folder with a cache of each kind (their manifest paths), and files of others."""
    cache_dir = tmp_path / "cache"
    made = SimpleNamespace(cache_dir=cache_dir)
    made.current = build(folder, cache_dir, size=16).manifest_path
    gone_folder, changed_folder = tmp_path / "gone", tmp_path / "changed"
    make_plain_jpeg_folder(gone_folder, n=2)
    made.gone = build(gone_folder, cache_dir, size=16).manifest_path
    shutil.rmtree(gone_folder)
    make_plain_jpeg_folder(changed_folder, n=2)
    made.changed = build(changed_folder, cache_dir, size=16).manifest_path
    write_solid(changed_folder / "new.jpg", (1, 2, 3))
    made.temp = cache_dir / "x-0123456789abcdef.u8.tmp-4242-0badcafe"
    made.temp.write_bytes(b"half")
    made.orphan = cache_dir / "y-0123456789abcdef.u8"
    made.orphan.write_bytes(b"an array whose manifest was never written")
    made.foreign = {"notes.txt": "mine", "data.u8": "mine too", "other.json": '{"a": 1}'}
    for name, text in made.foreign.items():
        (cache_dir / name).write_text(text)
    gc.collect()  # the caches built above are held no more
    return made


def line_about(out: str, manifest: Path) -> str:
    (line,) = [line for line in out.splitlines() if manifest.stem in line]
    return line


def test_prune_removes_what_is_out_of_date_and_unused(caches, capsys):
    cache_dir = caches.cache_dir
    held = CacheLease(caches.changed.with_suffix(".u8"))  # a run still uses it
    before = names_in(cache_dir)
    assert main([str(cache_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert names_in(cache_dir) == before
    assert line_about(out, caches.gone).startswith("would remove")
    assert "removed" not in out

    assert main([str(cache_dir)]) == 0
    out = capsys.readouterr().out
    assert line_about(out, caches.gone).startswith("removed")
    assert "is gone" in line_about(out, caches.gone)
    assert not caches.gone.exists() and not caches.gone.with_suffix(".u8").exists()
    assert not caches.temp.exists() and not caches.orphan.exists()
    assert "removed 1 temporary file of unfinished builds" in out
    assert {name: (cache_dir / name).read_text() for name in caches.foreign} == caches.foreign
    changed = line_about(out, caches.changed)
    assert changed.startswith("kept") and "changed since" in changed and "in use" in changed
    assert caches.changed.exists() and caches.changed.with_suffix(".u8").exists()
    assert line_about(out, caches.current).startswith("kept") and "(current)" in out
    assert caches.current.exists()
    assert out.splitlines()[-1].endswith("kept 2 (1 in use)")

    held.close()
    assert main([str(cache_dir)]) == 0
    assert line_about(capsys.readouterr().out, caches.changed).startswith("removed")
    assert not caches.changed.exists() and caches.current.exists()

    assert main([str(cache_dir), "--all"]) == 0
    assert line_about(capsys.readouterr().out, caches.current).startswith("removed")
    assert names_in(cache_dir) == sorted(caches.foreign)


def test_prune_of_a_folder_that_is_not_there_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "data.cache_dir" in err


def test_prune_runs_as_a_module_without_loading_torch(tmp_path, folder):
    build(folder, tmp_path / "cache", size=16)
    probe = (
        "import runpy, sys; sys.argv = ['prune', sys.argv[1], '--dry-run']\n"
        "try:\n    runpy.run_module('ae_lab.data.image_cache.prune', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "kept" in done.stdout and "(current)" in done.stdout
