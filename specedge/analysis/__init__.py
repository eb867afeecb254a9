"""What runs produce, read back: metrics and summaries (`metrics`), sweep indexes (`sweep`), the
discrete-event simulator (`simulate`), the paper-hardware projection (`projection`), forward
profiles (`profile`) and HTML reports (`report`). The reading side (metrics, sweep, simulate,
report) imports no torch, grpc or fabric.

May import: base, engine, algorithm, serving (specedge.LAYERS, checked by tests/test_layout.py)."""
