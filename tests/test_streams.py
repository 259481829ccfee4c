"""Inputs of any length in flat memory, and CoNLL lines that stay lines (issue 26, items 5 and 6).

- predict on CoNLL and on JSON lines of word lists holds one chunk of sentences at a time, and writes its
  output chunk by chunk, resumably, as it does documents (`annotate.label_sentences`);
- a line past the record-size limit (`lines.MAX_RECORD_BYTES`) is refused, naming file, line and limit, without
  ever being held whole, in every line-based reader, and the rest of the file is read on;
- a token or label that a tab-separated CoNLL line cannot hold is refused, naming file, line and token, by the one
  writer of CoNLL lines, and before any work by the commands that will write CoNLL; a token with a space inside
  is written and read back as it is.
"""

from __future__ import annotations

import gc
import gzip
import json
import tracemalloc
from pathlib import Path

import pytest
from conftest import NCBI, conll_slice

from hf_layer_tokclf.annotation.resumable import ResumableOutput
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats import lines as line_reading
from hf_layer_tokclf.formats.conll import iter_conll, read_conll, scan_conll
from hf_layer_tokclf.formats.corpus_documents import RecordError
from hf_layer_tokclf.formats.corpus_readers import read_corpus, read_text_lines
from hf_layer_tokclf.formats.corpus_scan import count_records
from hf_layer_tokclf.formats.lines import DataError
from hf_layer_tokclf.formats.records import read_json_records, read_jsonl
from hf_layer_tokclf.formats.sentence import Sentence
from hf_layer_tokclf.running import loading, sentences
from hf_layer_tokclf.running.sentences import conll_lines, write_conll
from hf_layer_tokclf.training.arguments import DataArguments
from hf_layer_tokclf.training.splits import read_splits


def ncbi_test_sentences(count: int) -> list[list[str]]:
    blocks = (NCBI / "test.tsv").read_text().strip().split("\n\n")[:count]
    return [[line.split("\t")[0] for line in block.splitlines()] for block in blocks]


def word_lists(path: Path, count: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "tokens": t}) + "\n" for i, t in enumerate(ncbi_test_sentences(count)))
    )
    return path


INPUTS = {
    "conll": lambda path, count: conll_slice(path / "gold.tsv", count),
    "words": lambda path, count: word_lists(path / "words.jsonl", count),
}


# --------------------------------------------------------------------------------------------
# Item 5: flat memory and resumable output for pre-tokenized input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUTS)
def test_predict_holds_one_chunk_of_sentences_at_a_time(tiny_dir, tmp_path, monkeypatch, kind):
    """Each time the model runs on a chunk, the sentences of the input alive in the process are counted: two chunks'
    worth (the one the model runs and the next, read ahead meanwhile: `prefetch`; and their gold labels' IOB2
    copies), never the whole file. Counted in the model's thread: `gc.get_objects` in the reading thread would
    catch a tuple the other thread is building (CPython then fails that tuple's resize with a SystemError)."""
    source = INPUTS[kind](tmp_path, 96)
    alive, real = [], sentences.task_logits

    def counting(*args, **kwargs):
        alive.append(sum(type(o) is Sentence and o.source == str(source) for o in gc.get_objects()))
        return real(*args, **kwargs)

    monkeypatch.setattr(sentences, "task_logits", counting)
    out = tmp_path / f"out.{kind}"
    assert main(["predict", str(tiny_dir), "--input", str(source), "--output", str(out), "--chunk-size", "8",
                 "--no-progress"]) == 0  # fmt: skip
    assert len(alive) == 96 // 8  # every chunk went through the model
    assert max(alive) <= 3 * 8, alive


@pytest.mark.parametrize("kind", INPUTS)
def test_an_interrupted_run_goes_on_after_its_last_chunk_and_writes_the_same_bytes(
    tiny_dir, tmp_path, monkeypatch, capsys, kind
):
    source = INPUTS[kind](tmp_path, 30)
    argv = ["predict", str(tiny_dir), "--input", str(source), "--chunk-size", "4", "--no-progress"]
    whole = tmp_path / f"whole.{kind}"
    assert main([*argv, "--output", str(whole)]) == 0
    real = ResumableOutput.write

    def interrupted_in_the_third_chunk(self, *args, **counts):
        if self.state["writes"] == 2:
            raise KeyboardInterrupt
        real(self, *args, **counts)

    monkeypatch.setattr(ResumableOutput, "write", interrupted_in_the_third_chunk)
    out = tmp_path / f"out.{kind}"
    capsys.readouterr()
    assert main([*argv, "--output", str(out)]) == 130
    assert f"the partial output {out}.partial is kept" in capsys.readouterr().err
    partial = Path(f"{out}.partial")
    kept = partial.read_bytes()
    assert not out.exists() and kept and whole.read_bytes().startswith(kept)  # two whole chunks
    assert kept.count(b"\n\n" if kind == "conll" else b"\n") == 8
    with open(partial, "ab") as stream:  # as if killed halfway through writing the third chunk
        stream.write(b"Torn\tO\n" if kind == "conll" else b'{"id": 8, "tok')
    monkeypatch.setattr(ResumableOutput, "write", real)
    # Another command is not taken for this one.
    assert main([*argv[:-3], "--chunk-size", "5", "--no-progress", "--output", str(out)]) == 2
    assert "unfinished output of another run (changed: chunk_size)" in capsys.readouterr().err
    assert main([*argv, "--output", str(out)]) == 0
    assert out.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == [out.name]


def test_a_later_sentence_without_labels_means_no_gold_column_as_before(tiny_dir, tmp_path):
    """The gold column is decided on the whole file (a first pass, in flat memory), as when it was read whole:
    a last column that is not labels in a sentence far past the first chunk drops it everywhere."""
    source = conll_slice(tmp_path / "gold.tsv", 20)
    text = source.read_text().rstrip("\n")
    source.write_text(text + "\n\nlast\tNN\nsentence\tNN\n")
    out = tmp_path / "out.tsv"
    assert main(["predict", str(tiny_dir), "--input", str(source), "--output", str(out), "--chunk-size", "2",
                 "--no-progress"]) == 0  # fmt: skip
    rows = [line.split("\t") for line in out.read_text().splitlines() if line]
    assert {len(row) for row in rows} == {2} and rows[-1][0] == "sentence"


def test_the_gold_column_keeps_the_label_scheme_of_the_whole_file(tiny_dir, tmp_path):
    """The gold labels' scheme is detected on the whole file in the first pass, as when the file was read whole,
    not sentence by sentence: in an IOB1 file whose first sentence alone reads as IOB2 (an entity begins with
    B-), the scheme is IOB1, and the gold column comes back in the model's scheme (IOB2 here)."""
    source = tmp_path / "iob1.tsv"
    # IOB1: B- only where an entity follows one of the same type; the file's second sentence shows it.
    first = "BRCA1\tB-Disease\nmutations\tI-Disease\n"
    second = "ataxia\tI-Disease\ntelangiectasia\tI-Disease\n"
    source.write_text(f"{first}\n{second}")
    assert scan_conll(source) == (2, "IOB1")
    assert scan_conll(conll_slice(tmp_path / "plain.tsv", 3, labeled=False)) == (3, None)
    out = tmp_path / "out.tsv"
    assert main(["predict", str(tiny_dir), "--input", str(source), "--output", str(out), "--no-progress"]) == 0
    gold = [line.split("\t")[1] for line in out.read_text().splitlines() if line]
    assert gold == ["B-Disease", "I-Disease", "B-Disease", "I-Disease"]


@pytest.mark.parametrize("kind", INPUTS)
def test_a_partial_output_no_run_accounts_for_is_refused_before_the_model_loads(tmp_path, monkeypatch, kind):
    """Pre-tokenized output is resumable (`ResumableOutput`), so it is checked as one before any work: a partial
    file beside it that no progress file accounts for is someone's, refused (and kept) before the model loads."""
    source = INPUTS[kind](tmp_path, 3)
    out = tmp_path / ("out.tsv" if kind == "conll" else "out.jsonl")
    foreign = Path(f"{out}.partial")
    foreign.write_text("someone's notes\n")
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["predict", str(tmp_path / "no-model"), "--input", str(source), "--output", str(out)]) == 2
    assert foreign.read_text() == "someone's notes\n"


def test_the_conll_reader_is_lazy(tmp_path):
    """`iter_conll` reads a sentence as it is asked for: a bad line far on is met only when read."""
    path = tmp_path / "data.tsv"
    path.write_bytes(b"a\tO\nb\tO\n\n" + b"c\tO\n\n" * 1000 + b"caf\xe9\tO\n")
    stream = iter_conll(path)
    assert next(stream).tokens == ["a", "b"]
    with pytest.raises(DataError, match=r"data\.tsv, line 2004: not valid UTF-8 \(byte 0xe9 at byte offset 5012\)"):
        list(stream)


# --------------------------------------------------------------------------------------------
# Item 5: a record-size limit for every line-based reader
# --------------------------------------------------------------------------------------------

LIMIT = 1024
HUGE = 4 * 2**20  # the overlong line: 4 MiB, compressed to a few KiB


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(line_reading, "MAX_RECORD_BYTES", LIMIT)


def gz(path: Path, *lines: bytes) -> Path:
    with gzip.open(path, "wb") as stream:
        stream.write(b"\n".join(lines) + b"\n")
    return path


def peak_bytes(fn):
    """What ``fn()`` returns, and the peak of Python's allocations meanwhile."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


TOO_LONG = f"longer than the record-size limit of {LIMIT} bytes"


@pytest.mark.parametrize(
    ("name", "lines", "read", "kept"),
    [
        ("docs.txt.gz", [b"One.", b"x" * HUGE, b"Three."], read_text_lines, ["One.", "Three."]),
        (
            "docs.jsonl.gz",
            [b'{"text": "One."}', b'{"text": "' + b"x" * HUGE + b'"}', b'{"text": "Three."}'],
            lambda path: read_corpus(path, "jsonl"),
            ["One.", "Three."],
        ),
        (
            "docs.pubtator.gz",
            [b"1|t|One.", b"1|a|", b"", b"2|t|Two.", b"2|a|" + b"x" * HUGE, b"", b"3|t|Three.", b"3|a|"],
            lambda path: read_corpus(path, "pubtator"),
            ["One.", "Three."],
        ),
    ],
)
def test_an_overlong_line_is_a_record_error_never_held_whole(tmp_path, small_limit, name, lines, read, kept):
    path = gz(tmp_path / name, *lines)
    assert path.stat().st_size < 64 * 1024  # a small file on disk
    items, peak = peak_bytes(lambda: list(read(path)))
    errors = [item for item in items if isinstance(item, RecordError)]
    assert [d.passages[0].text for d in items if not isinstance(d, RecordError)] == kept
    line = lines.index(max(lines, key=len)) + 1
    assert len(errors) == 1 and f"line {line}: {TOO_LONG}" in str(errors[0]) and str(errors[0]).startswith(str(path))
    assert peak < HUGE / 4, f"{peak} bytes at the peak: the line was held whole"


def test_counting_records_for_the_progress_line_never_holds_an_overlong_line(tmp_path, small_limit):
    jsonl = gz(tmp_path / "docs.jsonl.gz", b'{"text": "One."}', b'{"text": "' + b"x" * HUGE + b'"}')
    pubtator = gz(tmp_path / "docs.pubtator.gz", b"1|t|One.", b"1|a|" + b"x" * HUGE, b"", b"2|t|Two.", b"2|a|")
    for path, corpus_format in ((jsonl, "jsonl"), (pubtator, "pubtator")):
        count, peak = peak_bytes(lambda path=path, corpus_format=corpus_format: count_records(path, corpus_format))
        assert count == 2 and peak < HUGE / 4, (corpus_format, peak)


def test_an_overlong_line_in_conll_or_json_lines_is_a_data_error(tmp_path, small_limit):
    conll = gz(tmp_path / "data.tsv", b"a\tO", b"", b"x" * HUGE + b"\tO", b"b\tO")
    records = gz(tmp_path / "data.jsonl", b'{"tokens": ["a"]}', b'{"tokens": ["' + b"x" * HUGE + b'"]}')
    for read, where in (
        (lambda: list(iter_conll(conll)), r"data\.tsv, line 3"),
        (lambda: read_conll(conll), r"data\.tsv, line 3"),
        (lambda: list(read_json_records(records)), r"data\.jsonl, line 2"),
        (lambda: read_jsonl(records), r"data\.jsonl, line 2"),
    ):
        tracemalloc.start()
        with pytest.raises(DataError, match=rf"{where}: {TOO_LONG}"):
            read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < HUGE / 4


def test_a_line_of_the_limit_is_read_and_one_past_it_is_not(tmp_path, small_limit):
    path = tmp_path / "docs.txt"
    path.write_bytes(b"a" * LIMIT + b"\r\n" + b"b" * (LIMIT + 1) + b"\n" + b"c" * LIMIT)
    items = list(read_text_lines(path))
    assert [len(item.passages[0].text) if not isinstance(item, RecordError) else None for item in items] == [
        LIMIT,
        None,
        LIMIT,
    ]


def test_predict_skips_an_overlong_pubtator_line_as_a_bad_record(tiny_dir, tmp_path, monkeypatch, capsys):
    """The issue's case, by the command and the environment variable: a PubTator line of megabytes in a small .gz."""
    monkeypatch.setenv("HF_LAYER_TOKCLF_MAX_RECORD_BYTES", "65536")
    source = gz(
        tmp_path / "docs.pubtator.gz",
        *[b"1|t|BRCA1 mutations.", b"1|a|Breast cancer.", b"", b"2|t|Huge.", b"2|a|" + b"cancer " * 100_000],
        *[b"", b"3|t|Ataxia telangiectasia.", b"3|a|"],
    )
    out = tmp_path / "out.jsonl"
    argv = ["predict", str(tiny_dir), "--input", str(source), "--input-format", "pubtator", "--output", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["1", "3"]
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert (summary["records"], summary["documents"], summary["errors"]) == (3, 2, 1)
    assert summary["error_samples"] == [
        f"{source}, record 2: line 5: longer than the record-size limit of 65536 bytes "
        "(HF_LAYER_TOKCLF_MAX_RECORD_BYTES raises it)"
    ]
    monkeypatch.setenv("HF_LAYER_TOKCLF_MAX_RECORD_BYTES", "lots")
    assert main([*argv, "--overwrite", "--no-progress"]) == 2
    assert "HF_LAYER_TOKCLF_MAX_RECORD_BYTES='lots'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Item 6: tokens that break columns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "gold", "message"),
    [
        (["a\tb"], None, "token 1 'a\\tb' holds a tab"),
        (["x", "a\nb"], None, "token 2 'a\\nb' holds a line break"),
        (["x", "y", "a\rb"], None, "token 3 'a\\rb' holds a carriage return"),
        (["x", ""], None, "token 2 '' is empty"),
        (["  "], None, "token 1 '  ' is only spaces"),
        ([" a"], None, "token 1 ' a' begins or ends with a space"),
        (["a", "b"], ["O", "B-Dis\tease"], "gold label 2 'B-Dis\\tease' holds a tab"),
    ],
)
def test_the_conll_writer_refuses_what_would_break_a_line(tmp_path, tokens, gold, message):
    sentence = Sentence(tokens, gold, "words.jsonl", 3)
    with pytest.raises(DataError) as error:
        list(conll_lines([sentence], [["O"] * len(tokens)]))
    assert str(error.value).startswith(f"words.jsonl, line 3: {message}")
    path = tmp_path / "out.conll"
    with pytest.raises(DataError):
        write_conll(path, [sentence], [["O"] * len(tokens)])
    assert not path.exists()


def test_a_token_with_a_space_inside_is_written_and_read_back_as_it_is(tmp_path):
    """Columns are tab-separated; a line that holds a tab is split at its tabs only, so the reader agrees."""
    tokens = ["New York", "a  b", "\u00a0", "x\u2028y", "-x-"]
    gold = ["B-LOC", "I-LOC", "O", "O", "O"]
    path = tmp_path / "out.conll"
    write_conll(path, [Sentence(tokens, gold, "words.jsonl", 1)], [gold])
    (sentence,) = read_conll(path)
    assert (sentence.tokens, sentence.labels) == (tokens, gold)
    assert path.read_text().splitlines()[0].split("\t") == ["New York", "B-LOC", "B-LOC"]
    # Space-separated files (CoNLL-2003) and tabs with spaces around them read as before.
    old = tmp_path / "old.txt"
    old.write_text("EU NNP B-NP B-ORG\nrejects \t O\nGerman\t\tB-MISC \n")
    assert [(s.tokens, s.labels) for s in read_conll(old)] == [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"])]


def test_evaluate_refuses_a_token_it_could_not_write_before_the_model_loads(tmp_path, capsys):
    source = tmp_path / "words.jsonl"
    source.write_text('{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["a\\tb", ""], "ner_tags": ["O", "O"]}\n')
    predictions = tmp_path / "pred.conll"
    argv = ["evaluate", "no-such-model", "--data", str(source), "--output", str(tmp_path / "scores.json")]
    assert main([*argv, "--predictions", str(predictions)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hf-layer-tokclf evaluate: error: {source}, line 2: token 1 'a\\tb' holds a tab")
    assert not predictions.exists() and "no-such-model" not in err


def test_train_refuses_test_data_its_test_predictions_could_not_hold(tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text('{"tokens": ["Breast", "cancer", ""], "ner_tags": ["B-Disease", "I-Disease", "O"]}\n')
    with pytest.raises(DataError, match=r"test\.jsonl, line 1: token 3 '' is empty"):
        read_splits(DataArguments(train_file=str(NCBI / "devel.tsv"), test_file=str(test)))
