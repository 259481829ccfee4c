"""The README's Python examples run as written, and its figures are the committed results."""

import re

from conftest import REPO


def python_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_quick_start_runs(capsys):
    blocks = python_blocks("Quick start")
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert capsys.readouterr().out.startswith("3\n")
    assert type(namespace["model"]).__name__ == "BertForLayerTokenClassification"
    assert type(namespace["encoder"]).__name__ == "BertLayerModel"


def test_benchmark_tables_are_the_committed_results():
    """Every figure in the README's benchmark tables comes from the JSON in benchmarks/results/."""
    from benchmarks.readme import BLOCKS, block, current_block

    readme = (REPO / "README.md").read_text()
    for name in BLOCKS:
        assert current_block(readme, name) == block(name), f"run `python -m benchmarks.readme` ({name})"
    assert "forward ms, batch 32 x 128" in current_block(readme, "summary")
    assert "ours before" in current_block(readme, "few-data")
