"""The layout: layers as folders, imports only running downwards, no circles anywhere.

The import graph is built with ``ast`` from every ``import`` in ``gencli/``, those inside
functions and under ``TYPE_CHECKING`` included: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gencli"

#: Layers from the bottom up; a module may import its own layer or any layer below it.
LAYERS = [
    (
        "base",
        ("gencli.errors", "gencli.audience", "gencli._version", "gencli.limits", "gencli.native"),
    ),
    ("io", ("gencli.io",)),
    ("density", ("gencli.density",)),
    ("fitting", ("gencli.fitting",)),
    ("evaluate", ("gencli.evaluate",)),
    ("reports", ("gencli.reports",)),
    ("curse", ("gencli.curse",)),
    ("engines", ("gencli.engines",)),
    ("jobs", ("gencli.jobs", "gencli.job_paths", "gencli.questions", "gencli.estimators")),
    ("cli", ("gencli.cli",)),
    ("api", ("gencli",)),
    ("entry", ("gencli.__main__",)),
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the gencli modules it imports (the deepest module each name refers to)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    deeper = f"{base}.{alias.name}"
                    targets.append(deeper if deeper in modules else base)
        found = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
        graph[name] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the most specific prefix that names ``module``."""
    best, best_length = None, -1
    for rank, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = rank, len(prefix)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


MODULES = module_names()
GRAPH = import_graph(MODULES)


def test_the_graph_sees_imports_inside_functions() -> None:
    # gencli.jobs imports gencli.fitting.fitter only inside fit_file (so score never loads it)
    assert "gencli.fitting.fitter" in GRAPH["gencli.jobs"]
    assert "gencli.reports.files" in GRAPH["gencli.jobs"]


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_there_is_no_import_circle_anywhere() -> None:
    assert circles(GRAPH) == []


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_only_run_downwards() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_nothing_in_the_library_imports_the_command_line() -> None:
    users = [
        module
        for module, targets in GRAPH.items()
        if not (module == "gencli.cli" or module.startswith("gencli.cli."))
        and module != "gencli.__main__"
        and any(t == "gencli.cli" or t.startswith("gencli.cli.") for t in targets)
    ]
    assert users == []


@pytest.mark.parametrize(
    "layer", ["io", "density", "fitting", "reports", "curse", "engines", "cli"]
)
def test_each_layer_is_a_folder_with_a_docstring(layer: str) -> None:
    init = PACKAGE / layer / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says what the layer is for"


def test_no_module_is_past_the_size_where_it_asks_to_be_split() -> None:
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 450
    }
    assert long == {}


def test_the_command_line_imports_no_heavy_library() -> None:
    code = (
        "import sys, gencli.cli.main; "
        "heavy = {'numpy', 'scipy', 'matplotlib', 'sklearn', 'pandas', 'pyarrow'} & "
        "{m.split('.')[0] for m in sys.modules}; print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_public_api_is_listed_and_visible_before_it_is_loaded() -> None:
    code = (
        "import sys, gencli; names = dir(gencli); "
        "print(all(n in names for n in gencli.__all__), 'sklearn' in sys.modules, "
        "'gencli.fitting.fitter' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
    import gencli

    # Tab completion offers the API, not what gencli/__init__.py imports for itself.
    public = [name for name in dir(gencli) if not name.startswith("_")]
    assert sorted(public) == sorted(n for n in gencli.__all__ if not n.startswith("_"))

    assert set(gencli.__all__) == {
        "AutoDensity",
        "DensityModel",
        "GaussianMixtureDensity",
        "GencliError",
        "GencliWarning",
        "KernelDensity",
        "__version__",
        "fit",
        "load",
    }
    assert all(getattr(gencli, name) is not None for name in gencli.__all__)
    assert callable(gencli.fit) and callable(gencli.load)
