"""The engine's layers (DEVELOPERS guide): each module imports only its own layer or those below."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [
    ["text", "prompts"],
    ["vocab"],
    ["model", "batching", "device", "events"],
    ["sampling", "evaluate", "checkpoint", "hub", "card", "originality", "step", "config",
     "budget", "heldout", "runstate"],
    ["engine", "beam", "samples"],
    ["train", "autosize", "finetune", "distributed", "insight", "runplan", "startup"],
    ["cli", "limits", "session", "jobs", "handlers", "inspect_views", "compare_views", "components", "i18n"],
    ["app"],
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def charrnn_imports(path: Path) -> set[str]:
    """The charrnn modules a file imports at run time (imports for type checkers only are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
                 for stmt in block.body for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "charrnn":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("charrnn.")}
    return found


def test_every_engine_module_has_a_layer():
    modules = {p.stem for p in (ROOT / "charrnn").glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(LEVEL) - {"app"}, "a new module needs its place in LAYERS"


def test_nothing_low_imports_anything_high():
    files = {p.stem: p for p in (ROOT / "charrnn").glob("*.py") if p.stem in LEVEL} | {"app": ROOT / "app.py"}
    upward = [f"{name} (layer {LEVEL[name]}) imports {imported} (layer {LEVEL[imported]})"
              for name, path in files.items() for imported in charrnn_imports(path) if LEVEL[imported] > LEVEL[name]]
    assert not upward, upward
