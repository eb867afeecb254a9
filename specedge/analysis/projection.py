"""The projection a reader can decide on: the paper's protocol under labelled acceptance
scenarios, maps of where SpecEdge pays, and how each assumption moves the headline.

``python -m specedge.analysis.projection [HYDRA_OVERRIDES...]`` (schema
:class:`specedge.analysis.projection_config.ProjectionConfig`,
``conf/projection.yaml``) writes ``protocol.json``, ``maps.json``, ``sensitivity.json`` and
``scenarios.json`` into ``out_dir``. Every number is a simulation
(:mod:`specedge.analysis.simulation.systems`), never a measurement. Hydra composes the setup's
run configurations once (:func:`compose_bases`); each point is typed settings applied to one of
them, and keeps those settings as the overrides that give it, so ``specedge simulate
<overrides>`` reproduces it exactly (same seed).

- **Acceptance scenarios** (:class:`Scenario`): a trace (a run directory, or a trace file of
  :func:`specedge.analysis.simulation.traces.save_trace`) whose rounds are drawn as they were,
  or a published chain acceptance (mean tokens per verification at ``drafted`` tokens) turned
  into a distribution by a constant per-token acceptance rate, with its source.
- **The paper's protocol** (:func:`protocol`): for each batch size B, server-only and
  auto-batch at batch B, and SpecEdge with ``edges_per_batch`` x B edges in pipeline groups of
  B, compared with upstream's metric definitions (the summaries' ``upstream`` block), beside
  the paper's figures.
- **Maps** (:func:`maps`): SpecEdge's cost per token over server-only's and auto-batch's at the
  same concurrency (users), over concurrency x tokens per round x round-trip time, per hardware
  entry. At concurrency C SpecEdge serves C edges in two pipeline groups (batch ceil(C/2);
  budgeted, one group of C when that is the shorter cycle); the baselines batch all C.
- **Sensitivity** (:func:`sensitivity`): the headline ratios at one batch size, then one
  assumption changed at a time: acceptance, efficiency (the single value once fitted on
  host-bound data), edges per batch, accounting.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from specedge.analysis.pricing import break_even_edge_price, compare_draws, figures, priced
from specedge.analysis.projection_config import PaperFigures, ProjectionConfig
from specedge.analysis.run_records import MetricsError
from specedge.analysis.simulation.acceptance import Scenario, two_point_acceptance
from specedge.analysis.simulation.latency import SimulationError
from specedge.analysis.simulation.systems import (
    SYSTEMS,
    Bases,
    Settings,
    compose_bases,
    overrides,
    simulate_system,
)
from specedge.base.config.checks import ConfigError
from specedge.base.roofline import GPUS, Roofline, derive, dumps

BASELINES = ("server_only", "auto_batch")


def ratios(specedge: dict[str, float], server_only: dict[str, float]) -> dict[str, float]:
    """The paper's three headline figures: cost efficiency and throughput over server-only,
    and how much lower the inter-token latency is."""
    return {"cost_efficiency_x": server_only["usd_per_mtok"] / specedge["usd_per_mtok"],
            "throughput_x": specedge["throughput_tok_s"] / server_only["throughput_tok_s"],
            "itl_reduction": 1 - specedge["itl_ms"] / server_only["itl_ms"]}


def protocol_edges(cfg: ProjectionConfig, system: str, batch: int) -> int | None:
    """The protocol's edges: ``edges_per_batch`` x B for SpecEdge, none for the baselines."""
    return cfg.edges_per_batch * batch if system.startswith("specedge") else None


def protocol_settings(cfg: ProjectionConfig, scenario: Scenario) -> Settings:
    return scenario.settings() | {"simulate.requests_per_edge": cfg.requests_per_slot}


def protocol(cfg: ProjectionConfig, bases: Bases, scenario: Scenario) -> list[dict[str, Any]]:
    """The paper's protocol under one scenario: a row per batch size and system, SpecEdge's
    with its further draws (``draws``) priced."""
    settings = protocol_settings(cfg, scenario)
    rows = []
    for batch in cfg.batch_sizes:
        for system in SYSTEMS:
            edges = protocol_edges(cfg, system, batch)
            further = range(cfg.seed + 1, cfg.seed + cfg.draws) if edges is not None else ()
            rows.append({"scenario": scenario.name, "batch": batch, "system": system,
                         "edges": edges,
                         **simulate_system(bases, None, system, batch, edges, settings,
                                           cfg.seed),
                         "draws": [{"seed": seed, **priced(simulate_system(
                             bases, None, system, batch, edges, settings, seed))}
                                   for seed in further]})
    return rows


def _by_point(rows: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Protocol points by (scenario, batch, system)."""
    return {(r["scenario"], r["batch"], r["system"]): r for r in rows}


def protocol_table(rows: list[dict[str, Any]], paper: PaperFigures) -> list[dict[str, Any]]:
    """Per scenario and batch size: the upstream-defined figures of each system, SpecEdge's
    ratios to server-only, and at batch 1 the gap to upstream's $ per 1M tokens."""
    out = []
    keyed = _by_point(rows)
    for (scenario, batch, system), r in keyed.items():
        if system != "specedge":
            continue
        f = {s: figures(keyed[(scenario, batch, s)]) for s in SYSTEMS}
        budgeted = keyed[(scenario, batch, "specedge_budgeted")]
        row = {"scenario": scenario, "batch": batch, "edges": r["edges"],
               **{f"{s}_usd_per_mtok": f[s]["usd_per_mtok"] for s in SYSTEMS},
               **{f"{s}_itl_ms": f[s]["itl_ms"] for s in SYSTEMS},
               **{f"{s}_tok_s": f[s]["throughput_tok_s"] for s in SYSTEMS},
               "server_utilization": r["server_utilization"],
               **ratios(f["specedge"], f["server_only"]),
               **{f"budgeted_{k}": v for k, v in ratios(f["specedge_budgeted"],
                                                        f["server_only"]).items()}}
        # Server throughput, tokens per second the server works (busy), over plain batching's
        busy = {s: figures(keyed[(scenario, batch, s)], "busy")["throughput_tok_s"]
                for s in SYSTEMS}
        for s in ("specedge", "specedge_budgeted"):
            row[f"{s}_busy_vs_auto_batch"] = busy[s] / busy["auto_batch"]
        row["budgeted_verified_size"] = budgeted["verified_size_mean"]
        for accounting in ("upstream", "ours"):  # the edge price at which SpecEdge pays
            cheaper = min(figures(keyed[(scenario, batch, b)], accounting)["usd_per_mtok"]
                          for b in BASELINES)
            prices = {s: [break_even_edge_price(d, cheaper, accounting) for d in
                          (keyed[(scenario, batch, s)], *keyed[(scenario, batch, s)]["draws"])]
                      for s in ("specedge", "specedge_budgeted")}
            for s, by_draw in prices.items():
                row[f"{s}_break_even_usd_h_{accounting}"] = by_draw[0]
                row[f"{s}_break_even_draws_{accounting}"] = by_draw
            row[f"budgeted_break_even_{accounting}"] = compare_draws(
                prices["specedge_budgeted"], prices["specedge"])
        for key in ("cost_efficiency_x", "throughput_x", "itl_reduction"):
            row[f"{key}_paper"] = getattr(paper, key)
            row[f"{key}_gap"] = row[key] - getattr(paper, key)
        if batch == 1:
            for s, usd in paper.usd_per_mtok_batch1.items():
                row[f"{s}_usd_per_mtok_paper"] = usd
        out.append(row)
    return out


def map_point(cfg: ProjectionConfig, bases: Bases, hardware: str, system: str,
              concurrency: int, tokens_per_round: float, rtt_ms: float) -> dict[str, Any]:
    """One map point (the point simulation a map cell summarises): at concurrency C,
    SpecEdge's C edges in batches of ceil(C/2), the baselines' batch of C."""
    edge_side = system.startswith("specedge")
    batch = math.ceil(concurrency / 2) if edge_side else concurrency
    settings: Settings = {
        "hardware.link.delay_ms": rtt_ms / 2,
        "simulate.trace": cfg.scenario(cfg.main_scenario).trace,
        "simulate.acceptance": two_point_acceptance(tokens_per_round),
        "simulate.requests_per_edge": cfg.maps.requests_per_slot}
    return simulate_system(bases, hardware, system, batch,
                           concurrency if edge_side else None, settings, cfg.seed)


def maps(cfg: ProjectionConfig, bases: Bases) -> list[dict[str, Any]]:
    """SpecEdge's cost per token over each baseline's, a row per map cell. The baselines do
    not depend on the link (server-only, auto-batch) or the acceptance (auto-batch), so each
    is simulated once and shared by the cells it applies to."""
    g = cfg.maps
    rows = []
    for hardware in g.hardware:
        auto = {c: map_point(cfg, bases, hardware, "auto_batch", c, 1.0, 0.0)
                for c in g.concurrency}
        for t in g.tokens_per_round:
            for c in g.concurrency:
                server_only = map_point(cfg, bases, hardware, "server_only", c, t, 0.0)
                so, ab = figures(server_only), figures(auto[c])
                for rtt in g.rtt_ms:
                    cell: dict[str, Any] = {
                        "hardware": hardware, "concurrency": c, "tokens_per_round": t,
                        "rtt_ms": rtt, "server_only_usd_per_mtok": so["usd_per_mtok"],
                        "auto_batch_usd_per_mtok": ab["usd_per_mtok"],
                        "overrides": {"server_only": server_only["overrides"],
                                      "auto_batch": auto[c]["overrides"]}}
                    for system, prefix in (("specedge", ""),
                                           ("specedge_budgeted", "budgeted_")):
                        se = map_point(cfg, bases, hardware, system, c, t, rtt)
                        f = figures(se)
                        cell |= {f"{system}_usd_per_mtok": f["usd_per_mtok"],
                                 f"{prefix}vs_server_only": f["usd_per_mtok"] / so["usd_per_mtok"],
                                 f"{prefix}vs_auto_batch": f["usd_per_mtok"] / ab["usd_per_mtok"],
                                 f"{system}_tokens_per_round": se["tokens_per_round"],
                                 f"{prefix}server_utilization": se["server_utilization"]}
                        cell["overrides"][system] = se["overrides"]
                    rows.append(cell)
    return rows


def host_bound_profiles(cfg: ProjectionConfig, out_dir: Path) -> Settings:
    """Server and edge profiles of the setup's hardware with the one efficiency once fitted
    on host-bound data, as simulate settings."""
    eff = cfg.host_bound_efficiency
    keys = {"a100_80": ("a100_80", "rtx4090"), "a100_40": ("a100_40", "rtx4090"),
            "rtx4090": ("rtx4090", "rtx4090")}
    hardware = next((o.split("=", 1)[1] for o in cfg.setup if o.startswith("hardware=")),
                    "a100_80")
    if hardware not in keys:
        raise ConfigError(f"setup hardware {hardware!r}: the efficiency variant needs a GPU "
                          f"entry ({', '.join(keys)})")
    paths = []
    for key in keys[hardware]:
        gpu = next(g for g in GPUS if g.key == key)
        path = out_dir / f"profiles/{key}-graphs-eff{eff:g}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(derive(gpu, "graphs", Roofline(eff, eff, 0.0), {
            "efficiencies": f"one efficiency {eff:g} for bandwidth and compute, as once "
                            "fitted on the host-bound H200 eager profile"})))
        paths.append(str(path))
    return {"simulate.profile": paths[0], "simulate.edge_profile": paths[1]}


def sensitivity(cfg: ProjectionConfig, bases: Bases, protocol_rows: list[dict[str, Any]],
                out_dir: Path) -> list[dict[str, Any]]:
    """The headline ratios at ``headline_batch`` under the main scenario, then with one
    assumption changed at a time."""
    b = cfg.headline_batch
    main = cfg.scenario(cfg.main_scenario)
    keyed = _by_point(protocol_rows)

    def row(assumption: str, value: str, se: dict[str, Any], so: dict[str, Any],
            accounting: str = "upstream") -> dict[str, Any]:
        return {"assumption": assumption, "value": value,
                **ratios(figures(se, accounting), figures(so, accounting)),
                "specedge_overrides": se["overrides"], "server_only_overrides": so["overrides"]}

    base_se, base_so = keyed[(main.name, b, "specedge")], keyed[(main.name, b, "server_only")]
    rows = [row("baseline", f"{main.label}; sourced efficiencies; {cfg.edges_per_batch * b} "
                f"edges; upstream accounting", base_se, base_so),
            row("verification budget", "goodput: the server's one budget of nodes per step",
                keyed[(main.name, b, "specedge_budgeted")], base_so)]
    for s in cfg.scenarios:
        if s.name != main.name:
            rows.append(row("acceptance", s.label, keyed[(s.name, b, "specedge")],
                            keyed[(s.name, b, "server_only")]))
    settings = protocol_settings(cfg, main)
    variant = settings | host_bound_profiles(cfg, out_dir)
    se, so = (simulate_system(bases, None, system, b, protocol_edges(cfg, system, b),
                              variant, cfg.seed) for system in ("specedge", "server_only"))
    rows.append(row("efficiency", f"{cfg.host_bound_efficiency:g} for both (fitted on "
                    "host-bound data)", se, so))
    for edges in sorted({b, 4 * b} - {cfg.edges_per_batch * b}):
        se = simulate_system(bases, None, "specedge", b, edges, settings, cfg.seed)
        rows.append(row("edges per batch", f"{edges} edges ({edges / b:g} x B)", se, base_so))
    for accounting in ("ours", "wall", "busy"):
        rows.append(row("accounting", accounting, base_se, base_so, accounting))
    return rows


def verdict(rows: list[dict[str, Any]], paper: PaperFigures) -> list[str]:
    """Plain sentences: is the paper's direction reproduced, and which assumption moves each
    figure most toward the paper's."""
    base = rows[0]
    lines = []
    for key, name, better in (("cost_efficiency_x", "cost efficiency", 1.0),
                              ("throughput_x", "server throughput", 1.0),
                              ("itl_reduction", "inter-token latency reduction", 0.0)):
        target = getattr(paper, key)
        same = (base[key] > better) == (target > better)
        closest = min(rows[1:], key=lambda r: abs(r[key] - target), default=base)
        shown = (lambda v: f"{v:.0%}") if key == "itl_reduction" else (lambda v: f"{v:.2f}x")
        lines.append(
            f"{name}: the paper {shown(target)}, the projection {shown(base[key])}: the "
            f"paper's direction is {'reproduced' if same else 'not reproduced'}. The "
            f"assumption that moves it most toward the paper's: {closest['assumption']} = "
            f"{closest['value']} ({shown(closest[key])}).")
    return lines


def run(cfg: ProjectionConfig, bases: Bases) -> dict[str, Any]:
    out_dir = Path(cfg.out_dir)  # relative to the working directory, as every run's
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: Any) -> None:
        (out_dir / name).write_text(json.dumps(data, indent=1) + "\n")

    write("scenarios.json", [{"name": s.name, "label": s.label, "source": s.source,
                              "overrides": overrides(s.settings()), "simulated": True}
                             for s in cfg.scenarios])
    rows = [r for s in cfg.scenarios for r in protocol(cfg, bases, s)]
    write("protocol.json", {"simulated": True, "setup": cfg.setup,
                            "edges_per_batch": cfg.edges_per_batch,
                            "paper": OmegaConf.to_container(OmegaConf.structured(cfg.paper)),
                            "points": rows, "table": protocol_table(rows, cfg.paper)})
    table = sensitivity(cfg, bases, rows, out_dir)
    write("sensitivity.json", {"simulated": True, "headline_batch": cfg.headline_batch,
                               "rows": table, "verdict": verdict(table, cfg.paper)})
    write("maps.json", {"simulated": True, "grid": OmegaConf.to_container(
        OmegaConf.structured(cfg.maps)), "scenario": cfg.main_scenario,
        "paper_point": {"hardware": "a100_80", "concurrency": 2 * cfg.headline_batch,
                        "rtt_ms": 14.0}, "cells": maps(cfg, bases)})
    return {"out_dir": str(out_dir), "points": len(rows), "verdict": verdict(table, cfg.paper)}


@hydra.main(version_base="1.3", config_path="../../conf", config_name="projection")
def main(composed: DictConfig) -> None:
    try:
        cfg: ProjectionConfig = OmegaConf.to_object(composed)  # type: ignore[assignment]
        result = run(cfg, compose_bases(cfg.setup, cfg.maps.hardware))
    except (ConfigError, SimulationError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(result["verdict"]))
    print(f"simulated -> {result['out_dir']}")


if __name__ == "__main__":
    main()
