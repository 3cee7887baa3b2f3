"""Every plugin, built-in or third-party, imports only exporter.export_types from Exporter, never Flask."""
import ast
import pathlib

import pytest

PLUGINS = pathlib.Path(__file__).parents[2] / "plugins"
SAMPLE = pathlib.Path(__file__).parent / "jsonlines"


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}


@pytest.mark.parametrize("package", [PLUGINS / "postback" / "exporter_postback", PLUGINS / "ftp" / "exporter_ftp",
                                     PLUGINS / "s3" / "exporter_s3", SAMPLE / "exporter_jsonlines"],
                         ids=lambda p: p.name)
def test_a_plugin_imports_only_the_contract(package):
    sources = list(package.glob("*.py"))
    assert sources
    for path in sources:
        modules = imported_modules(path)
        assert {m for m in modules if m.split(".")[0] == "exporter"} <= {"exporter.export_types"}, path.name
        assert not {m for m in modules if m.split(".")[0] == "flask"}, path.name
