"""SpecEdge: edge-assisted speculative decoding as a declarative experiment pipeline.

The package is layered, foundations first; a module imports from its own layer and the ones
below it, never from a layer above (tests/test_layout.py reads the imports and checks it):

- ``base``: configuration schema, record schema, architecture tables;
- ``engine``: models, the KV pool and its forward, prompts;
- ``algorithm``: tree, drafting, verification, proactive drafting, rounds;
- ``serving``: protocol, scheduler, server, edge, launcher, baselines;
- ``training``: the trainer, losses, decoder, measures and cards of model building;
- ``analysis``: metrics, simulator, projection, profiles, reports;
- ``commands``: run, benchmarks, load test, building the embedded pairs.

``specedge COMMAND`` (``__main__``) is the one entry point; the top-level modules ``run``,
``simulate``, ``report``, ``profile``, ``bench``, ``loadtest`` and ``roofline`` forward
``python -m specedge.<name>`` to it.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
DATA_DIR = PROJECT_ROOT / "specedge" / "data"
ARCHITECTURES_DIR = DATA_DIR / "architectures"  # model configs for model.weights=random
PROFILES_DIR = DATA_DIR / "profiles"  # latency profiles for specedge.analysis.simulate

# bottom first
LAYERS = ("base", "engine", "algorithm", "serving", "training", "analysis", "commands")
