"""House rules, checked on the source: no import circle in the package, and no module (tests and benchmarks
included) uses another module's private names."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hf_layer_tokclf"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found |= {c for c in [target, *(f"{target}.{a.name}" for a in node.names)] if c in known}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
    return found - {name}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for other in sorted(edges[node]):
            if state.get(other) == 1:
                return [*stack[stack.index(other) :], other]
            if other not in state and (cycle := visit(other)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_circle():
    known = package_modules()
    edges = {name: imported_modules(path, known) for name, path in known.items()}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def private_uses(path: Path) -> list[str]:
    """``from hf_layer_tokclf.x import _y`` and ``x._y`` on a module of the package, outside that module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path) if PACKAGE in path.parents else None
    modules = package_modules()
    bound: dict[str, str] = {}  # local name -> package module (not classes: their _methods may be transformers')
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("hf_layer_tokclf")):
            source = node.module or ""
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and source != own:
                    uses.append(f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name} from {source}")
                if f"{source}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hf_layer_tokclf"):
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            uses.append(f"{path.relative_to(REPO)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return uses


def test_no_module_uses_another_modules_private_names():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    uses = [use for path in files if path.name != "test_layout.py" for use in private_uses(path)]
    assert uses == []


def test_the_private_name_check_sees_both_spellings():
    probe = REPO / "tests" / "_layout_probe.py"
    probe.write_text("from hf_layer_tokclf.files import _LEFTOVER\nimport hf_layer_tokclf.cli as cli\ncli._x\n")
    try:
        assert [use.split(" ", 1)[1] for use in private_uses(probe)] == [
            "imports _LEFTOVER from hf_layer_tokclf.files",
            "uses cli._x",
        ]
    finally:
        probe.unlink()


def test_test_helpers_are_not_in_the_runtime_package():
    assert not (PACKAGE / "testing.py").exists()
