"""The commands a user runs that compose everything below: an experiment (`run`), the benchmarks
(`bench`), the load generator (`loadtest`) and building the embedded pairs (`corpus`,
`build_models`, `distill`, `convert`).

May import: every layer below (specedge.LAYERS, checked by tests/test_layout.py)."""
