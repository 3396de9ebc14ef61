"""docs/private-apis.md lists every private name of another library the lab uses: each listed name
is used where the table says, each guard test exists, and no private import goes unlisted."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "private-apis.md"
ROW = re.compile(r"^\| (\w+) \| `([^`]+)` \| `([^`]+)` \| [^|]+ \| `([^`]+)` \|$")


def rows() -> list[tuple[str, str, str, str]]:
    found = [ROW.match(line) for line in TABLE.read_text().splitlines()]
    return [m.groups() for m in found if m]


def test_the_table_lists_uses():
    assert len(rows()) >= 1


def test_each_listed_name_is_used_where_the_table_says():
    for _, name, where, _ in rows():
        attribute = name.rsplit(".", 1)[-1]
        assert attribute in (ROOT / where).read_text(), f"{name} is no longer used in {where}"


def test_each_guard_test_exists():
    for _, _, _, guard in rows():
        file, function = guard.split("::")
        tree = ast.parse((ROOT / file).read_text())
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert function in names, f"{guard} does not exist"


def test_no_private_import_of_another_library_is_unlisted():
    listed = {name for _, name, _, _ in rows()}
    for path in (ROOT / "ae_lab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] in ("ae_lab", "__future__"):
                    continue
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    full = {f"{node.module}.{a.name}" for a in node.names}
                    assert full & listed, f"{path.relative_to(ROOT)} imports {full}: list it"
