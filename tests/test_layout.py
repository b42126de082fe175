"""The package's shape: no import circle, layers import one way, no module over ~400 lines.

Every import counts, including lazy ones inside functions and ``TYPE_CHECKING`` ones: a
circle that only type checkers see is still a circle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "lookalike"
MAX_LINES = 420

# Which top-level parts each part may import (besides itself, ``errors`` and the package
# root). The pipeline is ingest -> models -> store -> search; dedup, server and cli sit beside.
ALLOWED = {
    "errors": set(),
    "store": set(),
    "models": {"ingest"},  # models read images with ingest.decode
    "ingest": {"models", "store"},
    "search": {"ingest", "models", "store"},
    "dedup": {"ingest", "models", "store", "report"},  # report: shared image helpers
    "creation": {"models", "store"},  # a new collection folder for a model
    # Milvus/Redis: publishing a folder's changes, searching, a replica's collection
    "distributed": {"ingest", "models", "store", "search"},
    "collection": {"ingest", "models", "store", "search", "dedup", "creation", "distributed"},
    "neighbors": {"collection", "search", "store"},
    "samples": set(),
    "report": {"search"},
    "evaluation": {"collection", "ingest", "models", "store", "search"},
    "client": {"search"},  # the HTTP client: the Hit shape, no server code
    "server": {"collection", "ingest", "models", "store", "search", "dedup", "distributed"},
    "cli": {
        "collection",
        "distributed",
        "ingest",
        "models",
        "store",
        "search",
        "dedup",
        "server",
        "neighbors",
        "samples",
        "report",
        "evaluation",
    },
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (resolved to module names)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("lookalike"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lookalike")}
    found.discard(name)
    return {m for m in found if _exists(m)}


def _from_targets(path: Path) -> list[str]:
    """The ``from X import`` module names of ``path`` that point into the package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            out.append(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lookalike"):
            out.append(node.module or "")
    return out


def test_every_import_names_a_real_module() -> None:
    """Lazy imports inside functions too: a moved module must leave none dangling."""
    dangling = [
        f"{_module_name(p)}: {target}"
        for p in PKG.rglob("*.py")
        for target in _from_targets(p)
        if not _exists(target)
    ]
    assert dangling == []


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (
        PKG.parent / rel / "__init__.py"
    ).is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circle() -> None:
    graph = _graph()
    # Package __init__ files importing their own children are not circles of roles.
    edges = {
        m: {t for t in targets if not (m.endswith(t.rpartition(".")[0]) and _is_init(m))}
        for m, targets in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert circles == []


def _is_init(module: str) -> bool:
    return (PKG.parent / Path(*module.split(".")) / "__init__.py").is_file()


def test_parts_import_one_way() -> None:
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        if part not in ALLOWED:
            continue
        for target in targets:
            other = _part(target)
            if other in ("", part, "errors") or other not in ALLOWED:
                continue
            if other not in ALLOWED[part]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_part_is_known() -> None:
    parts = {_part(_module_name(p)) for p in PKG.rglob("*.py")} - {"", "__main__"}
    assert parts <= set(ALLOWED)


def test_no_module_over_about_400_lines() -> None:
    long = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
