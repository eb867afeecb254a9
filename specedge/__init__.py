"""SpecEdge: edge-assisted speculative decoding as a declarative experiment pipeline."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
DATA_DIR = PROJECT_ROOT / "specedge" / "data"
ARCHITECTURES_DIR = DATA_DIR / "architectures"  # model configs for model.weights=random
PROFILES_DIR = DATA_DIR / "profiles"  # latency profiles for specedge.simulate
