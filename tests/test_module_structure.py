"""The package's shape: every module imports, no two modules import each other, ARNs come from aws_facts.

The import graph is read from the source (`ast`), deferred imports inside functions included: a
cycle that only closes when a function runs is still a cycle, and breaks the day someone hoists
the import. Imports under `if TYPE_CHECKING:` never run and are left out.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runbook_lib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield every import statement that can run, at module level or inside functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _owner(dotted: str) -> str | None:
    """Return the runbook_lib module a dotted name lives in, or None outside the package."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imported_modules(name: str) -> set[str]:
    """Return the runbook_lib modules one module imports (`from pkg import module` names the module)."""
    path = MODULES[name]
    found: set[str | None] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(_owner(alias.name) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.add(submodule if submodule in MODULES else _owner(base))
    return {module for module in found if module is not None and module != name}


def import_graph() -> dict[str, set[str]]:
    """Return, for each runbook_lib module, the runbook_lib modules it imports."""
    return {name: _imported_modules(name) for name in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle per back edge of a depth-first walk (none when the graph is acyclic)."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_the_import_graph_has_no_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]


# A string literal naming a partition: what the ARN builders of aws_facts are for.
PARTITIONED_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:")
# Literals that may stay, each with why. Regexes that accept any partition (`arn:aws[a-z-]*:`)
# do not match the pattern and need no entry.
ALLOWED_ARN_LITERALS: dict[str, set[str]] = {
    # The expected forms named in messages of parameter problems, next to their regexes.
    "runbook_lib.policies": {
        "a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id> (not an alias)",
        "an IAM role ARN, arn:aws:iam::<account>:role/<name>",
        "an SNS topic ARN, arn:aws:sns:<region>:<account>:<name>",
        "an EventBridge rule ARN, arn:aws:events:<region>:<account>:rule/<name>",
    },
}


def _partitioned_literals(path: Path) -> set[str]:
    """Return every string literal (f-string parts included) of a module that names a partition."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    texts = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return {text for text in texts if PARTITIONED_ARN.search(text)}


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"runbook_lib.aws_facts"}))
def test_no_module_but_aws_facts_spells_a_partition_in_an_arn(module: str) -> None:
    found = _partitioned_literals(MODULES[module])
    assert found <= ALLOWED_ARN_LITERALS.get(module, set()), (
        f"{module} spells ARNs with a partition: {sorted(found - ALLOWED_ARN_LITERALS.get(module, set()))}; "
        "build them with runbook_lib.aws_facts"
    )


def test_every_allowed_arn_literal_is_still_there() -> None:
    stale = {
        module: literals - _partitioned_literals(MODULES[module])
        for module, literals in ALLOWED_ARN_LITERALS.items()
    }
    assert not any(stale.values()), f"allowed literals no longer in the code, remove them from the list: {stale}"


def test_the_partition_check_sees_f_strings() -> None:
    tree_source = 'name = "x"\nspelled = f"arn:aws:iam::{name}:root"\n'
    texts = {node.value for node in ast.walk(ast.parse(tree_source)) if isinstance(node, ast.Constant)}
    assert any(PARTITIONED_ARN.search(str(text)) for text in texts)
