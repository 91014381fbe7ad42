"""The asset graph as users see it (keys, groups, partitioning, backfill policy, dependencies and checks) is
the one recorded in snapshots/asset_graph.json: a change to it is deliberate. After one, regenerate the file
with `python -m lakehouse_tests.test_graph_snapshot` and review the diff."""

import json
from pathlib import Path

import dagster as dg

from lakehouse_tests.helpers import DEFS

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def backfill(policy: dg.BackfillPolicy | None) -> str | None:
    return None if policy is None else policy.policy_type.value


def graph() -> dict:
    graph = DEFS.resolve_asset_graph()
    return {
        key.to_user_string(): {
            "group": node.group_name,
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "backfill": backfill(node.backfill_policy),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(k.name for k in node.check_keys),
        }
        for key, node in sorted((k, graph.get(k)) for k in graph.get_all_asset_keys())
    }


def test_the_asset_graph_is_the_recorded_one():
    assert graph() == json.loads(SNAPSHOT.read_text())


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(graph(), indent=1) + "\n")
    print(f"wrote {SNAPSHOT}")
