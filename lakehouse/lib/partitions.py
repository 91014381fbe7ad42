"""Daily (UTC) partitions shared by every asset, and the window a run covers."""

from datetime import date

import dagster as dg

# end_offset=1 makes today's partition available, so streaming Bronze can ingest into it.
daily = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)

# A backfill of any range is one run: one Spark job over the whole window, not one per day.
single_run = dg.BackfillPolicy.single_run()


def window(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's partition window as [start, end) dates."""
    tw = context.partition_time_window
    return tw.start.date(), tw.end.date()
