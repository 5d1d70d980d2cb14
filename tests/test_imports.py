"""Layering: no import cycles between our modules, and packages import only downward.

Every project .py file (outside tests/ and hidden folders) is parsed with `ast`; every import of one of our
modules counts, also those inside functions (a lazy import is still a dependency, and a lazy import back
up the stack is how cycles hide). `from X import Y` counts as an import of X.Y when that is a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"tests"}  # test code may import anything

# package -> packages it may import (besides itself); train.py and test.py are the "entry" layer
ALLOWED = {
    "util": set(),
    "data": {"util"},
    "models": {"util", "metrics"},  # the re-id model trains the evaluator's network (metrics/reid_net.py)
    "metrics": {"util", "data"},
    "options": {"util", "data", "models"},
    "datasets": {"util", "data"},
    "entry": {"util", "data", "models", "options"},
    "scripts": {"util", "data", "models", "metrics", "options", "datasets", "entry"},
}
ENTRY_MODULES = {"train", "test"}


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` outside tests/ and hidden folders."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in SKIPPED or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        names = list(parts[:-1]) + ([] if path.stem == "__init__" else [path.stem])
        if names:
            modules[".".join(names)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (`a.b.func` -> `a.b`), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `module` imports anywhere in its file (top level, functions, branches)."""
    is_package = path.stem == "__init__"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # `from X import Y` imports X.Y when that is a module, else the name Y from X
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules) if target else None
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # the graph has a few hundred nodes: recursion depth is no concern
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer(module: str) -> str:
    top = module.split(".")[0]
    return "entry" if top in ENTRY_MODULES else top


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b` for every import between packages that ALLOWED does not permit."""
    bad = []
    for source in sorted(graph):
        for target in sorted(graph[source]):
            src, dst = layer(source), layer(target)
            if src != dst and dst not in ALLOWED.get(src, set()):
                bad.append(f"{source} -> {target}")
    return bad


def test_no_import_cycles():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and {"util.io", "data.annotations", "metrics.ssim"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_packages_import_only_downward():
    graph = import_graph(ROOT)
    unknown = sorted({layer(m) for m in graph} - set(ALLOWED))
    assert not unknown, f"packages missing from ALLOWED: {unknown}"
    bad = upward_edges(graph)
    assert not bad, "imports against the layering (see ALLOWED):\n" + "\n".join(bad)


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    files = {
        "util/__init__.py": "",
        "util/helpers.py": "def f():\n    from data.reader import read  # lazy, still counts\n",
        "data/__init__.py": "",
        "data/reader.py": "from data import writer\n\ndef read():\n    pass\n",
        "data/writer.py": "from .reader import read\n",
        "data/clean.py": "from util.helpers import f\nimport numpy\n",
        "tests/test_x.py": "import data.reader, util.helpers\n",
        ".hidden/x.py": "import data.reader\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph == {"util": set(), "util.helpers": {"data.reader"}, "data": set(),
                     "data.reader": {"data.writer"}, "data.writer": {"data.reader"},
                     "data.clean": {"util.helpers"}}
    assert cycles(graph) == [["data.reader", "data.writer"]]
    assert upward_edges(graph) == ["util.helpers -> data.reader"]
