wildcard_constraints:
    baseline="specedge|server_only|auto_batch",
    sweep="[A-Za-z0-9_-]+",


def run_overrides(wildcards):
    return hydra_overrides(
        RUN_OVERRIDES + config["runs"]["baselines"][wildcards.baseline]
    )


rule run_baseline:
    """One experiment run (`specedge run`): for specedge it deploys the gRPC server and
    the Fabric-launched edges of the hardware config, then collects their JSONL."""
    input:
        card=PAIR_CARD,
    output:
        # every baseline writes outputs.jsonl; its other JSONL differs (specedge.base.records)
        outputs="results/runs/{baseline}/outputs.jsonl",
        summary="results/runs/{baseline}/summary.json",
    params:
        overrides=run_overrides,
    resources:
        **slurm_resources(),
    log:
        "logs/runs/{baseline}.log",
    benchmark:
        "benchmarks/runs/{baseline}.tsv"
    shell:
        "rm -rf results/runs/{wildcards.baseline} && "
        "{SPECEDGE} run baseline={wildcards.baseline} "
        "hydra.run.dir=results/runs/{wildcards.baseline} {params.overrides} > {log} 2>&1"


def sweep_args(wildcards):
    sweep = config["sweeps"][wildcards.sweep]
    return hydra_overrides(
        RUN_OVERRIDES + sweep.get("overrides", []) + sweep["params"]
    )


rule run_sweep:
    """A Hydra multirun; results/sweeps/<name>/index.json lists its jobs (specedge.analysis.sweep)."""
    input:
        card=PAIR_CARD,
    output:
        directory("results/sweeps/{sweep}"),
    params:
        args=sweep_args,
    resources:
        **slurm_resources(runtime_factor=4),
    log:
        "logs/sweeps/{sweep}.log",
    benchmark:
        "benchmarks/sweeps/{sweep}.tsv"
    shell:
        "{SPECEDGE} run -m hydra.sweep.dir={output} {params.args} > {log} 2>&1"
