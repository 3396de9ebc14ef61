"""Commands the lab prints for the user to paste back (resume, evaluate, reproduce): each value
written so that Hydra's override grammar reads back exactly that string, then quoted for the
shell, and run by the interpreter and script the user ran."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def hydra_value(value: str) -> str:
    """``value`` as an override's right-hand side that Hydra reads back as this very string: as
    it is when the grammar allows (``/runs/a``), else single-quoted (``'/runs/lr=0.1,b'``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for candidate in (value, _single_quoted(value)):
        try:
            if parser.parse_override(f"key={candidate}").value() == value:
                return candidate
        except Exception:  # not valid in the grammar as it is: try the next form
            continue
    raise ValueError(f"{value!r} cannot be written as a Hydra override value")


def _single_quoted(value: str) -> str:
    """``'value'``: a quote escaped, and the backslashes before a quote or the end doubled (the
    only places Hydra's quoted strings read an escape)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def interpreter() -> str:
    """The Python that runs this process, as the user can type it from the working directory."""
    python = Path(sys.executable)
    try:
        return str(python.relative_to(Path.cwd()))
    except ValueError:
        return str(python)


def script_path(script: str) -> str:
    """``script`` (``train.py``, ``eval.py``) as the user ran it, when this process is it."""
    ran = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return str(ran) if ran is not None and ran.name == script else script


def command(script: str, overrides: Sequence[str]) -> str:
    """``<python> <script> <overrides>``, each override quoted for the shell."""
    return " ".join([interpreter(), script_path(script), *map(shlex.quote, overrides)])
