"""The README's Python examples run as written."""

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
