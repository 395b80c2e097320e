"""The code's layers (DEVELOPERS guide): each module imports only its own layer or those below.

Two packages: the library (charrnn/), which the CLI and the app both use and which never imports the
app, and the web app (webapp/ and app.py above it), whose tabs never import one another. No module
of either imports another module's private (underscore) names.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = [
    ["text", "cancel", "prompts"],
    ["vocab"],
    ["model", "batching", "device", "memory", "events"],
    ["sampling", "evaluate", "checkpoint", "hub", "card", "originality", "step", "config",
     "budget", "heldout", "runstate"],
    ["engine", "beam", "export", "samples"],
    ["schedule", "finish", "train", "autosize", "finetune", "distributed", "insight", "cost", "runplan", "startup"],
    ["cli"],
]
WEBAPP = [
    ["limits", "render"],
    ["i18n", "session"],
    ["components", "jobs", "budget"],
    ["inputs"],
    ["models", "insight_box", "upload_box", "browser_runtime"],
    ["generate_tab", "train_tab", "neurons_tab", "compare_tab"],
    ["app"],
]
TABS = set(WEBAPP[-2])
LEVEL = {package: {name: level for level, names in enumerate(layers) for name in names}
         for package, layers in (("charrnn", LIBRARY), ("webapp", WEBAPP))}


def sources(package: str) -> dict[str, Path]:
    """The package's modules by name (app.py counts as the web app's top module)."""
    files = {p.stem: p for p in (ROOT / package).glob("*.py") if p.stem not in ("__init__", "__main__")}
    return files | ({"app": ROOT / "app.py"} if package == "webapp" else {})


def run_time_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node of a file but those under `if TYPE_CHECKING:` (imports for type checkers only)."""
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
                 for stmt in block.body for node in ast.walk(stmt)}
    return [node for node in ast.walk(tree) if id(node) not in type_only]


def project_imports(path: Path) -> set[tuple[str, str]]:
    """The (package, module) pairs of charrnn and webapp a file imports at run time (app.py counts as webapp's)."""
    found = set()
    for node in run_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.ImportFrom) and node.module == "app") or \
                (isinstance(node, ast.Import) and any(alias.name == "app" for alias in node.names)):
            found.add(("webapp", "app"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LEVEL:
            package, *rest = node.module.split(".")
            found |= {(package, rest[0])} if rest else {(package, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {tuple(alias.name.split(".")[:2]) for alias in node.names
                      if alias.name.split(".")[0] in LEVEL and "." in alias.name}
    return found


def private_names_used(path: Path) -> list[str]:
    """Underscore names this file takes from another project module: `from m import _x` or `m._x`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules, used = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LEVEL:
            for alias in node.names:
                if alias.name.startswith("_"):
                    used.append(f"from {node.module} import {alias.name}")
                if node.module in LEVEL and (ROOT / node.module / f"{alias.name}.py").is_file():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name.split(".")[0] in LEVEL}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if ast.unparse(node.value) in modules:
                used.append(ast.unparse(node))
    return used


def test_every_module_has_a_layer():
    for package in LEVEL:
        assert set(sources(package)) == set(LEVEL[package]), f"a new module of {package} needs its place in its layers"


def test_nothing_low_imports_anything_high():
    upward = [f"{package}.{name} (layer {LEVEL[package][name]}) imports {other}.{imported} "
              f"(layer {LEVEL[other][imported]})"
              for package in LEVEL for name, path in sources(package).items()
              for other, imported in project_imports(path)
              if other == package and LEVEL[other][imported] > LEVEL[package][name]]
    assert not upward, upward


def test_the_library_never_imports_the_web_app():
    found = [f"charrnn.{name} imports webapp.{imported}" for name, path in sources("charrnn").items()
             for other, imported in project_imports(path) if other == "webapp"]
    assert not found, found


def test_no_tab_imports_another():
    files = sources("webapp")
    found = [f"{name} imports {imported}" for name in TABS for other, imported in project_imports(files[name])
             if other == "webapp" and imported in TABS and imported != name]
    assert not found, found


def test_no_module_uses_another_modules_private_names():
    found = {f"{package}/{path.name}": used for package in LEVEL for path in sources(package).values()
             if (used := private_names_used(path))}
    assert not found, found
