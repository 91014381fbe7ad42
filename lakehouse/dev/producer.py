"""Publish the generator's streaming sources to Kafka, at a steady rate.

The messages are exactly the lines of the batch generator's landing files for the same
(start, days, scale, seed): JSON records keyed by user id (clickstream) or ticket id (CDC), with
the same duplicates, late events, malformed records (cut-off JSON, no key) and unknown fields. So
the generator's manifest gives the exact counts that must reach Bronze and Silver.

    lakehouse produce --topic clickstream --events 100000 --rate 5000
"""

import json
import random
import time
from collections.abc import Iterator
from datetime import date, timedelta

from lakehouse.dev.generator import (
    SOURCES,
    World,
    clickstream_day,
    crm_day,
    tickets_day,
)

STREAM_SOURCES = ("clickstream", "support_tickets_cdc")
KEY_FIELD = {"clickstream": "user_id", "support_tickets_cdc": "ticket_id"}


def stream_days(start: date, days: int | None, scale: float = 1.0, seed: int = 42) -> Iterator[tuple[date, dict]]:
    """The streaming sources' content per day, as `generate()` computes it (None days: without end).

    Only the sources that feed the streaming ones are computed: CRM (the customers clicking and
    raising tickets), clickstream and tickets each draw from their own seeded random stream, so the
    lines are the same bytes as the landing files."""
    world = World()
    rngs = {source: random.Random(f"{seed}:{source}") for source in SOURCES}
    index = 0
    while days is None or index < days:
        day = start + timedelta(days=index)
        crm_day(rngs["crm_customers"], world, day, index, scale)
        last = days is not None and index == days - 1
        yield (
            day,
            {
                "clickstream": clickstream_day(rngs["clickstream"], world, day, scale, last_day=last),
                "support_tickets_cdc": tickets_day(rngs["support_tickets_cdc"], world, day, scale, last_day=last),
            },
        )
        index += 1


def message_key(source: str, line: str) -> str | None:
    """The record's user / ticket id; None for a malformed line (it goes to any partition)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a poison message nested too deep
        return None
    return record.get(KEY_FIELD[source]) if isinstance(record, dict) else None


def messages(
    source: str, start: date, days: int | None = None, scale: float = 1.0, seed: int = 42
) -> Iterator[tuple[str | None, str]]:
    """(key, JSON line) for every record of `source`, day after day."""
    if source not in STREAM_SOURCES:
        raise ValueError(f"topic must be one of {STREAM_SOURCES}, got {source!r}")
    for _, content in stream_days(start, days, scale, seed):
        for line in content[source].lines:
            yield message_key(source, line), line


def publish(
    producer,
    topic: str,
    stream: Iterator[tuple[str | None, str]],
    events: int | None = None,
    rate: float = 0.0,
    on_sent=None,
) -> dict:
    """Produce `events` messages (all of `stream` when None) at `rate` per second (0: as fast as possible).

    Waits until the broker has acknowledged every message; raises if any delivery failed."""
    failures: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    sent, started = 0, time.monotonic()
    for key, value in stream:
        if events is not None and sent >= events:
            break
        if rate > 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, value=value.encode(), key=key.encode() if key else None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
        producer.poll(0)
        sent += 1
        if on_sent:
            on_sent(sent)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{topic}: {remaining} message(s) not delivered, {len(failures)} failed: {failures[:3]}")
    if events is not None and sent < events:
        raise RuntimeError(f"{topic}: the generator ran out after {sent} of {events} events")
    seconds = time.monotonic() - started
    return {
        "topic": topic,
        "events": sent,
        "seconds": round(seconds, 3),
        "events_per_second": round(sent / seconds, 1) if seconds else None,
    }
