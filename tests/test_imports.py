"""The package's import structure: no circles among module-level imports, and no module
imports another module's private names."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xcrfilter"


def _modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module, node):
    """Absolute names imported by an ``Import``/``ImportFrom`` node of ``module``."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append((sub, None) if sub in MODULES else (base, alias.name))
    return out


def _imports(module, top_level_only):
    """``[(imported module, imported name or None, line)]`` of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = []

    def walk(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not top_level_only:
                    nodes.extend(n for n in ast.walk(node)
                                 if isinstance(n, (ast.Import, ast.ImportFrom)))
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    walk(getattr(node, field, []) or [])

    walk(tree.body)
    return [(target, name, node.lineno) for node in nodes
            for target, name in _resolve(module, node)]


def _graph(top_level_only):
    graph = {}
    for module in MODULES:
        deps = set()
        for target, _, _ in _imports(module, top_level_only=top_level_only):
            # importing a.b.c runs a and a.b first
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in MODULES and name != module:
                    deps.add(name)
        graph[module] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "all"])
def test_no_import_cycles(top_level_only):
    """No circles among module-level imports, nor among imports made inside functions."""
    graph = _graph(top_level_only)
    # a package importing its own submodules is no circle: its __init__ runs first
    for module, deps in graph.items():
        graph[module] = {d for d in deps
                         if not (MODULES[d].name == "__init__.py" and module.startswith(d + "."))}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_across_modules(module):
    bad = []
    for target, name, line in _imports(module, top_level_only=False):
        if not target.startswith("xcrfilter"):
            continue
        private_module = any(p.startswith("_") and not p.startswith("__")
                             for p in target.split(".")[1:])
        private_name = name is not None and name.startswith("_") and not name.startswith("__")
        if private_module or private_name:
            # a package's private helper module is private to that package
            owner = target.rpartition(".")[0] if private_module else target
            if private_module and module.startswith(owner + ".") or module == owner:
                if not private_name:
                    continue
            bad.append(f"line {line}: {target}{'.' + name if name else ''}")
    assert bad == []
