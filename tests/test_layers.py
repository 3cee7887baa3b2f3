"""The house's layering (docs/architecture.md): a folder per part, and imports between parts run
top to bottom only, never back up; inside a part, modules import each other without a circle.
The way tests/plugins/test_plugin_imports.py checks the plugins."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[1] / "exporter"

# Parts, top to bottom. A part may import only parts of lower layers (and its own modules).
# A layer of several parts: none of them imports another. The app factory
# (exporter/__init__.py) wires every part; the entry points that build an app when none is
# given (cli, jobs) may call it, and nothing else may.
FOUNDATION = {"config", "extensions", "models", "security", "audit", "export_types", "mapping", "catalog", "cards",
              "windows", "body_templates", "response_rules"}
LAYERS = [
    {"__main__"},
    {"cli"},
    {"web"},
    {"jobs"},
    {"intake"},
    {"flows"},
    {"files"},
    {"profiles", "ops"},
    {"delivery"},
    FOUNDATION,
]
ENTRY_POINTS = {"cli", "jobs", "__main__"}
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
# What every part stands on is one layer; its modules are told apart by name, so a circle
# among them is caught like one inside a part.
PURE = {"mapping", "catalog", "cards", "windows", "body_templates", "response_rules", "profiles.customer_types",
        "profiles.matching", "delivery.engine", "delivery.limits"}


def module_of(path, root=PACKAGE):
    """The dotted module of a file below the package: 'delivery.drain', 'web.profiles', 'models'."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def part_of(module):
    return module.split(".")[0]


def imports(path, root=PACKAGE):
    """The exporter modules a file imports, lazily (inside functions) or not, as dotted names
    ('__init__' for the app factory)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(path.relative_to(root).parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif (node.module or "").split(".")[0] == "exporter":
                base = []
            else:
                continue
            module = node.module.split(".") if node.module else []
            if not node.level:
                module = module[1:]
            target = base + module
            for alias in node.names:  # `from .delivery import drain` names a module; `import create_app`, not
                name = target + [alias.name]
                found.add(".".join(name) if _is_module(root, name) else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            found.update(".".join(a.name.split(".")[1:]) or "__init__"
                         for a in node.names if a.name.split(".")[0] == "exporter")
    return found


def _is_module(root, parts):
    path = root.joinpath(*parts)
    return path.with_suffix(".py").exists() or path.is_dir()


def sources(root=PACKAGE):
    return [p for p in root.rglob("*.py") if "migrations" not in p.parts]


def graph(root=PACKAGE):
    """Each module's imports of other modules. A part's __init__ that wires its own modules (web's
    register_blueprints) is left out of that part's edges, as the app factory is of every part's."""
    edges = {}
    for path in sources(root):
        me = module_of(path, root)
        found = imports(path, root) - {me}
        if path.name == "__init__.py":
            found = {m for m in found if not m.startswith(me + ".")}
        edges[me] = found
    return edges


def violations(root=PACKAGE):
    wrong = []
    for me, others in graph(root).items():
        if me == "__init__":
            continue  # the app factory wires every part
        for other in sorted(others):
            if other == "__init__":
                if me not in ENTRY_POINTS:
                    wrong.append(f"{me} imports the app factory")
            elif part_of(other) != part_of(me) and RANK[part_of(other)] <= RANK[part_of(me)] \
                    and not (part_of(me) in FOUNDATION and part_of(other) in FOUNDATION):
                wrong.append(f"{me} imports {other}, which is not below it")
    return wrong + circles(root)


def circles(root=PACKAGE):
    """Modules that reach themselves through their imports (inside a part, or in the foundation)."""
    edges = graph(root)
    found, done = [], set()

    def visit(module, path):
        if module in path:
            found.append(" -> ".join(path[path.index(module):] + [module]))
            return
        if module in done:
            return
        for other in sorted(edges.get(module, ())):
            if other != "__init__" and other in edges:
                visit(other, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    return [f"circle: {c}" for c in found]


def test_every_part_has_a_layer():
    assert {part_of(module_of(p)) for p in sources()} - {"__init__"} <= set(RANK)


def test_the_top_holds_only_what_every_part_stands_on_and_the_entry_points():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == FOUNDATION | ENTRY_POINTS


def test_each_part_says_what_it_owns_and_what_it_may_import():
    for part in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        if part.name == "migrations":
            continue
        doc = ast.get_docstring(ast.parse((part / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"exporter/{part.name}/__init__.py says nothing of what it may import"


def test_imports_run_down_the_layers_only():
    assert violations() == []


def test_pure_modules_import_neither_flask_nor_the_database():
    for module in PURE:
        path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"flask", "flask_sqlalchemy", "sqlalchemy"}, module
        assert not {m for m in imports(path) if part_of(m) in {"extensions", "models"}}, module


def test_the_check_catches_an_import_that_runs_back_up(tmp_path):
    """The drain calling up into daily files, lazily, inside a function; a
    module of the foundation that reaches up into a part; and two views that import each other."""
    for folder in ("files", "delivery", "web"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "delivery" / "drain.py").write_text("def send():\n    from ..files import daily_files\n")
    (tmp_path / "files" / "daily_files.py").write_text("")
    (tmp_path / "models.py").write_text("from exporter.delivery import drain\n")
    (tmp_path / "web" / "profiles.py").write_text("def edit():\n    from . import mappings\n")
    (tmp_path / "web" / "mappings.py").write_text("from .profiles import edit\n")
    assert sorted(violations(tmp_path)) == [
        "circle: web.mappings -> web.profiles -> web.mappings",
        "delivery.drain imports files.daily_files, which is not below it",
        "models imports delivery.drain, which is not below it",
    ]


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


def test_a_module_over_400_lines_says_why_at_its_top():
    long = []
    for path in sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        doc = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > 400 and "Over 400 lines" not in doc:
            long.append(f"{path.relative_to(PACKAGE)}: {len(lines)} lines")
    assert long == []
