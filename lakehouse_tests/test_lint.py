"""Linting that needs no engine: the dbt project's SQL passes sqlfluff with the repository's .sqlfluff."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sqlfluff_lint_dbt_models():
    paths = ["dbt_project/models", "dbt_project/tests"]
    result = subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "--disable-progress-bar", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"sqlfluff lint failed:\n{result.stdout}\n{result.stderr}"
