"""The paper's algorithm, free of any transport: the token tree (`tree`), SpecExec drafting
(`drafting`), tree verification (`verification`), proactive drafting and its speculation cache
(`proactive`, `outcomes`), adaptive trees (`tree_policy`), one round on an edge (`rounds`) and a
request's state (`sequence`).

May import: base, engine (specedge.LAYERS, checked by tests/test_layout.py)."""
