rule bench:
    """`snakemake --cores 1 bench`: the benchmarks (not part of reports/all, to keep it short)."""
    input:
        "results/bench/spec.json",
        "results/bench/edge.json",


rule bench_method:
    """`specedge bench {kind}`: spec (tokens per target forward and wall time:
    target greedy vs HF assisted vs our SpecExec) or edge (SpecEdge with and without
    proactive drafting vs server-only, each a real run)."""
    input:
        card=PAIR_CARD,
    output:
        table="results/bench/{kind}.json",
    wildcard_constraints:
        kind="spec|edge",
    params:
        overrides=hydra_overrides(RUN_OVERRIDES),
    resources:
        **slurm_resources(),
    log:
        "logs/bench/{kind}.log",
    benchmark:
        "benchmarks/bench/{kind}.tsv"
    shell:
        "{SPECEDGE} bench {wildcards.kind} {params.overrides} --out {output.table} "
        "> {log} 2>&1"


rule profile:
    """Forward latency of the target and draft over batch x new tokens x prefix, on the
    configured device and forward path (`specedge profile`); JSON for the
    performance model. Set `profile: overrides:` in workflow/config.yaml to time other models
    (model.weights=random needs no weights) or devices."""
    input:
        card=PAIR_CARD,
    output:
        table="results/profile/profile.json",
    params:
        overrides=hydra_overrides(RUN_OVERRIDES + config["profile"]["overrides"]),
    resources:
        **slurm_resources(),
    log:
        "logs/profile/profile.log",
    benchmark:
        "benchmarks/profile/profile.tsv"
    shell:
        "{SPECEDGE} profile {params.overrides} profile.out={output.table} > {log} 2>&1"
