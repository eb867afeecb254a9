# The performance model (specedge.simulate): validated against real runs here, then projected
# onto the paper's hardware. Everything under results/projection/ is simulated.

VALIDATION = config["validation"]
PROJECTION = config["projection"]
VALIDATION_DIRS = [f"results/validation/{name}" for name in VALIDATION["runs"]]
ORDERED_BASELINES = ["auto_batch", "server_only", "specedge"]


def validation_overrides(wildcards):
    return hydra_overrides(
        RUN_OVERRIDES
        + VALIDATION.get("overrides", [])
        + VALIDATION["runs"][wildcards.name]
    )


rule validation_run:
    """One real run of the validation matrix (`python -m specedge.run`)."""
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
        "{PY} -m specedge.run hydra.run.dir=results/validation/{wildcards.name} "
        "{params.overrides} > {log} 2>&1"


rule validate:
    """Measured vs simulated for every validation run (`python -m specedge.simulate
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
        "{PY} -m specedge.simulate --validate {params.runs} --out results/validation/simulated "
        "> {log} 2>&1"


def setup_overrides(wildcards):
    n = PROJECTION["concurrency"]
    per_baseline = {
        "specedge": [f"simulate.edges={n}", f"server.max_batch_size={n}"],
        "server_only": [f"baseline.max_batch_size={n}"],
        "auto_batch": [f"baseline.batch_size={n}"],
    }
    return hydra_overrides(PROJECTION["overrides"] + per_baseline[wildcards.baseline])


rule projection_setup:
    """One system in the paper's setup, simulated from the embedded default's rounds."""
    input:
        trace="results/runs/{baseline}/summary.json",
    output:
        summary="results/projection/setup/{baseline}/summary.json",
    params:
        overrides=setup_overrides,
    log:
        "logs/projection/setup-{baseline}.log",
    benchmark:
        "benchmarks/projection/setup-{baseline}.tsv"
    shell:
        "{PY} -m specedge.simulate baseline={wildcards.baseline} "
        "simulate.trace=results/runs/{wildcards.baseline} {params.overrides} "
        "hydra.run.dir=results/projection/setup/{wildcards.baseline} > {log} 2>&1"


rule projection_edges:
    """SpecEdge with 1 to 256 edges per server, proactive drafting on and off (a multirun)."""
    input:
        trace="results/runs/specedge/summary.json",
    output:
        directory("results/projection/edges"),
    params:
        overrides=hydra_overrides(PROJECTION["overrides"]),
        edges=",".join(str(n) for n in PROJECTION["edges"]),
        batch=PROJECTION["max_batch_size"],
    log:
        "logs/projection/edges.log",
    benchmark:
        "benchmarks/projection/edges.tsv"
    shell:
        "{PY} -m specedge.simulate -m simulate.trace=results/runs/specedge {params.overrides} "
        "simulate.edges={params.edges} server.max_batch_size={params.batch} "
        "edge.proactive.type=disabled,excluded hydra.sweep.dir={output} > {log} 2>&1"


rule report_projection:
    """Validation table, the paper setup's cost table and the edges-per-server sweep."""
    input:
        validation=rules.validate.output.table,
        setup=expand(rules.projection_setup.output.summary, baseline=ORDERED_BASELINES),
        edges=rules.projection_edges.output,
    output:
        "reports/projection.html",
    params:
        setup=" ".join(f"results/projection/setup/{b}" for b in ORDERED_BASELINES),
    log:
        "logs/reports/projection.log",
    benchmark:
        "benchmarks/reports/projection.tsv"
    shell:
        "{PY} -m specedge.report projection {params.setup} --sweep {input.edges} "
        "--validation {input.validation} --out {output} > {log} 2>&1"
