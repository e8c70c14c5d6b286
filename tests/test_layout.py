"""The package layout (docs/ARCHITECTURE.md, "Stages"): one package per pipeline stage, imports point down
the stages, and no module imports itself back through a circle.

Every ``import`` in ``vab/`` counts, at module level or inside a function: a lazy import
is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "vab"

#: the stages in pipeline order; a module may import its own stage and those before it
STAGES = [
    {"errors", "utils", "files", "filenames", "safetext", "config", "media", "sharding", "precision", "weights",
     "workers"},
    {"codecs", "visual"},
    {"data"},
    {"model"},
    {"checkpoint"},
    {"training"},
    {"finetuning"},
    {"generation"},
    {"evaluation"},
    {"baselines"},
    {"search"},
    {"demo", "app"},
    {"commands", "cli", "__main__", "__init__"},
]


def _module_name(path: Path) -> str:
    parts = ("vab",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The vab modules `path` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import vab.x.y as z` names a module; keep the longest known
                name = name.rpartition(".")[0]
            if name.startswith("vab"):
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _stage(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for rank, names in enumerate(STAGES):
        if key in names:
            return rank
    raise AssertionError(f"{module}: not in any stage of tests/test_layout.py (add it where it belongs)")


def test_every_module_belongs_to_a_stage():
    for module in _graph():
        _stage(module)


def test_the_model_knows_nothing_of_its_users():
    """The networks import only the first stage and the codecs / frame encoders: no data,
    checkpoint, training, generation, baseline or command code."""
    allowed = STAGES[0] | {"codecs", "visual", "model"}
    bad = [f"{m} imports {t}" for m, targets in _graph().items() if m.startswith("vab.model")
           for t in targets if t.split(".")[1] not in allowed]
    assert not bad, bad


def test_imports_point_down_the_stages():
    bad = [f"{m} (stage {_stage(m)}) imports {t} (stage {_stage(t)})"
           for m, targets in _graph().items() for t in targets if _stage(t) > _stage(m)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_beside_a_package_of_the_same_name():
    clashes = [p for p in ROOT.rglob("*.py") if p.with_suffix("").is_dir()]
    assert not clashes, clashes


@pytest.mark.parametrize("package", sorted(p.parent.name for p in ROOT.glob("*/__init__.py")))
def test_every_stage_package_says_what_it_takes_and_gives(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 20, f"vab/{package}/__init__.py needs a docstring: what the stage takes in and gives out"


def test_no_command_imports_another():
    """Shared logic lives in the stage it belongs to, not in another command's module."""
    bad = [f"{m} imports {t}" for m, targets in _graph().items() if m.startswith("vab.commands.")
           for t in targets if t.startswith("vab.commands.") and t != m]
    assert not bad, bad


#: function-level imports of vab modules; each says why on its line or the one above. This
#: number may only go down: import at the top of the module
MAX_LAZY_VAB_IMPORTS = 4


def _lazy_imports() -> list[tuple[Path, ast.stmt, bool]]:
    """(file, import statement, imports a vab module) for every import inside a function."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                        found.append((path, node, any(n == "vab" or n.startswith("vab.") for n in names)))
    return found


def test_imports_sit_at_the_top_and_each_lazy_one_says_why():
    lazy = _lazy_imports()
    ours = [f"{p.relative_to(ROOT.parent)}:{n.lineno}" for p, n, is_vab in lazy if is_vab]
    assert len(ours) <= MAX_LAZY_VAB_IMPORTS, f"{len(ours)} function-level vab imports (at most " \
        f"{MAX_LAZY_VAB_IMPORTS}): {ours}"
    silent = []
    for path, node, _ in lazy:
        lines = path.read_text().splitlines()
        row = node.lineno - 1  # the comment may stand above a run of imports
        while row > 0 and lines[row - 1].strip().startswith(("import ", "from ")) and "#" not in lines[row]:
            row -= 1
        here, above = lines[row], lines[row - 1] if row > 0 else ""
        if "#" not in here and not above.strip().startswith("#"):
            silent.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "imports inside functions without a comment saying why:\n" + "\n".join(silent)
