"""JVM jars from Maven Central, fetched once with the machine's Maven into a cache, used offline after.

Apache Spark with Delta Lake needs the delta-spark jars, the development Apache Kafka broker needs
Kafka's. Spark's own `--packages` resolves through Ivy, which may not see the registry the way the
machine's Maven is set up to; `mvn dependency:copy-dependencies` does. The cache is
`$LAKEHOUSE_JARS_CACHE`, else `~/.cache/lakehouse/jars`: one folder per bundle and version, made
complete in a temporary folder and renamed into place, so a half-fetched bundle is never used.
Pre-fetch with `lakehouse jars` (e.g. in an image build).
"""

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from lakehouse import settings


@dataclass(frozen=True)
class Bundle:
    name: str
    artifacts: tuple[str, ...]  # group:artifact:version
    transitive: bool  # False: exactly these jars (the rest is on the engine's classpath already)

    @property
    def folder(self) -> Path:
        digest = hashlib.sha1(repr(self).encode()).hexdigest()[:10]
        return settings.jars_cache() / f"{self.name}-{digest}"


# The Delta jars follow the delta-spark Python package, which is pinned with pyspark.
DELTA = Bundle(
    "delta",
    tuple(f"io.delta:{a}:{version('delta-spark')}" for a in ("delta-spark_2.13", "delta-storage")),
    transitive=False,
)
KAFKA = Bundle(
    "kafka", ("org.apache.kafka:kafka_2.13:4.4.0", "org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"), transitive=True
)
# s3:// (and s3a://) lakes on Apache Spark: Hadoop's S3A file system for the Hadoop that pyspark ships, and
# the AWS SDK it was built with (a 640 MB jar: fetched only where a Spark service needs S3).
S3 = Bundle("s3", ("org.apache.hadoop:hadoop-aws:3.4.2", "software.amazon.awssdk:bundle:2.29.52"), transitive=False)
BUNDLES = {b.name: b for b in (DELTA, KAFKA, S3)}


class JarFetchError(RuntimeError):
    pass


def pom(bundle: Bundle) -> str:
    dependencies = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in (coordinate.split(":") for coordinate in bundle.artifacts)
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>lakehouse</groupId><artifactId>{bundle.name}-jars</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>"
    )


def jars(bundle: Bundle) -> list[Path]:
    """The bundle's jars, fetched with Maven on first use."""
    folder = bundle.folder
    if not folder.is_dir():
        fetch(bundle)
    return sorted(folder.glob("*.jar"))


def fetch(bundle: Bundle) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError(
            f"the {bundle.name} jars are not in {bundle.folder} and Maven is not installed to fetch "
            "them: install it (apt-get install maven) or copy a cache made by `lakehouse jars`"
        )
    bundle.folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bundle.folder.parent, prefix=f".{bundle.name}-") as work:
        (Path(work) / "pom.xml").write_text(pom(bundle))
        args = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(Path(work) / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={work}/jars",
            "-DincludeScope=runtime",
            f"-DexcludeTransitive={not bundle.transitive}",
        ]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise JarFetchError(
                f"mvn could not fetch {', '.join(bundle.artifacts)}:\n{(done.stdout + done.stderr)[-3000:]}"
            )
        try:
            (Path(work) / "jars").rename(bundle.folder)
        except OSError:
            if not bundle.folder.is_dir():  # another process finished first: use theirs
                raise
