# The performance model (specedge.analysis.simulate): validated against real runs here, then projected
# onto the paper's hardware. Everything under results/projection/ is simulated.

import glob
import os

from specedge.analysis.simulation import heldout
from specedge.analysis.simulation.systems import batch_settings, overrides

VALIDATION = config["validation"]
# The shipped latency profiles every projection simulation reads (hardware entries name them):
# regenerating them (specedge roofline) re-runs the projection.
SHIPPED = os.path.join(workflow.basedir, "specedge", "data")
DERIVED_PROFILES = sorted(glob.glob(os.path.join(SHIPPED, "profiles", "*-derived.json")))
SHIPPED_TRACES = sorted(glob.glob(os.path.join(SHIPPED, "traces", "*.json")))
PROJECTION = config["projection"]
VALIDATION_DIRS = [f"results/validation/{name}" for name in VALIDATION["runs"]]
ORDERED_BASELINES = ["auto_batch", "server_only", "specedge"]
ABLATION = VALIDATION.get("ablation", [])
EDGE_TRACES = PROJECTION["edge_traces"]
SCENARIO_RUNS = PROJECTION.get("scenario_runs", [])
for _where, _names in (("validation.ablation", ABLATION),
                       ("projection.edge_traces", list(EDGE_TRACES.values())),
                       ("projection.scenario_runs", SCENARIO_RUNS)):
    _unknown = sorted(set(_names) - set(VALIDATION["runs"]))
    if _unknown:
        raise ValueError(f"workflow/config.yaml: {_where} names {_unknown}, which are not "
                         f"validation runs; accepted: {sorted(VALIDATION['runs'])}")


# Held-out configurations (validation.heldout): each draw a SpecEdge run and its server-only
# twin into results/heldout/, validated as a pair (their ratios too).
HELDOUT = VALIDATION.get("heldout", {})
HELDOUT_DRAWS = heldout.draw(HELDOUT.get("space", {"edges": [1]}), HELDOUT.get("datasets", {}),
                             HELDOUT.get("draws", 0), HELDOUT.get("seed", 0),
                             HELDOUT.get("requests", 5))
HELDOUT_RUNS = heldout.runs(HELDOUT_DRAWS)
HELDOUT_TABLES = [f"results/heldout/simulated/{d.name}/validation.json" for d in HELDOUT_DRAWS]
LONG_PROMPTS = "results/datasets/long.jsonl"  # written by rule long_prompts


def run_baseline(overrides):
    """The baseline a run's overrides select (the Hydra default: specedge)."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("baseline=")]
    return chosen[-1] if chosen else "specedge"


def validation_overrides(wildcards):
    return hydra_overrides(
        RUN_OVERRIDES
        + VALIDATION.get("overrides", [])
        + VALIDATION["runs"][wildcards.name]
    )


rule validation_run:
    """One real run of the validation matrix (`specedge run`)."""
    input:
        card=PAIR_CARD,
    output:
        summary="results/validation/{name}/summary.json",
    params:
        overrides=validation_overrides,
    resources:
        **slurm_resources(),
    log:
        "logs/validation/{name}.log",
    benchmark:
        "benchmarks/validation/{name}.tsv"
    shell:
        "rm -rf results/validation/{wildcards.name} && "
        "{SPECEDGE} run hydra.run.dir=results/validation/{wildcards.name} "
        "{params.overrides} > {log} 2>&1"


rule long_prompts:
    """Prompts with long passages from the corpus (specedge.commands.long_prompts), for the
    held-out draws that name them."""
    output:
        LONG_PROMPTS,
    log:
        "logs/datasets/long_prompts.log",
    shell:
        "{SPECEDGE} long-prompts {output} --corpus-dir models/corpus > {log} 2>&1"


def heldout_inputs(wildcards):
    overrides = HELDOUT_RUNS[wildcards.name]
    return [LONG_PROMPTS] if any(LONG_PROMPTS in o for o in overrides) else []


rule heldout_run:
    """One real run of a held-out draw (`specedge run`)."""
    input:
        card=PAIR_CARD,
        datasets=heldout_inputs,
    output:
        summary="results/heldout/{name}/summary.json",
    wildcard_constraints:
        name="|".join(HELDOUT_RUNS) or "no-heldout-runs",
    params:
        overrides=lambda wildcards: hydra_overrides(
            RUN_OVERRIDES + HELDOUT.get("overrides", []) + HELDOUT_RUNS[wildcards.name]),
    resources:
        **slurm_resources(),
    log:
        "logs/heldout/{name}.log",
    benchmark:
        "benchmarks/heldout/{name}.tsv"
    shell:
        "rm -rf results/heldout/{wildcards.name} && "
        "{SPECEDGE} run hydra.run.dir=results/heldout/{wildcards.name} "
        "{params.overrides} > {log} 2>&1"


rule heldout_validate:
    """A held-out draw and its server-only twin, measured vs simulated, with their ratios."""
    input:
        "results/heldout/{draw}-server_only/summary.json",
        "results/heldout/{draw}/summary.json",
    output:
        table="results/heldout/simulated/{draw}/validation.json",
    log:
        "logs/heldout/validate-{draw}.log",
    shell:
        "{SPECEDGE} simulate --validate results/heldout/{wildcards.draw}-server_only "
        "results/heldout/{wildcards.draw} --out results/heldout/simulated/{wildcards.draw} "
        "> {log} 2>&1"


rule heldout:
    """Every held-out draw run and validated (`snakemake --cores 1 heldout`)."""
    input:
        HELDOUT_TABLES,


rule validate:
    """Measured vs simulated for every validation run (`specedge simulate
    --validate`): each re-simulated from its own config, forwards and rounds."""
    input:
        [f"{d}/summary.json" for d in VALIDATION_DIRS],
    output:
        table="results/validation/simulated/validation.json",
    params:
        runs=" ".join(VALIDATION_DIRS),
    log:
        "logs/validation/validate.log",
    benchmark:
        "benchmarks/validation/validate.tsv"
    shell:
        "{SPECEDGE} simulate --validate {params.runs} --out results/validation/simulated "
        "> {log} 2>&1"


def concurrency(baseline):
    """A baseline at the projection's concurrency, as the simulator's systems define it."""
    return overrides(batch_settings(baseline, PROJECTION["concurrency"]))


def setup_overrides(wildcards):
    return hydra_overrides(PROJECTION["overrides"] + concurrency(wildcards.baseline))


def ablation_overrides(wildcards):
    """The run's own settings (baseline, proactive rule, tree policy) in the paper's setup;
    any hardware settings of the run give way to the projection's."""
    own = [o for o in VALIDATION["runs"][wildcards.name]
           if not o.startswith(("hardware.", "server.num_clients"))]
    return hydra_overrides(PROJECTION["overrides"] + own
                           + concurrency(run_baseline(own)))


rule projection_setup:
    """One system in the paper's setup, simulated from the embedded default's rounds."""
    input:
        trace="results/runs/{baseline}/summary.json",
        profiles=DERIVED_PROFILES,
    output:
        summary="results/projection/setup/{baseline}/summary.json",
    params:
        overrides=setup_overrides,
    log:
        "logs/projection/setup-{baseline}.log",
    benchmark:
        "benchmarks/projection/setup-{baseline}.tsv"
    shell:
        "{SPECEDGE} simulate baseline={wildcards.baseline} "
        "simulate.trace=results/runs/{wildcards.baseline} {params.overrides} "
        "hydra.run.dir=results/projection/setup/{wildcards.baseline} > {log} 2>&1"


rule projection_ablation:
    """One run of the ablation in the paper's setup, simulated from its own rounds and hits."""
    input:
        trace="results/validation/{name}/summary.json",
        profiles=DERIVED_PROFILES,
    output:
        summary="results/projection/ablation/{name}/summary.json",
    params:
        overrides=ablation_overrides,
    log:
        "logs/projection/ablation-{name}.log",
    benchmark:
        "benchmarks/projection/ablation-{name}.tsv"
    shell:
        "{SPECEDGE} simulate simulate.trace=results/validation/{wildcards.name} "
        "{params.overrides} hydra.run.dir=results/projection/ablation/{wildcards.name} "
        "> {log} 2>&1"


rule projection_edges:
    """SpecEdge with 1 to 256 edges per server, one multirun per proactive rule, each drawing
    the rounds and hit rate of its own validation run (projection.edge_traces)."""
    input:
        traces=[f"results/validation/{name}/summary.json" for name in EDGE_TRACES.values()],
        profiles=DERIVED_PROFILES,
    output:
        directory("results/projection/edges"),
    params:
        overrides=hydra_overrides(PROJECTION["overrides"]),
        edges=",".join(str(n) for n in PROJECTION["edges"]),
        batch=PROJECTION["max_batch_size"],
        sweeps=" ".join(f"{rule}:{name}" for rule, name in EDGE_TRACES.items()),
    log:
        "logs/projection/edges.log",
    benchmark:
        "benchmarks/projection/edges.tsv"
    shell:
        "for pair in {params.sweeps}; do rule=${{pair%%:*}}; name=${{pair#*:}}; "
        "{SPECEDGE} simulate -m simulate.trace=results/validation/$name "
        "{params.overrides} simulate.edges={params.edges} server.max_batch_size={params.batch} "
        "edge.proactive.type=$rule hydra.sweep.dir={output}/$rule || exit 1; "
        "done > {log} 2>&1"


rule projection_scenarios:
    """The paper's protocol under every acceptance scenario, the maps of where SpecEdge pays
    and the sensitivity table (`specedge projection`, conf/projection.yaml)."""
    input:
        runs=[f"results/validation/{name}/summary.json" for name in SCENARIO_RUNS],
        profiles=DERIVED_PROFILES,
        traces=SHIPPED_TRACES,
    output:
        directory("results/projection/scenarios"),
    params:
        overrides=hydra_overrides(PROJECTION.get("scenario_overrides", [])),
    log:
        "logs/projection/scenarios.log",
    benchmark:
        "benchmarks/projection/scenarios.tsv"
    shell:
        "{SPECEDGE} projection out_dir={output} {params.overrides} "
        "hydra.run.dir=logs/projection/scenarios > {log} 2>&1"


rule report_projection:
    """Validation table, the ablation, the paper setup's cost table and the edges sweep."""
    input:
        validation=rules.validate.output.table,
        setup=expand(rules.projection_setup.output.summary, baseline=ORDERED_BASELINES),
        edges=rules.projection_edges.output,
        ablation=expand(rules.projection_ablation.output.summary, name=ABLATION),
        scenarios=rules.projection_scenarios.output,
        heldout=HELDOUT_TABLES,
    output:
        "reports/projection.html",
    params:
        setup=" ".join(f"results/projection/setup/{b}" for b in ORDERED_BASELINES),
        sweeps=" ".join(f"results/projection/edges/{rule}" for rule in EDGE_TRACES),
        ablation=" ".join(f"results/validation/{name}" for name in ABLATION),
        ablation_setup=" ".join(f"results/projection/ablation/{name}" for name in ABLATION),
    log:
        "logs/reports/projection.log",
    benchmark:
        "benchmarks/reports/projection.tsv"
    shell:
        "{SPECEDGE} report projection {params.setup} --sweep {params.sweeps} "
        "--ablation {params.ablation} --ablation-setup {params.ablation_setup} "
        "--validation {input.validation} --scenarios {input.scenarios} "
        "--heldout {input.heldout} --out {output} "
        "> {log} 2>&1"
