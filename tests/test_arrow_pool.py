"""The stages run on an Arrow allocator that returns freed memory (gated_symile.cli.ARROW_POOL)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
from gated_symile.cli import main
main(["splits", "mimic", "--cohort", "/nonexistent/cohort.parquet", "--out", "/nonexistent/out"])
import pyarrow
print(pyarrow.default_memory_pool().backend_name)
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "jemalloc"), ("system", "system")])
def test_stages_use_the_lean_arrow_pool_unless_the_user_chose_one(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [expected], done.stderr
