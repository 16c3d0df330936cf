"""benchmarks/gpu_stages.py runs on a lent GPU machine that has torch and transformers but
none of the stack's own dependencies (SQLAlchemy, pymilvus, pydantic-settings...)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.unit
def test_the_gpu_commands_import_without_the_stack() -> None:
    code = (
        "import sys, benchmarks.gpu_stages\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'retrieval', 'sqlalchemy',"
        " 'pymilvus', 'pydantic_settings'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
