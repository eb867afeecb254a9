wildcard_constraints:
    baseline="specedge|server_only|auto_batch",


rule run_baseline:
    """One experiment run (`python -m specedge.run`) on the embedded default pair."""
    input:
        card=rules.build_models.output.card,
    output:
        # every baseline writes outputs.jsonl; its other JSONL differs (specedge.records)
        outputs="results/runs/{baseline}/outputs.jsonl",
    params:
        overrides=hydra_overrides(config["runs"]["overrides"]),
    log:
        "logs/runs/{baseline}.log",
    benchmark:
        "benchmarks/runs/{baseline}.tsv"
    shell:
        "{PY} -m specedge.run baseline={wildcards.baseline} "
        "hydra.run.dir=results/runs/{wildcards.baseline} {params.overrides} > {log} 2>&1"
