"""The direction of imports (README, "Architecture"), read from the source with ``ast``.

    contracts  <-  traffic_processing  <-  backend, spark.streaming  <-  traffic_pipeline (Airflow)
    (bottom)       (the processing library)                               (also backend.db)

and the tooling (stack, e2e, testing, benchmarks) above all of them, never imported by product
code. Contracts (stream names, messages, settings, the assets path) are imported from
``contracts`` only: an import of a contract through the processing library fails here.
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

# Folder -> the import name of its top-level package.
PACKAGES = {
    "contracts": "contracts",
    "spark/traffic_processing": "traffic_processing",
    "backend": "backend",
    "spark/streaming": "spark.streaming",
    "airflow/traffic_pipeline": "traffic_pipeline",
    "airflow/dags": "dags",
}
TOOLING = ("stack", "e2e", "testing", "benchmarks", "tests")
# What each product package may import from this repository (besides itself).
ALLOWED = {
    "contracts": set(),
    "traffic_processing": {"contracts"},
    "backend": {"contracts", "traffic_processing"},
    "spark.streaming": {"contracts", "traffic_processing"},
    "traffic_pipeline": {"contracts", "traffic_processing", "backend"},
    "dags": {"contracts", "traffic_pipeline"},
}
# The only third-party imports contracts may make: it is the bottom of the graph.
CONTRACTS_THIRD_PARTY = {"pydantic", "pydantic_settings"}
OURS = ("contracts", "traffic_processing", "backend", "spark", "traffic_pipeline", *TOOLING)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name
    names: tuple[str, ...]  # from X import names; () for `import X`


def _package_of(module: str) -> str | None:
    """The product package (a key of ALLOWED) or the tooling folder an import name belongs to."""
    for name in sorted(ALLOWED, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    root = module.split(".")[0]
    if root == "spark":
        return "spark"
    return root if root in TOOLING else None


def _imports(path: Path, package: str, source: str | None = None) -> list[Import]:
    """Every import of a module file (``source``: its text, else read), function-level ones
    included, relative ones resolved from where the file sits."""
    folder = next(f for f, p in PACKAGES.items() if p == package)
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    parts = [*package.split("."), *path.relative_to(REPO / folder).with_suffix("").parts]
    # A module's package is its folder; a package's (__init__) is itself.
    here = parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append(Import(path, node.lineno, module, tuple(a.name for a in node.names)))
    return found


def product_imports() -> list[tuple[str, Import]]:
    out = []
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            if "tests" in path.relative_to(REPO / folder).parts:
                continue
            out += [(package, imp) for imp in _imports(path, package)]
    return out


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(REPO)}:{imp.line}"


def direction_violations(imports: list[tuple[str, Import]]) -> list[str]:
    bad = []
    for package, imp in imports:
        target = _package_of(imp.module)
        if target is None or target == package:
            continue
        if target not in ALLOWED.get(package, set()):
            bad.append(f"{_where(imp)}: {package} imports {imp.module} ({target} is not below it)")
    return bad


def contracts_third_party_violations(imports: list[tuple[str, Import]]) -> list[str]:
    bad = []
    for package, imp in imports:
        root = imp.module.split(".")[0]
        if package != "contracts" or root in OURS or root in sys.stdlib_module_names:
            continue
        if root not in CONTRACTS_THIRD_PARTY:
            bad.append(f"{_where(imp)}: contracts imports {imp.module}")
    return bad


def _contract_modules() -> list[ModuleType]:
    return [
        importlib.import_module("contracts" if f.stem == "__init__" else f"contracts.{f.stem}")
        for f in sorted((REPO / "contracts").glob("*.py"))
    ]


def _contract_objects() -> tuple[dict[int, str], set[str]]:
    """(id() of every contracts module and public class/function defined there -> its name,
    the names of the constants defined there: literals are compared by name, not identity)."""
    objects: dict[int, str] = {}
    constants: set[str] = set()
    for module in _contract_modules():
        objects[id(module)] = module.__name__
        for attr, value in vars(module).items():
            if attr.startswith("_") or isinstance(value, ModuleType):
                continue
            if attr.isupper():
                constants.add(attr)
            elif getattr(value, "__module__", None) == module.__name__:
                objects[id(value)] = f"{module.__name__}.{attr}"
    return objects, constants


def contract_through_library_violations(imports: list[tuple[str, Import]]) -> list[str]:
    """An import, into code above the library, of something the library only re-exports from
    contracts (a class, a function, a contracts module, or a constant of the same name)."""
    objects, constants = _contract_objects()
    bad = []
    for package, imp in imports:
        if package in ("contracts", "traffic_processing") or _package_of(imp.module) != "traffic_processing":
            continue
        module = importlib.import_module(imp.module)
        for name in imp.names or ("",):
            value = getattr(module, name, None) if name else module
            if value is None and name:
                value = importlib.import_module(f"{imp.module}.{name}")
            if id(value) in objects or name in constants:
                origin = objects.get(id(value), f"contracts (a constant named {name})")
                bad.append(f"{_where(imp)}: {imp.module}.{name} is {origin}: import it from contracts")
    return bad


def test_contracts_sit_at_the_bottom_and_imports_point_down():
    imports = product_imports()
    assert len(imports) > 200  # the walk found the code
    problems = direction_violations(imports) + contracts_third_party_violations(imports)
    assert not problems, "\n".join(problems)


def test_no_contract_is_imported_through_the_processing_library():
    problems = contract_through_library_violations(product_imports())
    assert not problems, "\n".join(problems)


# The checks themselves: each must catch the import it exists for.
DIRECTION, THIRD_PARTY, THROUGH_LIBRARY = "direction", "third party", "through the library"
CHECKS = {
    DIRECTION: direction_violations,
    THIRD_PARTY: contracts_third_party_violations,
    THROUGH_LIBRARY: contract_through_library_violations,
}


@pytest.mark.parametrize(
    ("package", "source", "check"),
    [
        ("contracts", "from traffic_processing import processor", DIRECTION),
        ("contracts", "import backend.settings", DIRECTION),
        ("contracts", "import numpy", THIRD_PARTY),
        ("traffic_processing", "from backend.db import models", DIRECTION),
        ("traffic_processing", "from testing import synthetic", DIRECTION),
        ("backend", "from traffic_pipeline import producer", DIRECTION),
        ("backend", "from stack import run", DIRECTION),
        ("spark.streaming", "from backend.db import models", DIRECTION),
        ("spark.streaming", "from .stages import detect_stage", None),
        ("spark.streaming", "from traffic_processing.roi import RoiFilter", None),
        ("traffic_pipeline", "from .producer import produce_frames", None),
        # a contract reached through the processing library (which imports these names)
        ("backend", "from traffic_processing.processor import Violation", THROUGH_LIBRARY),
        ("backend", "from traffic_processing import processor", None),
        ("backend", "from traffic_processing.config import DEFAULT_SPEED_LIMIT_KMH", THROUGH_LIBRARY),
    ],
)
def test_each_check_catches_what_it_is_for(package, source, check):
    folder = next(f for f, p in PACKAGES.items() if p == package)
    imports = [(package, imp) for imp in _imports(REPO / folder / "fake.py", package, source)]
    if check is None:  # allowed: no check objects
        assert not any(c(imports) for c in CHECKS.values()), source
    else:
        assert CHECKS[check](imports), f"{source!r} in {package} was not caught"
