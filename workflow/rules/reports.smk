RUN_DIRS = [f"results/runs/{b}" for b in config["runs"]["baselines"]]
BENCH = ["results/bench/spec.json"] if config.get("reports", {}).get("include_bench") else []
SWEEP_REPORTS = expand("reports/sweep-{sweep}.html", sweep=list(config.get("sweeps", {})))


rule report_comparison:
    """SpecEdge vs server-only vs auto-batch: one self-contained HTML file."""
    input:
        summaries=[f"{d}/summary.json" for d in RUN_DIRS],
        bench=BENCH,
    output:
        "reports/comparison.html",
    params:
        runs=" ".join(RUN_DIRS),
        bench=" ".join(f"--bench {b}" for b in BENCH),
    log:
        "logs/reports/comparison.log",
    benchmark:
        "benchmarks/reports/comparison.tsv"
    shell:
        "{SPECEDGE} report comparison {params.runs} {params.bench} --out {output} "
        "> {log} 2>&1"


rule report_sweep:
    input:
        "results/sweeps/{sweep}",
    output:
        "reports/sweep-{sweep}.html",
    log:
        "logs/reports/sweep-{sweep}.log",
    benchmark:
        "benchmarks/reports/sweep-{sweep}.tsv"
    shell:
        "{SPECEDGE} report sweep {input} --title 'Sweep: {wildcards.sweep}' "
        "--out {output} > {log} 2>&1"


rule report_index:
    input:
        comparison=rules.report_comparison.output,
        projection=rules.report_projection.output,
        sweeps=SWEEP_REPORTS,
        scenarios=rules.projection_scenarios.output,
    output:
        "reports/index.html",
    log:
        "logs/reports/index.log",
    benchmark:
        "benchmarks/reports/index.tsv"
    shell:
        "{SPECEDGE} report index {input.comparison} {input.projection} {input.sweeps} "
        "--scenarios {input.scenarios} --out {output} "
        "> {log} 2>&1"


rule figures_table:
    """The one table of the main job's measured and simulated figures (docs/figures.md,
    committed after a main job; no other page repeats them)."""
    input:
        summaries=[f"{d}/summary.json" for d in RUN_DIRS],
        validation=rules.validate.output.table,
        heldout=HELDOUT_TABLES,
        scenarios=rules.projection_scenarios.output,
    output:
        "docs/figures.md",
    params:
        runs=" ".join(RUN_DIRS),
        heldout=" ".join(f"{t}" for t in HELDOUT_TABLES),
    log:
        "logs/reports/figures.log",
    shell:
        "{SPECEDGE} report figures {params.runs} --validation {input.validation} "
        "--heldout {params.heldout} --scenarios {input.scenarios} --out {output} > {log} 2>&1"


rule reports_all:
    """The default experiment end to end: models, runs, sweeps, reports, the figures table."""
    input:
        rules.report_index.output,
        rules.figures_table.output,
    output:
        touch("reports/all"),


rule readme_screenshot:
    """README's picture of the comparison report, taken by a headless Chromium (Debian's
    package, which .ci/setup installs): `snakemake --cores 1 -f docs/images/comparison.png`
    after a main job."""
    input:
        rules.report_comparison.output,
    output:
        "docs/images/comparison.png",
    log:
        "logs/reports/readme_screenshot.log",
    shell:
        "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
        "--window-size=1200,1500 --screenshot={output} file://$(realpath {input}) "
        "> {log} 2>&1"
