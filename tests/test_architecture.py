"""The package's shape, checked from the source: rooms import only earlier rooms, and nothing in a circle.

Imports are read with ``ast`` (module-level and inside functions alike), so an import hidden in a
function to dodge a cycle is caught too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prunebench"
# The rooms in data-flow order (docs/DESIGN.md): each may import only rooms listed before it.
ROOMS = (
    "errors",
    "environment",
    "config",
    "rundir",
    "models",
    "tasks",
    "supernet",
    "extract",
    "hardware",
    "search",
    "profiling",
    "report",
    "deploy",
    "pipeline",
    "sweep",
    "cli",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every prunebench module ``path`` imports, with its line. ``from pkg import name`` imports ``pkg`` (its
    ``__init__`` runs) and, when ``name`` is a module, ``pkg.name`` too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("prunebench")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunebench"):
            found.append((node.module, node.lineno))
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    found.append((f"{node.module}.{alias.name}", node.lineno))
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself


def test_every_module_is_in_a_room():
    assert {_room(m) for m in _modules()} - {None} <= set(ROOMS)


def test_rooms_import_only_earlier_rooms():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        here = _room(module)
        for target, line in _imports(path, modules):
            there = _room(target)
            if here is None or there is None:
                continue
            if ROOMS.index(there) > ROOMS.index(here):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports {target} ({there})")
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: sorted({t for t, _ in _imports(path, modules) if t in modules}) for m, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


# --- the run directory's layout has one owner ----------------------------------------------------------


def _layout_names() -> tuple[set[str], set[str]]:
    """(file names, folder names) of the run directory's layout, as ``rundir`` declares them."""
    from prunebench import rundir

    files = {
        rundir.RUN_FILE, rundir.ENVIRONMENT_FILE, rundir.CHECKPOINT_META, rundir.TRAINER_STATE, rundir.TRAINING_LOG,
        rundir.PIPELINE_FILE, rundir.NAS_SETTINGS_FILE, rundir.SYNE_TUNE_LOG, rundir.ModelsDir.INDEX,
        rundir.SearchDir.META, rundir.SearchDir.LOG, rundir.SearchDir.TEST_LOG, rundir.ProfileDir.TABLE,
        rundir.ProfileDir.TABLE_CSV, rundir.ProfileDir.PARTS, rundir.ProfileDir.SCORES, rundir.ProfileDir.SCORES_PARTS,
        rundir.ProfileDir.CALIBRATION, rundir.CompareDir.SUMMARY, rundir.ReportDir.HTML, rundir.ReportDir.MARKDOWN,
        rundir.ReportDir.MANIFEST,
        *(f"{name}.parquet" for name in (*rundir.SearchDir.TABLES, *rundir.CompareDir.TABLES)),
        *(f"{name}.csv" for name in (*rundir.SearchDir.TABLES, *rundir.CompareDir.TABLES)),
        rundir.ProfileDir.SCORES.replace(".parquet", ".csv"),
    }  # fmt: skip
    folders = {
        rundir.CHECKPOINT_DIR, rundir.SEARCH_DIR, rundir.PROFILE_DIR, rundir.COMPARE_DIR, rundir.REPORT_DIR,
        rundir.SYNE_TUNE_DIR, rundir.SearchDir.MODELS, rundir.ReportDir.FIGURES,
    }  # fmt: skip
    return files, folders


def _spells(text: str, name: str) -> bool:
    """``name`` as a word of ``text`` ("report.html" is not in "report.html.j2", a template's name)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?!\.?\w)", text) is not None


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef))]
    return {
        id(node.body[0].value)
        for node in nodes
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }


def test_layout_names_are_spelt_only_in_the_run_directory_module():
    """No code outside ``rundir.py`` spells a file name of the layout in a string, nor joins a layout folder
    name onto a path (``run / "profile"``); docstrings may describe the layout."""
    files, folders = _layout_names()
    found = []
    for module, path in _modules().items():
        if module == "prunebench.rundir":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                found += [f"{where} spells {name!r}" for name in files if _spells(node.value, name)]
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                right = node.right
                if isinstance(right, ast.Constant) and right.value in folders:
                    found.append(f"{where} joins {right.value!r} onto a path")
    assert not found, "layout names outside rundir.py:\n" + "\n".join(sorted(found))


# --- a thin command line ------------------------------------------------------------------------------------

MAX_COMMAND_LINES = 40


def test_every_cli_command_body_is_short():
    """Each command parses, calls one API function and prints: its body (docstring aside) is at most 40 lines."""
    path = PACKAGE / "cli.py"
    tree = ast.parse(path.read_text(), str(path))
    commands = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command" for d in node.decorator_list)
    ]
    assert len(commands) >= 12
    long = {}
    for node in commands:
        body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # without the docstring
        lines = node.end_lineno - body[0].lineno + 1
        if lines > MAX_COMMAND_LINES:
            long[node.name] = lines
    assert not long, f"command bodies over {MAX_COMMAND_LINES} lines: {long}"
