# SpecEdge experiment pipeline. Targets:
#   snakemake --cores 1 reports/all      everything missing: models, runs, reports
#   snakemake --cores 1 models/smollm2/draft/card.json   only the SmolLM2 pair (models.pair:
#                                        smollm2, the default): conversion, shipped draft
#   snakemake --cores 1 distill_draft    the draft distilled again (on request; about 1.5 h)
#   snakemake --cores 1 build_models     only the tiny target/draft pair (models.pair: tiny)
#   snakemake --cores 1 bench            the benchmarks (results/bench/)
#   snakemake --cores 1 reports/projection.html   the performance model: validation against
#                                        real runs here, the paper's setup, protocol, maps
#                                        and sensitivity (simulated)
#   snakemake --cores 1 -f docs/images/comparison.png   README's picture of the comparison report
#   snakemake --cores 1 heldout          the performance model on held-out configurations:
#                                        validation.heldout's seeded draw, run and validated
# Parameters live in workflow/config.yaml (validated by workflow/schemas/config.schema.yaml).

configfile: "workflow/config.yaml"


rule all:
    """A bare `snakemake --cores 1` builds everything reports/all does."""
    default_target: True
    input:
        "reports/all",


# Under the SLURM profile these run in Snakemake's own process (seconds each, no model); every
# other rule is one sbatch job with the resources of `slurm:` in workflow/config.yaml.
localrules:
    all,
    reports_all,
    report_comparison,
    report_sweep,
    report_index,
    readme_screenshot,
    validate,
    heldout_validate,
    heldout,
    long_prompts,
    projection_setup,
    projection_scenarios,
    projection_ablation,
    projection_edges,
    report_projection,
    bench,


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/projection.smk"
include: "workflow/rules/reports.smk"
