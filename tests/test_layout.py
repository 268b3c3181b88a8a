"""The package's layout: one subpackage per concern, each importing only from the layers below
it, no import cycles, a dozen modules at most at the top, and no test helpers in the wheel."""

import ast
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "age_gender"
# Each subpackage's layer: a module may import from its own subpackage, from lower layers and
# from the top-level modules (layer 0), never from a higher layer or a sibling of its layer.
LAYERS = {"": 0, "faces": 1, "data": 2, "models": 3, "estimators": 4, "training": 5, "apps": 5,
          "cli": 6}  # fmt: skip


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def concern(module: str) -> str:
    """The subpackage a module belongs to ('' for the top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (anywhere in it)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    found = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "age_gender"
            ):  # fmt: skip
                for alias in node.names:  # `from age_gender.faces import crops` names a module
                    joined = f"{node.module}.{alias.name}"
                    targets.add(joined if joined in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("age_gender")}
        found[module] = targets - {module}
    return found


def test_every_import_goes_down_the_layers_without_cycles():
    graph = imports()
    wrong = []
    for module, targets in graph.items():
        if module == "age_gender":  # the facade: `from age_gender import FaceAnalyzer`
            continue
        here = concern(module)
        for target in targets:
            there = concern(target)
            if there != here and (LAYERS[there] > LAYERS[here] or LAYERS[there] == LAYERS[here]):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong
    visiting, done = set(), set()

    def visit(module, trail):
        if module in visiting:
            raise AssertionError(f"import cycle: {' -> '.join([*trail, module])}")
        if module in done or module == "age_gender":
            return
        visiting.add(module)
        for target in graph.get(module, ()):
            visit(target, [*trail, module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


def test_a_dozen_modules_at_most_beside_the_subpackages_each_saying_what_it_holds():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    for package in (path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring and ("Imports" in docstring or package.name == "cli"), package.name


@pytest.mark.slow
def test_the_wheel_holds_no_test_helpers(tmp_path):
    """Built offline (no build isolation: the test extra installs setuptools)."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
               "-w", str(tmp_path), str(REPO)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("age_gender-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "age_gender/apps/web/index.html" in names and "age_gender/conf/config.yaml" in names
    assert not [name for name in names if "testing" in name or "support" in name or "tests" in name]
