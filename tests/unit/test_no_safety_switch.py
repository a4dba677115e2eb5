"""No setting, variable or flag of the product turns a safety rule off: the controller reads no
test-only variable. The soak's broken reconcilers are test doubles in tests/soak/broken.py.

Two checks over reel_reconciler/: the text `REEL_TEST_` appears in no file at all, and no
environment read (`os.environ[...]`, `os.environ.get`, `os.getenv`, ...) names a variable
starting with `REEL_TEST`, even one spelled in pieces. Both must find each way a switch was
once, or could be, written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARK = b"REEL_TEST_"
READS = {"get", "pop", "setdefault", "getenv", "getenvb", "__getitem__", "__contains__"}


def _folded(node: ast.expr) -> str | None:
    """The string an expression always evaluates to, if it is made of literals only."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value if isinstance(node.value, str) else node.value.decode(errors="replace")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _folded(node.left), _folded(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.FormattedValue) and node.format_spec is None:
        return _folded(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = [_folded(value) for value in node.values]
        return None if None in parts else "".join(part or "" for part in parts)
    return None


def _is_environ(node: ast.expr) -> bool:
    """`os.environ`, `environ` (imported by name), or their bytes twins."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name in ("environ", "environb")


def _reads_env(func: ast.expr) -> bool:
    """`os.environ.get`, `environ.pop`, `os.getenv`, `getenv` (imported by name), ..."""
    if isinstance(func, ast.Attribute):
        return func.attr in READS and (_is_environ(func.value) or func.attr.startswith("getenv"))
    return isinstance(func, ast.Name) and func.id in ("getenv", "getenvb")


def env_reads(source: str) -> list[str]:
    """The literal names of every environment variable `source` reads."""
    names = []
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Call) and node.args and _reads_env(node.func):
            key = node.args[0]
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = node.left
        folded = _folded(key) if key is not None else None
        if folded is not None:
            names.append(folded)
    return names


def test_no_file_of_the_controller_names_a_test_only_variable() -> None:
    found = [str(path.relative_to(REPO)) for path in sorted((REPO / "reel_reconciler").rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts
             and MARK in path.read_bytes().upper()]
    assert found == []


def test_the_controller_reads_no_test_only_variable() -> None:
    found = [(str(path.relative_to(REPO)), name)
             for path in sorted((REPO / "reel_reconciler").rglob("*.py"))
             for name in env_reads(path.read_text())
             if name.upper().startswith("REEL_TEST")]
    assert found == []


@pytest.mark.parametrize("source", [
    'import os\nos.environ.get("REEL_TEST_NO_HANDS_OFF")\n',
    'import os\nos.environ["REEL_" + "TEST_X"]\n',
    "import os\nos.getenv(f'REEL_{\"TEST\"}_X', '0')\n",
    'from os import environ\nif "REEL_TEST_X" in environ: pass\n',
    'from os import environ, getenv\ngetenv("REEL_TESTING")\n',
])
def test_the_check_finds_a_test_only_read(source: str) -> None:
    assert any(name.upper().startswith("REEL_TEST") for name in env_reads(source))


def test_the_check_lets_ordinary_reads_through() -> None:
    source = 'import os\nos.environ.get("REEL_BUCKET")\nos.getenv("HOME")\n'
    assert env_reads(source) == ["REEL_BUCKET", "HOME"]
