"""Foundations: the run's configuration schema (`config`), the run directory's record schema
(`records`) and the GPU architecture tables (`roofline`).

May import: nothing else of specedge (specedge.LAYERS, checked by tests/test_layout.py)."""
