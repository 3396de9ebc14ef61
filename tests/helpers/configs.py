"""What the config tree holds, read from ``conf/`` so tests never list models or presets by hand:
a new ``conf/model/x.yaml`` or ``conf/experiment/x.yaml`` is tested the moment it exists."""

from __future__ import annotations

from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str, conf: Path = CONF) -> list[str]:
    """The options of a config group (``model``, ``model/penalty``, ``experiment``...), sorted."""
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def groups(conf: Path = CONF) -> list[str]:
    """Every config group under ``conf`` with at least one option, as ``a/b`` paths."""
    found = {p.parent.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")}
    return sorted(g for g in found if g != ".")
