"""OpenLineage run events for Dagster runs, built with openlineage-python (the official client) from what the
Dagster instance recorded about a run: one event per run status change (started, succeeded, failed, canceled),
with the tables the run writes as outputs, the tables they are built from as inputs, and their facets.

A run's job is its Dagster job (in the configured namespace) and its run id the Dagster run id (already a
UUID). A lake table is the dataset `<layer>/<table>` in the namespace of the lake root (`file:///...` or
`s3://bucket/prefix`); another asset (publish/*, serve/*) is its asset key in the job namespace."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    schema_dataset,
)
from openlineage.client.transport import Transport, get_default_factory

PRODUCER = "urn:lakehouse:openlineage_events"
LAKE_LAYERS = ("bronze", "silver", "gold")
STATES = {
    dg.DagsterEventType.RUN_START: RunState.START,
    dg.DagsterEventType.RUN_SUCCESS: RunState.COMPLETE,
    dg.DagsterEventType.RUN_FAILURE: RunState.FAIL,
    dg.DagsterEventType.RUN_CANCELED: RunState.ABORT,
}
RUN_FACTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.STEP_FAILURE,
}


def transport(config: Mapping) -> Transport:
    """The openlineage-python transport a config names (http, file, kafka, composite, ...)."""
    return get_default_factory().create(dict(config))  # the factory pops keys from the dict it is given


class Naming:
    """Dataset names: lake tables under the lake root's namespace, other assets under the job namespace."""

    def __init__(self, namespace: str, lake_root: str):
        self.namespace = namespace
        self.lake = lake_root.rstrip("/") if "://" in lake_root else Path(lake_root).absolute().as_uri()

    def __call__(self, key: dg.AssetKey) -> tuple[str, str]:
        if len(key.path) == 2 and key.path[0] in LAKE_LAYERS:
            return self.lake, "/".join(key.path)
        return self.namespace, key.to_user_string()


def run_event(record: dg.EventLogRecord, instance: dg.DagsterInstance, graph, naming: Naming) -> RunEvent:
    """The OpenLineage event of one run status record (RUN_START, RUN_SUCCESS, RUN_FAILURE, RUN_CANCELED)."""
    entry = record.event_log_entry
    state = STATES[entry.dagster_event.event_type]
    facts = defaultdict(list)
    for fact in instance.get_records_for_run(entry.run_id, of_type=RUN_FACTS).records:
        facts[fact.event_log_entry.dagster_event.event_type].append(fact.event_log_entry.dagster_event)

    def data(event_type: dg.DagsterEventType) -> list:
        return [event.event_specific_data for event in facts[event_type]]

    planned = [p.asset_key for p in data(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)]
    done = state != RunState.START  # a START event tells what the run is to do, not what it did
    written = materialisation_metadata(data(dg.DagsterEventType.ASSET_MATERIALIZATION)) if done else {}
    assertions = assertions_by_asset(data(dg.DagsterEventType.ASSET_CHECK_EVALUATION) if done else [])
    inputs, outputs = datasets(sorted({*planned, *written}, key=lambda k: k.path), written, assertions, graph, naming)

    run_facets = {}
    if state == RunState.FAIL:
        run_facets["errorMessage"] = error_facet(entry, facts[dg.DagsterEventType.STEP_FAILURE])
    return RunEvent(
        eventType=state,
        eventTime=datetime.fromtimestamp(entry.timestamp, UTC).isoformat(),
        producer=PRODUCER,
        run=Run(runId=entry.run_id, facets=run_facets),
        job=Job(
            namespace=naming.namespace,
            name=entry.job_name,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DAGSTER", jobType="JOB", producer=PRODUCER
                )
            },
        ),
        inputs=inputs,
        outputs=outputs,
    )


def datasets(targets: list[dg.AssetKey], written: Mapping, assertions: Mapping, graph, naming: Naming):
    """The run's input and output datasets. Outputs: the assets it targets, with the facets of their metadata
    (their definition's, overridden by their materialisation's) and check results. Inputs: what it reads from
    outside itself, the targets' parents and the tables it only checks (where the spec puts check results:
    an input's dataQualityAssertions facet)."""
    outputs = []
    for key in targets:
        metadata = {**(graph.get(key).metadata if graph.has(key) else {}), **written.get(key, {})}
        facets = dataset_facets(metadata, naming)
        if key in assertions:
            facets["dataQualityAssertions"] = assertions[key]
        outputs.append(OutputDataset(*naming(key), facets=facets))
    parents = {p for key in targets if graph.has(key) for p in graph.get(key).parent_keys}
    read = sorted((parents | set(assertions)) - set(targets), key=lambda k: k.path)
    inputs = [
        InputDataset(*naming(key), inputFacets={"dataQualityAssertions": assertions[key]} if key in assertions else {})
        for key in read
    ]
    return inputs, outputs


def materialisation_metadata(events: Iterable) -> dict[dg.AssetKey, dict]:
    """The metadata of each asset's last materialisation in the run (a range run has one per partition)."""
    return {e.materialization.asset_key: e.materialization.metadata for e in events}


def dataset_facets(metadata: Mapping, naming: Naming) -> dict:
    """The schema facet from `dagster/column_schema`, the column-lineage facet from `dagster/column_lineage`."""
    facets = {}
    schema, lineage = (unwrap(metadata.get(name)) for name in ("dagster/column_schema", "dagster/column_lineage"))
    if schema is not None:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type, description=c.description)
                for c in schema.columns
            ],
            producer=PRODUCER,
        )
    if lineage is not None:
        facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={
                column: column_lineage_dataset.Fields(
                    inputFields=[
                        column_lineage_dataset.InputField(*naming(dep.asset_key), field=dep.column_name) for dep in deps
                    ]
                )
                for column, deps in lineage.deps_by_column.items()
            },
            producer=PRODUCER,
        )
    return facets


def unwrap(value):
    """A metadata entry's value: definitions hold the TableSchema itself, materialisations a MetadataValue."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def assertions_by_asset(evaluations: Iterable[dg.AssetCheckEvaluation]) -> dict[dg.AssetKey, object]:
    """The run's check evaluations as a dataQualityAssertions facet per checked asset (a check evaluated
    more than once in the run counts with its last result)."""
    last = {(e.asset_key, e.check_name): e for e in evaluations}
    by_asset = defaultdict(list)
    for (key, name), evaluation in sorted(last.items(), key=lambda item: (item[0][0].path, item[0][1])):
        by_asset[key].append(
            data_quality_assertions_dataset.Assertion(
                assertion=name, success=evaluation.passed, severity=evaluation.severity.value.lower()
            )
        )
    return {
        key: data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=found, producer=PRODUCER)
        for key, found in by_asset.items()
    }


def error_facet(entry: dg.EventLogEntry, step_failures: list[dg.DagsterEvent]):
    """The first failed step's error (message and stack trace), else the run failure's own message."""
    error = step_failures[0].event_specific_data.error if step_failures else None
    if error is not None:
        cause = error
        while cause.cause is not None:  # Dagster wraps the user's exception: report what was raised
            cause = cause.cause
        message = f"{step_failures[0].step_key}: {cause.message.strip()}"
        return error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="python", stackTrace=error.to_string(), producer=PRODUCER
        )
    message = entry.dagster_event.message or "run failed"
    return error_message_run.ErrorMessageRunFacet(message=message, programmingLanguage="python", producer=PRODUCER)
