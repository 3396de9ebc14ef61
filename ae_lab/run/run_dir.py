"""Run and sweep directories: each is claimed by one run, atomically, and a directory holding a
run's results is never trained into again.

A run directory is claimed by creating its ``.hydra/`` folder with ``os.mkdir``, which succeeds
for exactly one process; a sweep directory by creating its ``multirun.yaml`` with ``O_EXCL``.
These are the files Hydra writes first in each, so a claim leaves nothing new behind.

When the name is Hydra's time stamp (``${now:...}``) and is taken, for instance by another run
started in the same second, the next free ``<name>_1``, ``<name>_2``... is claimed instead. A name
the user chose (``hydra.run.dir=DIR``) is never changed: when it holds or is claimed by a run, the
run is refused and nothing is written.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ae_lab.errors import UserError
from ae_lab.layout import METRICS_FILE

#: The marker whose creation claims a run directory: Hydra's own config folder.
RUN_MARKER = ".hydra"
#: The marker whose creation claims a sweep directory: Hydra's record of the sweep.
SWEEP_MARKER = "multirun.yaml"
#: What Hydra writes into a run directory before the task starts (besides the ``.log`` file).
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
#: Suffixed names tried after a taken time-stamped one.
MAX_SUFFIX = 1000

# The run directory this process claimed, whether it created the folder, and the names the folder
# held before the claim: a run refused before it wrote anything removes what it added and nothing
# else (release).
_claimed: tuple[Path, bool, frozenset[str]] | None = None


def holds_run(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a run's results: ``metrics.json`` or a checkpoint."""
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    return (output_dir / METRICS_FILE).exists() or (
        checkpoints.is_dir() and any(checkpoints.iterdir())
    )


def refuse_to_overwrite(output_dir: str | Path) -> None:
    """Raise :class:`UserError` when ``output_dir`` already holds a run's results."""
    output_dir = Path(output_dir)
    if holds_run(output_dir):
        checkpoints = output_dir / "checkpoints"
        raise UserError(
            f"{output_dir} already holds a run (metrics.json or checkpoints/); nothing was changed. "
            "Choose a new hydra.run.dir, or resume from it into a new one with "
            f"ckpt_path={checkpoints / 'last.ckpt'}."
        )


def _candidates(path: Path, auto: bool) -> Iterator[Path]:
    yield path
    if auto:
        for n in range(1, MAX_SUFFIX):
            yield path.with_name(f"{path.name}_{n}")


def _make_folder(path: Path, setting: str) -> bool:
    """``mkdir -p path``; whether this call created ``path`` itself. A short error when it cannot."""
    try:
        if path.exists() and not path.is_dir():
            raise UserError(
                f"{setting}={path} is an existing file, not a directory; choose another path."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise UserError(
                f"{setting}={path} is an existing file, not a directory; choose another path."
            ) from None
        return False
    except OSError as exc:
        long = exc.errno == errno.ENAMETOOLONG
        why = "a name in it is longer than the file system allows" if long else exc.strerror
        shown = f"{str(path)[:80]}..." if long else str(path)
        raise UserError(
            f"cannot create {setting}={shown}: {why or exc}. Choose a "
            f"{'shorter' if long else 'writable'} place (paths.log_dir=DIR or hydra.run.dir=DIR)."
        ) from None


def claim_run_dir(path: str | Path, auto: bool) -> Path:
    """Claim ``path`` (or, when ``auto``, the first free ``path_N``) for one run; return it."""
    global _claimed
    path = Path(path)
    for candidate in _candidates(path, auto):
        if auto and candidate.exists() and not candidate.is_dir():
            continue
        created = _make_folder(candidate, "hydra.run.dir")
        before = frozenset(os.listdir(candidate))
        if not holds_run(candidate):
            try:
                os.mkdir(candidate / RUN_MARKER)
            except FileExistsError:
                pass
            else:
                _claimed = (candidate, created, before)
                return candidate
        if not auto:
            refuse_to_overwrite(candidate)
            raise UserError(
                f"hydra.run.dir={candidate} was already used by another run (it has "
                f"{RUN_MARKER}/); nothing was changed. Choose a new hydra.run.dir, or delete "
                "that directory if its run is over and you do not need it."
            )
    raise UserError(f"hydra.run.dir: {path} and {MAX_SUFFIX} suffixed names are all taken.")


def release(output_dir: str | Path | None = None) -> bool:
    """Remove the run directory this process claimed (``output_dir``, when given, must be it) if
    it holds nothing but what Hydra wrote before the task began (``.hydra/`` and the log); whether
    it is gone. For a run refused before it started: a bad setting leaves no directory behind.

    Only what this process added is removed: the ``.hydra/`` folder it created and log files that
    were not there when it claimed the folder. A folder it did not create stays, with everything
    that was in it before."""
    global _claimed
    if _claimed is None:
        return False
    if output_dir is not None and Path(output_dir).resolve() != _claimed[0].resolve():
        return False
    path, created, before = _claimed
    marker = path / RUN_MARKER
    added = {p.name for p in path.iterdir()} - before
    logs = {name for name in added if name.endswith(".log")}
    if added - logs - {RUN_MARKER} or not set(os.listdir(marker)) <= set(HYDRA_FILES):
        return False
    shutil.rmtree(marker)
    for name in logs:
        (path / name).unlink()
    if created and not any(path.iterdir()):
        path.rmdir()
    _claimed = None
    return True


def claim_sweep_dir(path: str | Path, auto: bool) -> Path:
    """Claim ``path`` (or, when ``auto``, the first free ``path_N``) for one sweep; return it.

    A sweep directory that holds anything already is taken: its jobs' ``.hydra/`` files and
    ``multirun.yaml`` would be rewritten by Hydra before any job could refuse."""
    path = Path(path)
    for candidate in _candidates(path, auto):
        if auto and candidate.exists() and not candidate.is_dir():
            continue
        _make_folder(candidate, "hydra.sweep.dir")
        if not any(candidate.iterdir()):
            try:
                fd = os.open(candidate / SWEEP_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                return candidate
        if not auto:
            raise UserError(
                f"hydra.sweep.dir={candidate} already holds a sweep or other files; nothing was "
                "changed. Choose a new hydra.sweep.dir."
            )
    raise UserError(f"hydra.sweep.dir: {path} and {MAX_SUFFIX} suffixed names are all taken.")
