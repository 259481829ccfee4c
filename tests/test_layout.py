"""House rules, checked on the source: no import circle in the package, and no module (tests and benchmarks
included) uses another module's private names."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hf_layer_tokclf"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path, known: dict[str, Path], name: str | None = None) -> set[str]:
    """The package's modules that ``path`` (module ``name``: by default, by its place) imports, at the top or
    inside a function."""
    name = name or module_name(path)
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
    probe.write_text(
        "from hf_layer_tokclf.base.files import _LEFTOVER\nimport hf_layer_tokclf.cli.main as cli\ncli._x\n"
    )
    try:
        assert [use.split(" ", 1)[1] for use in private_uses(probe)] == [
            "imports _LEFTOVER from hf_layer_tokclf.base.files",
            "uses cli._x",
        ]
    finally:
        probe.unlink()


def test_test_helpers_are_not_in_the_runtime_package():
    assert not (PACKAGE / "testing.py").exists()


# The wings: each subpackage's __init__ says what it may import ("May import: base, model."); the package's
# root modules (__init__, __main__) sit above them all.
WINGS = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))


def allowed_wings(wing: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8"))) or ""
    lines = [line for line in doc.splitlines() if line.startswith("May import:")]
    assert len(lines) == 1, f"{wing}/__init__.py's docstring says what it may import in one 'May import:' line"
    listed = lines[0].removeprefix("May import:").strip().rstrip(".")
    return set() if listed == "nothing of the package" else {name.strip() for name in listed.split(",")}


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in WINGS) else None


def test_every_module_lives_in_a_wing():
    loose = [name for name in package_modules() if wing_of(name) is None]
    assert sorted(loose) == ["hf_layer_tokclf", "hf_layer_tokclf.__main__"]


def imports_reaching_up(modules: dict[str, Path]) -> list[str]:
    """The imports of a module from a wing its own wing does not list (or from a root module)."""
    order = {wing: allowed_wings(wing) for wing in WINGS}
    known = package_modules()
    found = []
    for name, path in modules.items():
        if (wing := wing_of(name)) is None:
            continue
        for target in imported_modules(path, known, name):
            other = wing_of(target)
            if (other is None and target != "hf_layer_tokclf") or other not in (None, wing, *order[wing]):
                found.append(f"{name} imports {target}")
    return found


def test_the_wings_are_in_order():
    """The wings' own 'May import' lines form an order (no circle), and no module imports from a wing its
    wing does not list: a lower wing never reaches up."""
    order = {wing: allowed_wings(wing) for wing in WINGS}
    assert all(lower <= set(WINGS) for lower in order.values()), order
    assert find_cycle(order) is None
    assert imports_reaching_up(package_modules()) == []


def test_the_wing_check_sees_an_import_from_a_higher_wing(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..cli import main\n")
    assert sorted(imports_reaching_up({"hf_layer_tokclf.base.probe": probe})) == [
        "hf_layer_tokclf.base.probe imports hf_layer_tokclf.cli",
        "hf_layer_tokclf.base.probe imports hf_layer_tokclf.cli.main",
    ]


# Rooms of a size one can hold: a module over ~500 lines or a function over ~60 (argparse declarations aside)
# is two ideas.
MODULE_LINES, FUNCTION_LINES = 500, 60


def declares_arguments(function: ast.FunctionDef) -> bool:
    """Whether most of a function's statements are argparse declarations (add_argument and its kin)."""
    calls = [
        node
        for node in function.body
        if isinstance(node, ast.Expr | ast.Assign)
        and isinstance(call := node.value, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in {"add_argument", "add_argument_group", "add_mutually_exclusive_group", "add_parser"}
    ]
    return len(calls) * 2 >= len(function.body)


def oversize(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    shown = path.relative_to(REPO) if REPO in path.parents else path.name
    found = [f"{shown}: {len(text.splitlines())} lines"] if len(text.splitlines()) > MODULE_LINES else []
    for node in ast.walk(ast.parse(text)):
        length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and length > FUNCTION_LINES:
            found += [] if declares_arguments(node) else [f"{shown}:{node.lineno} {node.name}() {length} lines"]
    return found


def test_no_module_or_function_is_oversize():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in oversize(path)]
    assert found == []


def test_the_size_check_sees_a_long_function_but_not_a_parser(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    parser = "\n".join(f"    parser.add_argument('--x{i}')" for i in range(61))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def long():\n{body}\n\n\ndef parser_of(parser):\n{parser}\n")
    assert oversize(probe) == ["probe.py:1 long() 62 lines"]


def test_argument_parsing_lives_with_the_cli():
    outside = [
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts and "argparse" in path.read_text(encoding="utf-8")
    ]
    assert outside == []


def renames_files(path: Path) -> list[str]:
    """Where ``path`` renames a file into place or makes a temporary one (the steps of an atomic write)."""
    names = {"replace", "rename", "renames", "mkstemp", "NamedTemporaryFile"}
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.func.attr}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
        if isinstance(node.func.value, ast.Name) and node.func.value.id in {"os", "tempfile"}
    ]


def test_one_atomic_write_implementation():
    """Files are put in place by base/files.py alone (atomic_writer, publish, create_whole, swapped_folder: the
    renames of outputs.atomic_folder)."""
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in renames_files(path)]
    assert found and {line.split(":")[0] for line in found} == {"hf_layer_tokclf/base/files.py"}


def readme_wings() -> list[str]:
    """The wings the README's layout section lists, in its order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Repository layout", 1)[1].split("```", 2)[1]
    return [line.split("/")[0].strip() for line in tree.splitlines() if re.match(r"  \w+/ ", line)]


def test_the_readme_layout_is_the_tree_of_wings_lowest_first():
    listed = readme_wings()
    assert sorted(listed) == WINGS
    assert all(allowed_wings(wing) <= set(listed[:place]) for place, wing in enumerate(listed)), listed


def test_each_wing_names_its_modules():
    """A wing's __init__ is its map: it names every module (and folder) it holds."""
    unnamed = []
    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8"))) or ""
        for entry in sorted((PACKAGE / wing).iterdir()):
            name = entry.stem if entry.suffix == ".py" else entry.name
            if entry.name != "__init__.py" and (entry.suffix == ".py" or (entry / "__init__.py").exists()):
                unnamed += [] if re.search(rf"\b{name}\b", doc) else [f"{wing}/{entry.name}"]
    assert unnamed == []
