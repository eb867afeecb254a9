"""Building models offline, as a library the build commands share: the trainer and its
learning-rate schedule (`trainer`), the losses (`losses`), the batched greedy decoder over the
KV pool (`decoding`), the pair's measures (`measures`: agreement, forward times, SpecExec
tokens per target forward) and a build's folder, card and fresh-process measuring (`builds`).

May import: base, engine, algorithm, serving (specedge.LAYERS, checked by
tests/test_layout.py)."""
