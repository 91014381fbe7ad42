"""SLAs, automation and retention in one place: the freshness each layer promises, when each layer runs by
itself, and how long each keeps its days. Per-asset exceptions go in FRESHNESS_OVERRIDES and RETENTION_OVERRIDES;
everything else takes its layer's default."""

from datetime import timedelta

import dagster as dg

from lakehouse import settings

AC = dg.AutomationCondition

# Bronze within 1 hour of the source data, Silver within 2, Gold within 4; warn a quarter earlier.
FRESHNESS = {
    "bronze": dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=1), warn_window=timedelta(minutes=45)),
    "silver": dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90)),
    "gold": dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=4), warn_window=timedelta(hours=3)),
    # Gold served on (Snowflake, the Postgres serving store): within an hour of Gold.
    "publish": dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=5), warn_window=timedelta(hours=4)),
    "serve": dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=5), warn_window=timedelta(hours=4)),
}
FRESHNESS_OVERRIDES: dict[str, dg.FreshnessPolicy] = {}

# Those policies judge an asset by its last update, whatever the partition: backfilling an old day makes it
# look fresh. So each day is also due on its own, this long after it ends (UTC): Bronze by 01:00 (batch files
# land just after midnight, streaming Bronze has filled the day by then), Silver by 02:00 (when the nightly
# Gold run starts, which reads it), Gold by 04:00 (two hours for that run): each layer's fail window above.
# A missing day is wrong figures for that day downstream, so a late one is an ERROR (it blocks nothing).
PARTITION_DEADLINES = {"bronze": timedelta(hours=1), "silver": timedelta(hours=2), "gold": timedelta(hours=4)}
PARTITION_FRESHNESS_SEVERITY = dg.AssetCheckSeverity.ERROR

# A sensor whose ticks fail this many times in a row raises one alert per streak (sensors/alerts.py).
SENSOR_FAILURE_STREAK = 3

# A partition of the last 7 days whose dependencies are all there, not running, and have passed their
# blocking checks for it (bad data does not flow on), and which is not running itself. A check run over a
# partition range records one result for the range, not per partition: a range backfill should take
# its downstream assets along in the same run, where blocking checks gate them directly.
RECENT_AND_READY = (
    AC.in_latest_time_window(timedelta(days=7))
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
    & AC.all_deps_blocking_checks_passed()
)

# An upstream update is pending until this asset is next requested after it, by the times of both. eager()'s
# since_last_handled() compares ticks, and clears it when the asset is next updated too: an upstream update
# seen by the same tick as a later update of the asset counted as handled, and so did one that landed while
# the asset's run was already reading (its update came later). Either would wait for the next upstream update
# (in a stream that goes quiet, for good; a late correction, until the day changes again). A run that fails is
# not requested again until the upstream updates, as with eager(). The cost: a run by hand that already read
# the update (a backfill of both) is followed by one more, which finds nothing new. Dagster compares the times
# only in a `since` over single timed operands (a | or & of them drops the times).
UPSTREAM_UPDATED = AC.any_deps_match(AC.newly_updated())
UPSTREAM_UPDATED_SINCE_REQUESTED = UPSTREAM_UPDATED.since(AC.newly_requested()).with_label(
    "upstream updated since this asset's last request"
)

# eager() looks only at the latest day; batch files land a day late and get corrected, so Silver
# follows any of the last 7 days' upstream updates.
FOLLOWS_UPSTREAM = (
    (UPSTREAM_UPDATED_SINCE_REQUESTED | AC.newly_missing().since_last_handled()) & RECENT_AND_READY
).with_label("follows upstream (last 7 days)")

# Streaming Silver takes every event Bronze landed since its last run, whichever day: eager()'s window (today's
# partition), each time Bronze updates after Silver's last request and last update. The second clause spares
# the clickstream worker's runs (Bronze and Silver in each) a Silver run after every batch, which would race
# the worker's. It is sound because the asset shares its Bronze table's pool: a Silver step never overlaps a
# Bronze batch, so a Silver update later than a batch has read it.
FOLLOWS_STREAM = (
    AC.in_latest_time_window()
    & UPSTREAM_UPDATED_SINCE_REQUESTED
    & UPSTREAM_UPDATED.since(AC.newly_updated())
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("follows the stream (today)")

# Gold rebuilds at 02:00 UTC each of the last 7 days whose Silver inputs changed since it was last requested:
# yesterday, complete by then, and any late correction. `on_cron` would look only at the latest partition,
# today's, two hours old (daily partitions end a day ahead for streaming), and never go back to yesterday.
NIGHTLY = (
    AC.cron_tick_passed("0 2 * * *", "UTC").since_last_handled()
    & (AC.missing() | UPSTREAM_UPDATED_SINCE_REQUESTED)
    & RECENT_AND_READY
).with_label("nightly at 02:00 UTC (last 7 days)")

AUTOMATION = {"silver": FOLLOWS_UPSTREAM, "gold": NIGHTLY}
# Publishing and serving follow Gold as Silver follows Bronze, where their targets are configured
# (settings.configured_targets): on a laptop with neither, automation would only queue runs that fail.
TARGETS = settings.configured_targets()
if "snowflake" in TARGETS:
    AUTOMATION["publish"] = FOLLOWS_UPSTREAM
if "serving" in TARGETS:
    AUTOMATION["serve"] = FOLLOWS_UPSTREAM


def automation_sensor(streaming: dg.AssetSelection) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the conditions above for every asset outside `streaming` (which has its own, faster
    sensor). On by default: Dagster's implicit automation sensor starts stopped."""
    return dg.AutomationConditionSensorDefinition(
        "automation",
        target=dg.AssetSelection.all() - streaming,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Silver follows Bronze, Gold rebuilds nightly, publish/serve follow Gold where configured.",
    )


# Who answers for each layer's tables: the platform team for ingestion and conformance, analytics for the
# marts and where they are served.
OWNERS = {
    "bronze": ["team:data-platform"],
    "silver": ["team:data-platform"],
    "gold": ["team:analytics"],
    "publish": ["team:analytics"],
    "serve": ["team:analytics"],
}


# How long a table keeps a day of its window column before the `retention` job (defs/retention.py) deletes it;
# None keeps it forever. Bronze is the raw copy of what the sources sent, personal data included: 400 days
# (13 months) let a fixed rule be replayed over a full year plus the weeks late corrections take, then the raw
# copy goes (data minimisation). Silver is the conformed history Gold is built from: 3 years, for
# year-over-year figures. A quarantine row is a Bronze row with the rule it broke, only worth keeping while its
# Bronze row can be run again: it goes with Bronze. Gold keeps its days: the daily marts are small aggregates
# without personal data, and a full-rebuild mart has no window, so no days to expire.
RETENTION: dict[str, timedelta | None] = {
    "bronze": timedelta(days=400),
    "silver": timedelta(days=3 * 365),
    "quarantine": timedelta(days=400),
    "gold": None,
}
RETENTION_OVERRIDES: dict[str, timedelta | None] = {
    # customer_360's lifetime value and the RFM and churn lifetime features read every order ever placed.
    "silver/orders": None,
    # One row per customer per day, the largest mart: two years of daily features is what churn models train on.
    "gold/churn_features": timedelta(days=730),
}


def retention(path: str) -> timedelta | None:
    """How long `layer/table` keeps a day: its override, else its layer's period (quarantine tables have theirs)."""
    if path in RETENTION_OVERRIDES:
        return RETENTION_OVERRIDES[path]
    layer, name = path.split("/", 1)
    kind = "quarantine" if name.endswith("_quarantine") else layer
    if kind not in RETENTION:
        raise KeyError(
            f"{path}: no retention period for {kind!r}; add one to policies.RETENTION or RETENTION_OVERRIDES "
            "(None keeps the table forever)"
        )
    return RETENTION[kind]


def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The layer's freshness policy, automation condition and owners, unless the asset set its own."""
    layer = spec.key.path[0]
    if not spec.owners and layer in OWNERS:
        spec = spec.replace_attributes(owners=OWNERS[layer])
    policy = FRESHNESS_OVERRIDES.get(spec.key.to_user_string(), FRESHNESS.get(layer))
    if policy:
        spec = dg.apply_freshness_policy(spec, policy, overwrite_existing=False)
    if spec.automation_condition is None and layer in AUTOMATION:
        spec = spec.replace_attributes(automation_condition=AUTOMATION[layer])
    return spec
