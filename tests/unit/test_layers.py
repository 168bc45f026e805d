"""The wings of engine/ and what each may import: the folder says what a module may import.

Every module of engine/ and schemas/ is read with `ast` (module-level imports, imports inside functions and
inside `if TYPE_CHECKING:` blocks alike) and its imports are checked against `WINGS`; engine/'s top must hold
only the wings; and the modules must not import each other in a cycle. Adding a wing is one line of `WINGS`.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# The checked tree, and the top-level names that are the project's own (anything else is stdlib or third party).
CHECKED = ("engine", "schemas")
PROJECT = ("engine", "schemas", "tests", "bench")

SERVICES = ("faust", "mode", "kafka", "aiokafka", "rocksdict", "aiohttp", "prometheus_client")


@dataclass(frozen=True)
class Wing:
    """A folder (or one file) of the checked tree and what its modules may import."""

    path: str  # relative to the root, "/"-separated; the longest path that holds a module is its wing
    may_import: tuple[str, ...]  # the project modules it may import (each with its submodules); nothing else
    never: tuple[str, ...] = ()  # third-party modules it must not import (each with its submodules) ...
    except_for: tuple[str, ...] = ()  # ... except these (each with its submodules)
    rule: str = ""

    def allows(self, module: str) -> bool:
        if _top(module) in PROJECT:
            return any(_within(module, prefix) for prefix in self.may_import)
        if any(_within(module, prefix) for prefix in self.except_for):
            return True
        return not any(_within(module, prefix) for prefix in self.never)


WINGS = (
    Wing(
        "engine/loyalty",
        ("engine.loyalty", "engine.errors", "schemas"),
        SERVICES,
        rule="the pure loyalty core imports only itself, engine.errors and schemas; no Faust, Kafka or I/O service",
    ),
    Wing("schemas", ("schemas",), ("faust", "mode", "kafka", "aiokafka"), rule="the event contracts stand alone"),
    Wing(
        "engine/offline",
        ("engine.offline", "engine.loyalty", "engine.errors", "engine.settings", "schemas"),
        SERVICES,
        rule="offline is file in, files out: the loyalty core, settings and schemas; no Faust, Kafka or service",
    ),
    Wing(
        "engine/broker",
        ("engine.broker", "engine.loyalty", "engine.errors", "engine.settings", "schemas"),
        ("faust", "mode"),
        except_for=("faust.auth",),
        rule="broker is Kafka as a client; of Faust only faust.auth",
    ),
    Wing(
        "engine/stream",
        ("engine.stream", "engine.broker", "engine.loyalty", "engine.errors", "engine.settings", "schemas"),
        rule="stream may import broker, loyalty, settings and schemas; never offline or cli",
    ),
    Wing("engine/stream/faust_fixes", (), rule="faust_fixes are leaves: only stdlib and third party"),
    Wing("engine/cli", ("engine", "schemas"), rule="the command may import any of engine and schemas"),
    Wing("engine/errors.py", (), rule="the exception root imports nothing of the project"),
    Wing("engine/settings.py", ("engine.errors", "schemas"), rule="settings import only engine.errors and schemas"),
    Wing("engine/__init__.py", (), rule="the package's top imports nothing of the project"),
)

# What engine/ may hold at its top besides the wing folders.
TOP_FILES = ("__init__.py", "errors.py", "settings.py", "py.typed")
IGNORED = ("__pycache__",)

TOP_RULE = "top of engine/"
CYCLE_RULE = "no import cycle"


@dataclass(frozen=True)
class Import:
    file: Path  # relative to the root
    line: int
    statement: str  # the statement (unparsed from the tree), e.g. "from engine.stream.app import create_app"
    module: str  # what it imports, resolved: "engine.stream.app"


@dataclass(frozen=True)
class Violation:
    rule: str  # a wing's path, TOP_RULE or CYCLE_RULE
    message: str

    def __str__(self) -> str:
        return self.message


def _top(module: str) -> str:
    return module.partition(".")[0]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _module_name(relative: Path) -> str:
    parts = relative.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the checked tree, by dotted name (a package by its own name, for its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for top in CHECKED:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            if "__pycache__" not in relative.parts:
                modules[_module_name(relative)] = relative
    return modules


@cache
def _installed_module(name: str) -> bool:
    """Whether `name` is a module outside the project, looked up on disk (nothing is imported)."""
    head, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(head)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [Path(place) for place in spec.submodule_search_locations or ()]
    for part in rest:
        packages = [place / part for place in places if (place / part).is_dir()]
        if not packages:
            files = (place / f"{part}{suffix}" for place in places for suffix in importlib.machinery.all_suffixes())
            return part == rest[-1] and any(file.is_file() for file in files)
        places = packages
    return True


def _is_module(name: str, modules: dict[str, Path]) -> bool:
    return name in modules if _top(name) in PROJECT else _installed_module(name)


def imports_of(relative: Path, module: str, tree: ast.Module, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import in the file, wherever it stands, resolved to the module it loads."""
    package = module if relative.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        statement = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(relative, node.lineno, statement, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            resolved = dict.fromkeys(
                f"{base}.{alias.name}" if alias.name != "*" and _is_module(f"{base}.{alias.name}", modules) else base
                for alias in node.names
            )
            for name in resolved:
                yield Import(relative, node.lineno, statement, name)


def all_imports(root: Path) -> dict[str, list[Import]]:
    """The imports of every module of the checked tree, by module."""
    modules = project_modules(root)
    found: dict[str, list[Import]] = {}
    for module, relative in modules.items():
        tree = ast.parse((root / relative).read_text(encoding="utf-8"), filename=str(relative))
        found[module] = list(imports_of(relative, module, tree, modules))
    return found


def wing_of(relative: Path, wings: tuple[Wing, ...] = WINGS) -> Wing | None:
    """The wing a file belongs to: the longest wing path that is the file or one of its folders."""
    text = relative.as_posix()
    holding = [wing for wing in wings if text == wing.path or text.startswith(wing.path + "/")]
    return max(holding, key=lambda wing: len(wing.path), default=None)


def layer_violations(root: Path, wings: tuple[Wing, ...] = WINGS) -> list[Violation]:
    """Each import a module's wing does not allow, and each module that belongs to no wing."""
    violations: list[Violation] = []
    modules = project_modules(root)
    for module, imports in all_imports(root).items():
        relative = modules[module]
        wing = wing_of(relative, wings)
        if wing is None:
            violations.append(Violation(TOP_RULE, f"{relative}: belongs to no wing (add it to WINGS or move it)"))
            continue
        for found in imports:
            if not wing.allows(found.module):
                violations.append(
                    Violation(
                        wing.path,
                        f"{found.file}:{found.line}: `{found.statement}` imports {found.module}: "
                        f"{wing.path} may not ({wing.rule}; allowed from the project: "
                        f"{', '.join(wing.may_import) or 'nothing'})",
                    )
                )
    return violations


def stray_entries(root: Path, wings: tuple[Wing, ...] = WINGS) -> list[Violation]:
    """What engine/'s top holds besides the wing folders and its few files."""
    folders = {
        wing.path.split("/")[1]
        for wing in wings
        if wing.path.startswith("engine/") and wing.path.count("/") == 1 and not wing.path.endswith(".py")
    }
    allowed = {*folders, *TOP_FILES, *IGNORED}
    return [
        Violation(TOP_RULE, f"engine/{entry.name}: engine/ holds only {', '.join(sorted(allowed - set(IGNORED)))}")
        for entry in sorted((root / "engine").iterdir())
        if entry.name not in allowed or (entry.name in folders and not entry.is_dir())
    ]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            step = next(successors, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str] | None:
    """The shortest chain start -> ... -> start inside one component (breadth first)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for step in sorted(graph[node] & within):
            if step == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [*reversed(chain), start]
            if step not in parent:
                parent[step] = node
                queue.append(step)
    return None


def import_cycles(root: Path) -> list[Violation]:
    """Each cycle among the modules of the checked tree: for every module caught in one, its shortest cycle."""
    imports = all_imports(root)
    graph = {
        module: {found.module for found in found_list if found.module in imports}
        for module, found_list in imports.items()
    }
    where = {
        (module, found.module): f"{found.file}:{found.line}"
        for module, found_list in imports.items()
        for found in found_list
    }
    cycles: set[tuple[str, ...]] = set()
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        for module in component:
            chain = _shortest_cycle(graph, module, members)
            if chain is not None:
                loop = chain[:-1]
                first = loop.index(min(loop))
                cycles.add(tuple(loop[first:] + loop[:first]))
    violations = []
    for cycle in sorted(cycles):
        chain = [*cycle, cycle[0]]
        edges = ", ".join(where[edge] for edge in itertools.pairwise(chain))
        violations.append(Violation(CYCLE_RULE, f"import cycle {' -> '.join(chain)} (imports at {edges})"))
    return violations


def check_layers(root: Path) -> list[Violation]:
    """Everything wrong with the layering of the tree under `root`."""
    return [*layer_violations(root), *stray_entries(root), *import_cycles(root)]


def _report(violations: list[Violation]) -> str:
    return "\n".join(str(violation) for violation in violations)


@pytest.mark.parametrize("wing", WINGS, ids=[wing.path for wing in WINGS])
def test_each_wing_imports_only_what_it_may(wing: Wing) -> None:
    assert (ROOT / wing.path).exists(), f"{wing.path} is in WINGS but not in the tree"
    violations = [violation for violation in layer_violations(ROOT) if violation.rule == wing.path]
    assert not violations, _report(violations)


def test_every_module_belongs_to_a_wing_and_the_top_of_engine_holds_only_the_wings() -> None:
    violations = [violation for violation in layer_violations(ROOT) if violation.rule == TOP_RULE]
    violations += stray_entries(ROOT)
    assert not violations, _report(violations)


def test_no_import_cycle() -> None:
    violations = import_cycles(ROOT)
    assert not violations, _report(violations)


def test_a_submodule_imported_through_its_package_is_the_submodule() -> None:
    modules = {"engine.loyalty": Path("engine/loyalty/__init__.py"), "engine.loyalty.ladder": Path("x")}
    tree = ast.parse(
        "from engine.loyalty import ladder as steps, CustomerState\n"
        "from . import ladder\n"
        "from .ladder import step\n"
        "if True:\n    import faust.auth\n"
    )
    found = list(imports_of(Path("engine/loyalty/perks.py"), "engine.loyalty.perks", tree, modules))
    assert [(item.line, item.module) for item in found] == [
        (1, "engine.loyalty.ladder"),
        (1, "engine.loyalty"),
        (2, "engine.loyalty.ladder"),
        (3, "engine.loyalty.ladder"),
        (5, "faust.auth"),
    ]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/errors.py": "",
            "engine/settings.py": "from engine.errors import SettingsError\n",
            "engine/extra.py": "",
            "engine/loyalty/__init__.py": "from engine.loyalty import ladder\n",
            "engine/loyalty/ladder.py": "from engine.loyalty import classifications as rules\n",
            "engine/loyalty/classifications.py": "",
            "engine/loyalty/x.py": "import os\n\n\ndef f() -> None:\n    import faust\n",
            "engine/offline/__init__.py": "",
            "engine/offline/y.py": "from engine.stream.app import create_app\n",
            "engine/broker/__init__.py": "",
            "engine/broker/fine.py": "from faust.auth import SASLCredentials\nimport kafka\n",
            "engine/broker/bad.py": "import faust.types\n",
            "engine/stream/__init__.py": "",
            "engine/stream/app.py": "",
            "engine/stream/a.py": "from engine.stream import b\n",
            "engine/stream/b.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from engine.stream.a import A\n"
            ),
            "engine/stream/c.py": "from engine.cli import main\n",
            "engine/stream/faust_fixes/__init__.py": "",
            "engine/stream/faust_fixes/z.py": "import mode\nfrom engine.settings import Settings\n",
            "engine/cli/__init__.py": "from engine.offline import y\nfrom engine.stream import a\n",
            "schemas/__init__.py": "",
            "schemas/events.py": "from engine.errors import EscaleraError\n",
        },
    )
    report = _report(check_layers(tmp_path))
    expected = [
        "engine/loyalty/x.py:5: `import faust` imports faust: engine/loyalty may not",
        "engine/offline/y.py:1: `from engine.stream.app import create_app` imports engine.stream.app: "
        "engine/offline may not",
        "engine/broker/bad.py:1: `import faust.types` imports faust.types: engine/broker may not",
        "engine/stream/c.py:1: `from engine.cli import main` imports engine.cli: engine/stream may not",
        "engine/stream/faust_fixes/z.py:2: `from engine.settings import Settings` imports engine.settings: "
        "engine/stream/faust_fixes may not",
        "schemas/events.py:1: `from engine.errors import EscaleraError` imports engine.errors: schemas may not",
        "engine/extra.py: belongs to no wing",
        "engine/extra.py: engine/ holds only",
        "import cycle engine.stream.a -> engine.stream.b -> engine.stream.a "
        "(imports at engine/stream/a.py:1, engine/stream/b.py:4)",
    ]
    for line in expected:
        assert line in report, f"{line!r} not reported in:\n{report}"
    # Allowed: faust.auth and Kafka in broker, stdlib and third party in the leaves, a package re-exporting
    # its submodule while a sibling imports through the package, anything of the project in cli.
    for file in ("engine/broker/fine.py", "engine/loyalty/__init__.py", "engine/loyalty/ladder.py", "engine/cli"):
        assert file not in report
    assert "z.py:1" not in report
    assert report.count("import cycle") == 1
