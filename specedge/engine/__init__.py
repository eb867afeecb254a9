"""The forward path: loading models (`models`), the preallocated KV pool and its one forward
(`kv_cache`), cached prompt KV (`prefill_cache`) and the prompts as token ids (`datasets`).

May import: base (specedge.LAYERS, checked by tests/test_layout.py)."""
