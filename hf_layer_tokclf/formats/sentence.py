"""`Sentence`: one sentence of words and its labels, remembering the file and line it was read from, so that every
`DataError` about it can point there. Every sentence reader (`conll`, `records`, `loading`) makes them."""

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sentence"]


@dataclass
class Sentence:
    """One sentence of words, with its word labels and where it was read from.

    Args:
        tokens: The words.
        labels: One label per word, or `None` for unlabeled input.
        source: The file path or dataset name the sentence was read from.
        line: 1-based line where the sentence starts: a CoNLL file's line of the first token, a
            JSON Lines file's line of the record, a dataset's row index + 1.
        token_lines: `True` when every token sits on its own line (CoNLL), so that token ``i`` is
            on line ``line + i``; otherwise every token is reported at ``line``.
        fields: The whole JSON lines record it was read from, where it is written back (`iter_word_lists`).
    """

    tokens: list[str]
    labels: list[str] | None
    source: str
    line: int
    token_lines: bool = False
    fields: dict[str, Any] = field(default_factory=dict)

    def where(self, index: int | None = None) -> str:
        """``"<source>, line <n>"`` for the sentence, or for its token number ``index``."""
        line = self.line + index if self.token_lines and index is not None else self.line
        return f"{self.source}, line {line}"
