"""SpecEdge: edge-assisted speculative decoding as a declarative experiment pipeline."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
