rule all:
    input:
        "reports/all",


rule reports_all:
    """Everything the default experiment needs; report rules join here as they land."""
    input:
        card=rules.build_models.output.card,
        runs=expand(rules.run_baseline.output.outputs, baseline=config["runs"]["baselines"]),
        bench=rules.bench_spec.output.table,
    output:
        touch("reports/all"),
