rule bench:
    """`snakemake --cores 1 bench`: the benchmarks (not part of reports/all, to keep it short)."""
    input:
        "results/bench/spec.json",
        "results/bench/edge.json",


rule bench_spec:
    """Tokens per target forward and wall time: target greedy vs HF assisted vs our SpecExec."""
    input:
        card=rules.build_models.output.card,
    output:
        table="results/bench/spec.json",
    params:
        overrides=hydra_overrides(config["runs"]["overrides"]),
    log:
        "logs/bench/spec.log",
    benchmark:
        "benchmarks/bench/spec.tsv"
    shell:
        "{PY} -m specedge.bench spec {params.overrides} --out {output.table} > {log} 2>&1"


rule bench_edge:
    """SpecEdge (with and without proactive drafting) vs server-only, each a real run."""
    input:
        card=rules.build_models.output.card,
    output:
        table="results/bench/edge.json",
    params:
        overrides=hydra_overrides(config["runs"]["overrides"]),
    log:
        "logs/bench/edge.log",
    benchmark:
        "benchmarks/bench/edge.tsv"
    shell:
        "{PY} -m specedge.bench edge {params.overrides} --out {output.table} > {log} 2>&1"
