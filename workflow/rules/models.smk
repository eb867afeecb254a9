rule build_models:
    """Embedded tiny target+draft pair, trained offline from the Shakespeare/Milton corpus."""
    output:
        card="models/tiny/card.json",
    params:
        overrides=hydra_overrides(config["models"]["build_overrides"]),
    resources:
        **slurm_resources(gpus=False, runtime_factor=2),
    log:
        "logs/build_models.log",
    benchmark:
        "benchmarks/build_models.tsv"
    shell:
        "{PY} -m specedge.build_models out_dir=models/tiny hydra.run.dir=logs/build_models "
        "{params.overrides} > {log} 2>&1"
