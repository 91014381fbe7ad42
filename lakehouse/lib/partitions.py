"""Daily (UTC) partitions shared by every asset, and the window a run covers."""

from datetime import date, timedelta

import dagster as dg

# end_offset=1 makes today's partition available, so streaming Bronze can ingest into it.
daily = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)

# A backfill of any range is one run: one Spark job over the whole window, not one per day.
single_run = dg.BackfillPolicy.single_run()


def check_window(context: dg.AssetCheckExecutionContext) -> tuple[date, date]:
    """A check run's partition range as [start, end) dates."""
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), date.fromisoformat(keys.end) + timedelta(days=1)


def window(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's partition window as [start, end) dates."""
    tw = context.partition_time_window
    return tw.start.date(), tw.end.date()
