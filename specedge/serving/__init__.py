"""The serving system: the gRPC wire format (`protocol`), the pipeline-aware scheduler
(`scheduler`), admission, the server and edge processes (`server`, `edge`), the emulated link
(`network`), TLS and tokens (`security`), the in-process baselines (`baselines`) and the Fabric
/ SLURM launcher (`launcher`).

May import: base, engine, algorithm (specedge.LAYERS, checked by tests/test_layout.py)."""
