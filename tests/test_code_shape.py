"""Files under 500 lines and functions that fit on a screen (80 lines), checked on the syntax tree.

The house style asks for both; this test keeps them from creeping back. A function is measured
from its ``def`` (decorators excluded) to its last line, docstring and comments included, because
that is what a reader scrolls through; nested functions and methods count on their own. The
second test feeds the check a file that breaks each limit, so a check that has stopped finding
anything fails the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def oversized(root: Path) -> list[str]:
    """``path: what`` for every module and function under ``root`` over its limit."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            found.append(f"{rel}: {n_lines} lines (module limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(
                        f"{rel}:{node.lineno} {node.name}: {length} lines "
                        f"(function limit {MAX_FUNCTION_LINES})"
                    )
    return found


def test_functions_and_modules_fit_their_limits() -> None:
    assert (SRC / "gated_symile").is_dir()
    assert oversized(SRC) == []


def test_the_check_finds_a_long_function_and_a_long_module(tmp_path: Path) -> None:
    method_body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))  # 81 lines
    (tmp_path / "long_function.py").write_text(
        f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{method_body}"
    )
    (tmp_path / "long_module.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    # exactly at both limits (an 80-line function in a 500-line module): allowed
    fits = "def fits():\n" + "".join(f"    y{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    (tmp_path / "at_the_limits.py").write_text(fits + "z = 1\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES))
    assert oversized(tmp_path) == [
        f"long_function.py:6 long: 81 lines (function limit {MAX_FUNCTION_LINES})",
        f"long_module.py: 501 lines (module limit {MAX_MODULE_LINES})",
    ]
