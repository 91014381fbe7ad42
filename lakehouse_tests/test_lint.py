"""Linting that needs no engine: the Python passes ruff (lint and format, pyproject's [tool.ruff]) and the dbt
project's SQL passes sqlfluff with the repository's .sqlfluff. pre-commit runs the same three hooks."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing_to_lint():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}\n{result.stderr}"


def test_the_python_is_formatted_by_ruff():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, f"ruff format --check failed:\n{result.stdout}\n{result.stderr}"


def test_sqlfluff_lint_dbt_models():
    paths = ["dbt_project/models", "dbt_project/tests"]
    result = run("sqlfluff", "lint", "--disable-progress-bar", *paths)
    assert result.returncode == 0, f"sqlfluff lint failed:\n{result.stdout}\n{result.stderr}"
