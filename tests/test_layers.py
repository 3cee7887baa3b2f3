"""The core's layering (docs/architecture.md): imports run top to bottom, never back up, so the
engine has no circle. The way tests/plugins/test_plugin_imports.py checks the plugins."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[1] / "exporter"

# Top to bottom. A module may import only modules of lower layers. The app factory
# (exporter/__init__.py) wires everything; the entry points that build an app when none is
# given (cli, jobs) may call it, and nothing else may.
LAYERS = [
    {"__main__"},
    {"cli"},
    {"web"},
    {"jobs", "metrics", "intake_api"},
    {"intake", "profiles_io", "stats", "tokens", "health", "replay", "retention", "admins"},
    {"profiles"},
    {"dispatch"},
    {"drain"},
    {"workers"},
    {"daily_files", "circuit", "admission"},
    {"sending", "schedule", "audit", "kept_copies"},
    {"mapping", "matching", "models", "engine", "keyset"},
    {"extensions", "export_types"},
    {"customer_types", "queue", "security", "config", "supervisor", "windows", "intake_sql"},
    {"catalog"},
]
ENTRY_POINTS = {"cli", "jobs", "__main__"}
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def module_of(path, root=PACKAGE):
    parts = path.relative_to(root).with_suffix("").parts
    return "__init__" if parts == ("__init__",) else parts[0]


def imports(path, root=PACKAGE):
    """The exporter modules a file imports, lazily (inside functions) or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(root).parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if node.module else [base + [a.name] for a in node.names]
            elif (node.module or "").split(".")[0] == "exporter":
                target = node.module.split(".")[1:]
                names = [target] if target else [[a.name] for a in node.names]
            else:
                continue
            # `from . import create_app` names something of the package's __init__, not a module
            found.update(n[0] if n and _is_module(root, n[0]) else "__init__" for n in names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] if "." in a.name else "__init__"
                         for a in node.names if a.name.split(".")[0] == "exporter")
    return found


def _is_module(root, name):
    return (root / f"{name}.py").exists() or (root / name).is_dir() or name in RANK


def sources(root=PACKAGE):
    return [p for p in root.rglob("*.py") if "migrations" not in p.parts]


def test_every_module_has_a_layer():
    assert {module_of(p) for p in sources()} - {"__init__"} <= set(RANK)


def violations(root=PACKAGE):
    wrong = []
    for path in sources(root):
        me = module_of(path, root)
        for other in imports(path, root) - {me}:
            if me == "__init__":
                continue  # the app factory wires every layer
            if other == "__init__":
                if me not in ENTRY_POINTS:
                    wrong.append(f"{me} imports the app factory")
                continue
            if RANK[other] <= RANK[me]:
                wrong.append(f"{me} imports {other}, which is not below it")
    return wrong


def test_imports_run_down_the_layers_only():
    assert violations() == []


def test_the_check_catches_an_import_that_runs_back_up(tmp_path):
    """The old circle: daily files calling back into the sender, lazily, inside a function."""
    (tmp_path / "daily_files.py").write_text("def build():\n    from . import drain\n")
    (tmp_path / "queue.py").write_text("from exporter import jobs\n")
    assert sorted(violations(tmp_path)) == ["daily_files imports drain, which is not below it",
                                            "queue imports jobs, which is not below it"]


def test_the_migrations_have_one_head():
    """Two branches that each added a migration must be chained at merge: `exporter migrate` refuses two heads."""
    versions = PACKAGE / "migrations" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        values = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
        revisions.add(values["revision"])
        parents.add(values.get("down_revision"))
    assert len(revisions - parents) == 1
