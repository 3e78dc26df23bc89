"""The layout holds: no import cycle between labeling, training and worker, and worker imports no
app module at import time (the apps enqueue by task name through worker.queue).

The graph is read from the source with `ast`, imports inside functions included, so an import
that Django's lazy loading or a function body hides still counts.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labeling", "training", "worker", "feedback_site")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imports(path: Path, modules: set[str], *, top_level_only: bool = False) -> set[str]:
    """The project modules a file imports (`from a.b import c` counts a.b.c when c is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    return {name: _imports(path, modules) - {name} for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    # worker.tasks imports the services it runs inside each task's body.
    assert "training.rounds.runner" in graph["worker.tasks"]
    assert "worker.queue" in graph["training.rounds.services"]


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_apps_enqueue_by_name_and_never_import_the_tasks_module():
    importers = sorted(name for name, targets in _graph().items() if "worker.tasks" in targets)
    assert importers == []


def test_worker_imports_no_app_module_at_import_time():
    sources = _sources()
    modules = set(sources)
    for name, path in sources.items():
        if name.startswith("worker"):
            app_imports = {m for m in _imports(path, modules, top_level_only=True) if m.split(".")[0] != "worker"}
            assert app_imports == set(), f"{name} imports {app_imports} at import time"


def test_loading_the_tasks_loads_no_app_module():
    script = (
        "import sys, worker.tasks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('labeling', 'training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_lazy_imports_are_not_hiding_a_cycle_between_the_apps():
    graph = _graph()
    labeling_to_training = sorted(
        (name, target)
        for name, targets in graph.items()
        if name.startswith("labeling")
        for target in targets
        if target.startswith("training")
    )
    assert labeling_to_training == []  # labeling knows nothing of training; training calls labeling's services
