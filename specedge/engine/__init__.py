"""The forward path: loading models (`models`); the preallocated KV pool and the one forward
every method makes (`kv_pool`), the queries' shapes (`query_plan`), the eager, static and
CUDA-graph runners (`runners`) and what attention sees (`attention`); cached prompt KV
(`prefill_cache`) and the prompts as token ids (`datasets`).

May import: base (specedge.LAYERS, checked by tests/test_layout.py)."""
