"""The package's layers (specedge.LAYERS): no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

from specedge import LAYERS, PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "specedge"
FORWARDERS = {"run", "simulate", "report", "profile", "bench", "loadtest", "roofline"}


def _layer(module: str) -> str | None:
    """``specedge.<layer>.…`` -> the layer; a top-level name (the package, a forwarder) -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every specedge module ``path`` imports, anywhere in it (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("specedge")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("specedge"):
            # `from specedge.serving import launcher` imports specedge.serving.launcher
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(
        ".__init__")


def test_every_module_lives_in_a_layer() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == FORWARDERS, "a top-level module is a forwarder or belongs in a layer"
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(LAYERS)
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "May import:" in doc, f"specedge/{layer}/__init__.py says what it holds"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        own = _layer(module)
        if own is None:  # the package root and the forwarders stand above every layer
            continue
        for line, target in _imports(path):
            theirs = _layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(own):
                upward.append(f"{path.relative_to(PROJECT_ROOT)}:{line}: {own} imports "
                              f"{target} ({theirs})")
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader catches the three spellings, inside functions too."""
    path = tmp_path / "m.py"
    path.write_text("import specedge.analysis.metrics\n"
                    "def f():\n    from specedge.serving import launcher\n"
                    "    from specedge.engine.kv_pool import KVPool\n")
    assert [t for _, t in _imports(path)] == ["specedge.analysis.metrics",
                                              "specedge.serving.launcher",
                                              "specedge.engine.kv_pool.KVPool"]
    assert [_layer(t) for _, t in _imports(path)] == ["analysis", "serving", "engine"]


MAX_LINES = 400


def test_no_module_is_longer_than_400_lines() -> None:
    """Generated protobuf stubs aside; a long module is a part waiting to be split out."""
    lengths = {str(p.relative_to(PROJECT_ROOT)): len(p.read_text().splitlines())
               for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name}
    too_long = {m: n for m, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
