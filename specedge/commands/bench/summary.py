"""``bench summary DIR``: the GPU check's one table, from what ``gpu_check.sh`` wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

GPU_BAR = (  # (what, measured as, at most / at least, limit)
    ("one-token step, batch 1 / its bandwidth floor", "floor", "<=", 1.5),
    ("64-node verification / one-token step (batch 1)", "verify", "<=", 1.2),
    ("8 trees of 16 nodes / one-token step (batch 1)", "batched", "<=", 1.5),
    ("SpecExec wall speed-up over plain greedy (bench spec's pair)", "spec", ">=", 2.0),
)


def summary(out_dir: Path) -> tuple[Table, list[str]]:
    """The GPU check's results in one table, and its bar, line by line."""
    by_path: dict[str, dict[tuple[str, int, int, int], dict[str, Any]]] = {}
    gpu = "unknown device"
    for f in sorted(out_dir.glob("profile-*.json")):
        prof = json.loads(f.read_text())
        gpu = prof["device_name"]
        for r in prof["rows"]:
            key = (r["name"], r["batch"], r["nodes"], r["prefix"])
            by_path.setdefault(r["forward_path"], {})[key] = r
    if not any(out_dir.glob("*.json")):
        raise SystemExit(f"{out_dir}: none of gpu_check.sh's JSON files (profile-*.json, "
                         "paths*.json, spec*.json) to sum up")
    if not by_path:  # a run of other steps only: the lines below, under an empty table
        by_path["eager"] = {}
    for f in sorted(out_dir.glob("spec*.json")):
        gpu = json.loads(f.read_text()).get("device_name", gpu)
    # graphs, else the other non-eager path profiled (static on a CPU), else eager alone
    fast = max(by_path, key=lambda m: (m == "graphs", m != "eager", len(by_path[m])))
    eager = by_path.get("eager", {})
    t = Table(title=f"GPU check on {gpu}: forward ms, eager vs {fast} vs the bandwidth floor")
    for col in ("model", "batch", "nodes", "prefix", "eager ms", f"{fast} ms", "floor ms",
                f"{fast} / floor", f"eager / {fast}"):
        t.add_column(col, justify="left" if col == "model" else "right")
    points = by_path[fast]
    for key, r in sorted(points.items()):
        e = eager.get(key)
        floor = r["floor_ms"]
        t.add_row(key[0], *map(str, key[1:]), "-" if e is None else f"{e['ms_median']:.2f}",
                  f"{r['ms_median']:.2f}", "-" if floor is None else f"{floor:.2f}",
                  "-" if floor is None else f"{r['ms_median'] / floor:.2f}x",
                  "-" if e is None else f"{e['ms_median'] / r['ms_median']:.2f}x")
    targets = {k: r for k, r in points.items() if r["model"] == "target"}

    def step(batch: int, nodes: int) -> dict[str, Any] | None:
        return next((r for (_, b, n, _), r in sorted(targets.items())
                     if b == batch and n == nodes), None)

    one = step(1, 1)
    measured: dict[str, float | None] = {"floor": None, "verify": None, "batched": None,
                                         "spec": None}
    if one is not None:
        if one["floor_ms"]:
            measured["floor"] = one["ms_median"] / one["floor_ms"]
        for name, (batch, nodes) in (("verify", (1, 64)), ("batched", (8, 16))):
            if (r := step(batch, nodes)) is not None:
                measured[name] = r["ms_median"] / one["ms_median"]
    specs = {f: json.loads(f.read_text()) for f in sorted(out_dir.glob("spec*.json"))}
    if specs:  # the bar on the most requests measured (spec-8.json over spec-4.json)
        spec = max(specs.values(), key=lambda s: s["results"][0]["requests"])
        walls = {r["method"]: r["wall_s"] for r in spec["results"]}
        measured["spec"] = walls["target greedy"] / walls["SpecExec (ours)"]
    lines = []
    for what, name, sense, limit in GPU_BAR:
        value = measured[name]
        if value is None:
            lines.append(f"{what}: not measured")
            continue
        ok = value <= limit if sense == "<=" else value >= limit
        lines.append(f"{what}: {value:.2f}x ({'meets' if ok else 'misses'} {sense} {limit}x)")
    for paths in sorted(out_dir.glob("paths*.json")):
        p = json.loads(paths.read_text())
        for method, diffs in p["first_difference"].items():
            same = sum(d is None for d in diffs)
            first = [d for d in diffs if d is not None]
            lines.append(f"eager vs {p['path']}, {p['model']} {method} ({p['dtype']}): "
                         f"{same}/{len(diffs)} requests identical"
                         + (f", first difference at token {min(first)}" if first else ""))
    for spec in specs.values():
        lines.append(f"bench spec, {spec['model']} ({spec['dtype']}, {spec['forward_path']}), "
                     f"{spec['results'][0]['requests']} requests: " + ", ".join(
                         f"{r['method']} {r['matching']}/{r['requests']} exact"
                         for r in spec["results"]))
    for edge in sorted(out_dir.glob("edge-*/edge.json")):
        lines.append(f"bench edge, {edge.parent.name}: " + ", ".join(
            f"{r['variant']} {r['requests_as_server_only']}/{r['requests']} as server-only"
            for r in json.loads(edge.read_text())))
    for log_file in sorted(out_dir.glob("*.log")):  # start-up capture: graphs, time, memory
        lines += [f"{log_file.stem}: {line.split('] ')[-1].strip()}"
                  for line in log_file.read_text(errors="replace").splitlines()
                  if "at start-up in" in line]
    return t, [f"on {gpu}: {line}" for line in lines]
