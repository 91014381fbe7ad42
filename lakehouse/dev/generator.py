"""A deterministic generator for the five sources, with a known number of bad records.

`generate(landing_dir, start, days, scale, seed)` writes one landing file per source and day
(`<landing>/<source>/<YYYY-MM-DD>.<ext>`) and returns a manifest of per-day record counts and of
every injected anomaly, so tests and the demo can check the lake against exact figures. Same
arguments, same bytes. Each anomaly record carries exactly one defect, so each maps to one rule.
"""

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from lakehouse import catalog
from lakehouse.lib.contracts.accepted import (
    CATEGORIES,
    CURRENCIES,
    PRIORITIES,
    TICKET_STATUSES,
)

# The batch sources land as their catalog declaration says; the streaming ones are also written as files
# (one JSON line per event), which `lakehouse produce` publishes to Kafka.
FILE_EXT = {**{t.name: t.landing for t in catalog.landed()}, "clickstream": "jsonl", "support_tickets_cdc": "jsonl"}
SOURCES = tuple(FILE_EXT)

ORDER_COLUMNS = [
    "order_id",
    "customer_id",
    "order_ts",
    "product_id",
    "category",
    "quantity",
    "amount",
    "currency",
    "status",
    "updated_at",
]
# Columns the sources started sending without telling anyone: schema drift the lake must rescue.
DRIFT_COLUMNS = {
    "crm_customers": "loyalty_tier",
    "orders": "coupon_code",
    "clickstream": "experiment",
    "support_tickets_cdc": "sla_tier",
}

# Volumes per day at scale 1.
BASE_CUSTOMERS = 2000  # the first day's export is the full customer base
NEW_CUSTOMERS, CUSTOMER_UPDATES = 100, 150
ORDERS = 3000
SESSIONS = 1500
TICKET_CREATES = 120
# Share of records per anomaly (at least one of each per day, so small runs still exercise every rule).
ANOMALY_SHARE = 0.01

RATES_TO_USD = dict(zip(CURRENCIES, (1.0, 1.08, 1.27, 0.0067, 0.73, 0.65, 1.12, 0.094), strict=True))
COUNTRIES = {
    "US": "USD",
    "DE": "EUR",
    "FR": "EUR",
    "GB": "GBP",
    "JP": "JPY",
    "CA": "CAD",
    "AU": "AUD",
    "CH": "CHF",
    "SE": "SEK",
}
PRODUCTS = {f"P{i:04d}": (CATEGORIES[i % len(CATEGORIES)], round(5 + (i * 7.31) % 195, 2)) for i in range(1, 201)}
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Dennis",
    "Margaret",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Niklaus",
    "Sophie",
    "Tim",
    "Katherine",
    "Donald",
    "Hedy",
    "John",
    "Mary",
    "Guido",
]
LAST_NAMES = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Ritchie",
    "Hamilton",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Wirth",
    "Wilson",
    "Berners-Lee",
    "Johnson",
    "Knuth",
    "Lamarr",
    "McCarthy",
    "Keller",
    "van Rossum",
]
DOMAINS = ["example.com", "mail.test", "inbox.example", "corp.test"]
PAGES = ["/", "/search", "/cart", "/checkout", "/account", "/help"]


# Constant sequences for rng.choice (same draws as choosing from a fresh list; no list built per call).
PRODUCT_IDS = list(PRODUCTS)
COUNTRY_CODES = list(COUNTRIES)
# One encoder for every JSON line: json.dumps with non-default separators builds a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"))


def landing_file(landing_dir: Path, source: str, day: date) -> Path:
    return Path(landing_dir) / source / f"{day.isoformat()}.{FILE_EXT[source]}"


def iso(ts: datetime) -> str:
    if ts.year < 1000:  # strftime's own rendering of short years
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{ts.year}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}Z"


def iso_at(day: date, seconds: float) -> str:
    """iso(at(day, seconds)) without building a datetime (the generator's hot path)."""
    s = int(seconds)
    if 0 <= s < 86400:
        return f"{day.isoformat()}T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}Z"
    return iso(at(day, seconds))


def at(day: date, seconds: float) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC) + timedelta(seconds=int(seconds))


def anomaly_count(clean_records: int) -> int:
    """How many records of one anomaly kind a day gets."""
    return max(1, round(clean_records * ANOMALY_SHARE))


@dataclass
class Day:
    """One source's landing file for one day: its lines and what was injected into them."""

    lines: list[str] = field(default_factory=list)
    header: str | None = None  # a CSV file's header line, not a record
    anomalies: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict:
        return {"records": len(self.lines), "anomalies": self.anomalies, **self.expected}


@dataclass
class World:
    """What the sources have said so far: customers (id -> created at) and open tickets."""

    customers: dict[str, datetime] = field(default_factory=dict)
    versions: set[tuple[str, str]] = field(default_factory=set)
    tickets: dict[str, dict] = field(default_factory=dict)
    held_back_events: list[dict] = field(default_factory=list)
    held_back_changes: list[dict] = field(default_factory=list)
    placed_orders: dict[date, list[dict]] = field(default_factory=dict)  # clean orders, by order date


def json_lines(records: list[dict]) -> list[str]:
    return [_JSON.encode(r) for r in records]


def inject_drift(rng: random.Random, records: list[dict], source: str, count: int, value) -> set[int]:
    """Add the drift column to `count` records; returns their positions."""
    chosen = set(rng.sample(range(len(records)), min(count, len(records))))
    for i in chosen:
        records[i][DRIFT_COLUMNS[source]] = value(i)
    return chosen


def duplicate(rng: random.Random, records: list[dict], count: int, exclude: set[int]) -> list[dict]:
    """Exact re-sends of `count` records not in `exclude`."""
    candidates = [i for i in range(len(records)) if i not in exclude]
    return [dict(records[i]) for i in rng.sample(candidates, min(count, len(candidates)))]


# -- CRM customers: JSON lines, a full export on the first day, then new customers and updates ----------------


def customer_profile(rng: random.Random, customer_id: str, created: datetime) -> dict:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        "customer_id": customer_id,
        "email": f"{first.lower()}.{last.lower().replace(' ', '')}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}",
        "phone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        "first_name": first,
        "last_name": last,
        "country": rng.choice(COUNTRY_CODES),
        "signup_date": created.date().isoformat(),
        "updated_at": iso(created),
    }


def customer_update(rng: random.Random, world: World, customer_id: str, ts: datetime) -> dict:
    """A new version of an existing customer: contact details or country changed at `ts`."""
    while (customer_id, iso(ts)) in world.versions:
        ts += timedelta(seconds=1)
    world.versions.add((customer_id, iso(ts)))
    record = customer_profile(rng, customer_id, world.customers[customer_id])
    record["updated_at"] = iso(ts)
    return record


def crm_day(rng: random.Random, world: World, day: date, index: int, scale: float) -> Day:
    new = round((BASE_CUSTOMERS if index == 0 else NEW_CUSTOMERS) * scale)
    existing = sorted(world.customers)
    records = []
    for _ in range(new):
        customer_id = f"C{len(world.customers) + 1:07d}"
        created = at(day, rng.uniform(0, 86399))
        world.customers[customer_id] = created
        world.versions.add((customer_id, iso(created)))
        records.append(customer_profile(rng, customer_id, created))
    if existing:
        for customer_id in rng.choices(existing, k=round(CUSTOMER_UPDATES * scale)):
            records.append(customer_update(rng, world, customer_id, at(day, rng.uniform(0, 86399))))
    clean = len(records)
    out = Day()
    # Late updates: changes made one to three days ago that reach only today's export, for customers older
    # than that (Silver puts them into history at their own time, not as the current version).
    lag = timedelta(days=rng.randint(1, min(3, max(1, index - 1))))  # customers that old exist by then
    older = [c for c, created in world.customers.items() if created.date() < day - lag]
    n = anomaly_count(clean)
    late = rng.sample(older, min(len(older), n))
    records += [customer_update(rng, world, c, at(day - lag, rng.uniform(0, 86399))) for c in late]
    out.anomalies["late_updates"] = len(late)
    drifted = inject_drift(rng, records, "crm_customers", n, lambda i: rng.choice(["gold", "silver", "bronze"]))
    out.anomalies["unknown_columns"] = len(drifted)
    dupes = duplicate(rng, records[:clean], n, drifted)
    out.anomalies["duplicates"] = len(dupes)
    nulls = [dict(customer_profile(rng, "", at(day, rng.uniform(0, 86399))), customer_id=None) for _ in range(n)]
    out.anomalies["null_keys"] = len(nulls)
    bad_ts = [
        dict(customer_profile(rng, c, world.customers[c]), updated_at="31/02/2026 25:61")
        for c in rng.choices(sorted(world.customers), k=n)
    ]
    out.anomalies["bad_timestamps"] = len(bad_ts)
    records += dupes + nulls + bad_ts
    rng.shuffle(records)
    out.lines = json_lines(records)
    return out


# -- Orders: CSV, the day's orders; a re-sent order is a status change with a later updated_at ----------------


def order_row(rng: random.Random, order_id: str, customer_id: str, ts: datetime, country: str) -> dict:
    product = rng.choice(PRODUCT_IDS)
    category, price = PRODUCTS[product]
    quantity = rng.randint(1, 5)
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "order_ts": iso(ts),
        "product_id": product,
        "category": category,
        "quantity": str(quantity),
        "amount": f"{price * quantity:.2f}",
        "currency": COUNTRIES[country],
        "status": "placed",
        "updated_at": iso(ts),
    }


LATER_STATUSES = ["shipped", "delivered", "cancelled"]


def orders_day(rng: random.Random, world: World, day: date, scale: float) -> Day:
    customers = sorted(c for c, created in world.customers.items() if created.date() <= day)
    countries = {c: rng.choice(COUNTRY_CODES) for c in customers}
    stamp = day.strftime("%Y%m%d")
    records = [
        order_row(rng, f"O{stamp}-{k:06d}", c, at(day, rng.uniform(0, 86399)), countries[c])
        for k, c in enumerate(rng.choices(customers, k=round(ORDERS * scale)))
    ]
    out, n = Day(), anomaly_count(len(records))
    drifted = inject_drift(rng, records, "orders", n, lambda i: f"SAVE{rng.randint(5, 30)}")
    dupes = duplicate(rng, records, n, drifted)
    for d in dupes:  # the later version of the order: paid an hour after it was placed
        d.update(status="paid", updated_at=iso(datetime.fromisoformat(d["order_ts"]) + timedelta(hours=1)))

    def broken(k: int, **defect) -> dict:
        c = rng.choice(customers)
        return {**order_row(rng, f"O{stamp}-X{k:05d}", c, at(day, rng.uniform(0, 86399)), countries[c]), **defect}

    bad = {
        "null_keys": [broken(k, order_id="") for k in range(n)],
        "bad_timestamps": [broken(n + k, order_ts="2026-13-45T99:00:00Z") for k in range(n)],
        "bad_amounts": [broken(2 * n + k, amount=rng.choice(["N/A", "12,50", "1O.00"])) for k in range(n)],
        "negative_amounts": [broken(3 * n + k, amount=f"-{rng.uniform(1, 99):.2f}") for k in range(n)],
        "unknown_customers": [broken(4 * n + k, customer_id=f"C9{k:06d}") for k in range(n)],
    }
    paid = {d["order_id"] for d in dupes}
    world.placed_orders[day] = [
        dict(r) for i, r in enumerate(records) if i not in drifted and r["order_id"] not in paid
    ]
    # Lifecycles: orders of the three days before move on in today's file (a later updated_at wins).
    recent = [r for d, rows in sorted(world.placed_orders.items()) if day - timedelta(days=3) <= d < day for r in rows]
    later = [
        {**r, "status": rng.choice(LATER_STATUSES), "updated_at": iso(at(day, rng.uniform(0, 86399)))}
        for r in rng.sample(recent, min(n, len(recent)))
    ]
    # Re-sent: yesterday's rows again, unchanged, in today's file (an export that overlaps the previous one).
    yesterday = world.placed_orders.get(day - timedelta(days=1), [])
    resent_rows = [dict(r) for r in rng.sample(yesterday, min(n, len(yesterday)))]
    out.anomalies = {
        "duplicates": len(dupes),
        "unknown_columns": len(drifted),
        "late_updates": len(later),
        "resent": len(resent_rows),
    }
    out.anomalies.update({kind: len(rows) for kind, rows in bad.items()})
    records += dupes + later + resent_rows + [row for rows in bad.values() for row in rows]
    rng.shuffle(records)
    out.header, out.lines = csv_lines(records, ORDER_COLUMNS + [DRIFT_COLUMNS["orders"]])
    return out


def csv_lines(records: list[dict], columns: list[str]) -> tuple[str, list[str]]:
    """The CSV header and one line per record."""
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="").writerows(records)
    return ",".join(columns), buffer.getvalue().splitlines()


# -- FX rates: CSV, one rate to USD per currency and day ------------------------------------------------------


def fx_day(rng: random.Random, day: date, rates: dict[str, float]) -> Day:
    for currency in rates:
        if currency != "USD":
            rates[currency] = round(rates[currency] * rng.uniform(0.995, 1.005), 6)
    records = [{"date": day.isoformat(), "currency": c, "rate_to_usd": f"{r:.6f}"} for c, r in rates.items()]
    dupes = duplicate(rng, records, 1, set())
    bad_rates = [{"date": day.isoformat(), "currency": rng.choice(list(rates)), "rate_to_usd": "n/a"}]
    bad_currencies = [{"date": day.isoformat(), "currency": "EURO", "rate_to_usd": "1.080000"}]
    out = Day(anomalies={"duplicates": 1, "bad_rates": 1, "bad_currencies": 1})
    out.header, out.lines = csv_lines(records + dupes + bad_rates + bad_currencies, ["date", "currency", "rate_to_usd"])
    return out


# -- Clickstream: JSON events in time order; sessions of one user are more than 30 minutes apart --------------

IDLE_GAP = 30 * 60
EVENT_KINDS = ["page_view", "add_to_cart", "purchase"]


def session_events(rng: random.Random, user: str, start: float, day: date, first_id: int) -> list[dict]:
    count = 1 if rng.random() < 0.3 else rng.randint(2, 12)
    ts, events, stamp = start, [], day.strftime("%Y%m%d")
    for k in range(count):
        product = rng.choice(PRODUCT_IDS) if rng.random() < 0.6 else None
        kind = "page_view" if k == 0 or product is None else rng.choice(EVENT_KINDS)
        events.append(
            {
                "event_id": f"E{stamp}-{first_id + k:07d}",
                "user_id": user,
                "event_type": kind,
                "page": f"/p/{product}" if product else rng.choice(PAGES),
                "product_id": product,
                "event_ts": iso_at(day, ts),
            }
        )
        ts += rng.randint(10, 600)
    return events


def clickstream_day(rng: random.Random, world: World, day: date, scale: float, last_day: bool) -> Day:
    users = sorted(c for c, created in world.customers.items() if created.date() <= day)
    users += [f"anon-{k:05d}" for k in range(round(500 * scale) or 1)]
    busy: dict[str, list[tuple[float, float]]] = {}
    events, later, sessions, bounces = [], [], 0, 0
    for _ in range(round(SESSIONS * scale)):
        user, start = rng.choice(users), rng.uniform(3600, 21 * 3600)
        planned = session_events(rng, user, start, day, len(events))
        end = start + (datetime.fromisoformat(planned[-1]["event_ts"]) - at(day, start)).total_seconds()
        if any(start < e + IDLE_GAP + 60 and end > s - IDLE_GAP - 60 for s, e in busy.get(user, [])):
            continue  # too close to this user's other session: it would merge with it
        busy.setdefault(user, []).append((start, end))
        later += range(len(events) + 1, len(events) + len(planned))  # events that do not start a session
        events += planned
        sessions, bounces = sessions + 1, bounces + (len(planned) == 1)
    out, n = Day(expected={"events": len(events), "sessions": sessions, "bounces": bounces}), anomaly_count(len(events))
    # Late events: non-first events of a session that reach the stream only the next day.
    held = set() if last_day else set(rng.sample(later, min(n, len(later))))
    arriving_late, world.held_back_events = world.held_back_events, [events[i] for i in sorted(held)]
    events = sorted((e for i, e in enumerate(events) if i not in held), key=lambda e: (e["event_ts"], e["event_id"]))
    drifted = inject_drift(rng, events, "clickstream", n, lambda i: rng.choice(["A", "B"]))
    dupes = duplicate(rng, events, n, drifted)
    lines = json_lines(events)
    for extra in json_lines(dupes + arriving_late) + malformed(rng, events, n):
        lines.insert(rng.randint(0, len(lines)), extra)
    out.lines = lines
    out.anomalies = {
        "duplicates": len(dupes),
        "late_events": len(arriving_late),
        "malformed": n,
        "unknown_columns": len(drifted),
    }
    return out


# Valid JSON with a field nested deeper than Python's recursion limit: it parses, but cannot be written back.
POISON = '{"event_id":"poison","page":' + "[" * 5000 + "]" * 5000 + "}"


def malformed(rng: random.Random, records: list[dict], count: int) -> list[str]:
    """Lines cut off mid-record, as a crashed producer leaves them, and one poison message (deep nesting)."""
    cut = [_JSON.encode(r)[: rng.randint(5, 30)] for r in rng.sample(records, count)]
    return [POISON, *cut[1:]] if cut else cut


# -- Support tickets: CDC changes (c/u/d) with a per-ticket sequence number ------------------------------------


def ticket_change(ticket: dict, op: str, ts: datetime) -> dict:
    ticket["seq"] += 1
    return {"op": op, **ticket, "changed_at": iso(ts)}


def tickets_day(rng: random.Random, world: World, day: date, scale: float, last_day: bool = False) -> Day:
    customers = sorted(c for c, created in world.customers.items() if created.date() <= day)
    changes = []
    live = sorted(t for t, v in world.tickets.items() if not v["deleted"] and v["status"] != "closed")
    for ticket_id in rng.sample(live, len(live) // 2):
        ticket = world.tickets[ticket_id]
        ts = at(day, rng.uniform(0, 86399))
        if rng.random() < 0.05:
            ticket["deleted"] = True
            changes.append(ticket_change(ticket, "d", ts))
            continue
        ticket["status"] = TICKET_STATUSES[TICKET_STATUSES.index(ticket["status"]) + 1]
        changes.append(ticket_change(ticket, "u", ts))
    for _ in range(round(TICKET_CREATES * scale)):
        ticket_id = f"T{len(world.tickets) + 1:07d}"
        ts = at(day, rng.uniform(0, 80000))
        ticket = {
            "ticket_id": ticket_id,
            "seq": 0,
            "customer_id": rng.choice(customers),
            "status": "open",
            "priority": rng.choice(PRIORITIES),
            "subject": f"Question about order #{rng.randint(1, 99999)}",
            "deleted": False,
        }
        world.tickets[ticket_id] = ticket
        changes.append(ticket_change(ticket, "c", ts))
        if rng.random() < 0.3:  # re-prioritised the same day
            ticket["priority"] = rng.choice(PRIORITIES)
            changes.append(ticket_change(ticket, "u", ts + timedelta(seconds=rng.randint(60, 6000))))
    for change in changes:
        del change["deleted"]
    changes.sort(key=lambda c: (c["changed_at"], c["ticket_id"], c["seq"]))
    out, n = Day(), anomaly_count(len(changes))
    # Out of order: a ticket's later change delivered before its earlier one (seq, not arrival, decides).
    pairs = [i for i in range(len(changes) - 1) if changes[i]["ticket_id"] == changes[i + 1]["ticket_id"]]
    swapped = rng.sample(pairs, min(n, len(pairs)))
    for i in swapped:
        changes[i], changes[i + 1] = changes[i + 1], changes[i]
    drifted = inject_drift(rng, changes, "support_tickets_cdc", n, lambda i: rng.choice(["gold", "standard"]))
    dupes = duplicate(rng, changes, n, drifted)
    # Late across days: changes that reach the stream only the next day, after later ones of their ticket.
    held = set() if last_day else set(rng.sample(range(len(changes)), min(n, len(changes))))
    arriving_late, world.held_back_changes = world.held_back_changes, [changes[i] for i in sorted(held)]
    lines = json_lines([c for i, c in enumerate(changes) if i not in held])
    for extra in json_lines(dupes + arriving_late) + malformed(rng, changes, n):
        lines.insert(rng.randint(0, len(lines)), extra)
    tickets = world.tickets.values()
    out.lines = lines
    out.anomalies = {
        "duplicates": len(dupes),
        "out_of_order": len(swapped),
        "late_changes": len(arriving_late),
        "malformed": n,
        "unknown_columns": len(drifted),
    }
    out.expected = {
        "changes": len(changes),
        "tickets": len(tickets),
        "deleted": sum(t["deleted"] for t in tickets),
        **{s: sum(t["status"] == s and not t["deleted"] for t in tickets) for s in TICKET_STATUSES},
    }
    return out


# -- All sources ------------------------------------------------------------------------------------------------


def generate(landing_dir: Path, start: date, days: int, scale: float = 1.0, seed: int = 42) -> dict:
    """Write every source's landing files for `days` days from `start`; return the manifest."""
    if days < 1 or scale <= 0:
        raise ValueError(f"days must be >= 1 and scale > 0, got days={days}, scale={scale}")
    world, rates = World(), dict(RATES_TO_USD)
    rngs = {source: random.Random(f"{seed}:{source}") for source in SOURCES}
    sources: dict[str, dict[str, dict]] = {source: {} for source in SOURCES}
    for index in range(days):
        day = start + timedelta(days=index)
        files = {
            "crm_customers": crm_day(rngs["crm_customers"], world, day, index, scale),
            "orders": orders_day(rngs["orders"], world, day, scale),
            "fx_rates": fx_day(rngs["fx_rates"], day, rates),
            "clickstream": clickstream_day(rngs["clickstream"], world, day, scale, last_day=index == days - 1),
            "support_tickets_cdc": tickets_day(
                rngs["support_tickets_cdc"], world, day, scale, last_day=index == days - 1
            ),
        }
        for source, content in files.items():
            path = landing_file(landing_dir, source, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside, then renamed: a sensor or a run never reads half a file.
            partial = path.with_name(path.name + ".tmp")
            partial.write_text("\n".join(([content.header] if content.header else []) + content.lines) + "\n")
            partial.replace(path)
            sources[source][day.isoformat()] = content.manifest()
    return {
        "start": start.isoformat(),
        "days": days,
        "scale": scale,
        "seed": seed,
        "landing_dir": str(landing_dir),
        "sources": sources,
        "totals": totals(sources),
    }


def totals(sources: dict[str, dict[str, dict]]) -> dict:
    """Records and anomalies summed over the days of each source."""
    result = {}
    for source, days in sources.items():
        anomalies: dict[str, int] = {}
        for figures in days.values():
            for kind, count in figures["anomalies"].items():
                anomalies[kind] = anomalies.get(kind, 0) + count
        result[source] = {"records": sum(f["records"] for f in days.values()), "anomalies": anomalies}
    return result
