"""Read landing files into Bronze rows: every source column as a string (types are untrusted
here), unknown columns kept as JSON in `_rescued_data`, and the file each row came from.
Nothing is dropped: a line that is not even a JSON object keeps its raw text in `_rescued_data`."""

from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.sources.generator import FILE_EXT, landing_file


class MissingLandingFiles(Exception):
    pass


def days_in(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def read_landing(
    spark: SparkSession, landing_dir: Path, source: str, columns: list[str], start: date, end: date
) -> DataFrame:
    """All landing files of `source` for the days in [start, end), as raw Bronze rows: the contract's
    `columns` as strings, anything else (schema drift) rescued."""
    files = {day: landing_file(landing_dir, source, day) for day in days_in(start, end)}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise MissingLandingFiles(f"bronze.{source}: no landing file for {len(missing)} day(s): {', '.join(missing)}")
    reader = read_json_lines if FILE_EXT[source] == "jsonl" else read_csv
    frames = [
        reader(spark, str(path), columns)
        .withColumn("_source_file", F.lit(str(path)))
        .withColumn("_partition_date", F.lit(day.isoformat()).cast("date"))
        for day, path in files.items()
    ]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def read_csv(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    raw = spark.read.option("header", True).option("inferSchema", False).csv(path)
    unknown = [c for c in raw.columns if c not in columns]
    known = [F.col(c) if c in raw.columns else F.lit(None).cast("string").alias(c) for c in columns]
    if unknown:
        present = F.greatest(*[F.col(c).isNotNull() for c in unknown]) if len(unknown) > 1 else F.col(unknown[0]).isNotNull()
        rescued = F.when(present, F.to_json(F.struct(*unknown)))
    else:
        rescued = F.lit(None).cast("string")
    return raw.select(*known, rescued.alias("_rescued_data"))


def read_json_lines(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    lines = spark.read.text(path)
    parsed = lines.select(F.from_json("value", "map<string,string>").alias("m"), "value")
    extra = F.map_filter("m", lambda k, v: ~k.isin(*columns))
    rescued = F.when(F.col("m").isNull(), F.col("value")).when(F.size(extra) > 0, F.to_json(extra))
    return parsed.select(*[F.col("m")[c].alias(c) for c in columns], rescued.alias("_rescued_data"))
