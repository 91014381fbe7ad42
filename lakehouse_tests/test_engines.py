"""The transforms use only the Spark Connect API, so they give the same answer on Sail and on
Apache Spark (JVM). JVM Spark runs in a process of its own: one Connect client per process."""

import json
import shutil
import subprocess
import sys

import pytest

from lakehouse_tests.engine_probe import EXPECTED, silver_orders


def test_silver_orders_transform_on_sail(spark):
    assert silver_orders(spark) == EXPECTED


@pytest.mark.skipif(shutil.which("java") is None, reason="JVM Spark needs Java 17+, and no `java` is on PATH")
def test_silver_orders_transform_on_jvm_spark_gives_the_same_answer():
    done = subprocess.run([sys.executable, "-m", "lakehouse_tests.engine_probe", "local"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == EXPECTED
