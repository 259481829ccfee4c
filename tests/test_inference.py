"""Prediction at corpus scale: the pipeline's entities, length-sorted batches, lazy input, streamed output."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import NCBI, TEXT, assert_same_answers, plain_entities, save_tiny_model

from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.formats.loading import load_sentences
from hf_layer_tokclf.running.loading import load_model
from hf_layer_tokclf.running.logits import default_max_length
from hf_layer_tokclf.running.sentences import iter_sentence_predictions, predict_sentences
from hf_layer_tokclf.running.texts import predict_texts


@pytest.fixture(scope="module")
def ncbi_texts() -> list[str]:
    sentences = load_sentences(str(NCBI / "test.tsv"))[:40]
    texts = [" ".join(s.tokens) for s in sentences]
    # One text far beyond the model's 512 subwords, a blank one, an unknown word, odd characters.
    return [*texts, " ".join(texts), "", "  ", "x" * 300 + " cancer", "naïve ﬁbrosis in BRCA1-carriers", TEXT]


@pytest.fixture(scope="module")
def trained_model(trained):
    model, tokenizer = load_model(trained[0])
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer, head_scale=30)


def pipeline_entities(model, tokenizer, texts, strategy, stride, decoding):
    """The stock pipeline's entities (argmax), or those of the pipeline a saved model ships (viterbi)."""
    from transformers import pipeline

    from hf_layer_tokclf.model.pipeline_layer_tokclf import LayerTokenClassificationPipeline

    ner = pipeline(
        "token-classification",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy=strategy,
        **({"stride": stride} if stride is not None else {}),
        **({"pipeline_class": LayerTokenClassificationPipeline} if decoding == "viterbi" else {}),
    )
    results = ner([text if text.strip() else " " for text in texts], batch_size=8)
    return plain_entities(results)


@pytest.mark.parametrize("decoding", ["viterbi", "argmax"])
@pytest.mark.parametrize("strategy", ["first", "simple", "average", "max"])
def test_predict_texts_equals_the_pipeline_on_a_trained_model(trained_model, ncbi_texts, strategy, decoding):
    model, tokenizer = trained_model
    max_length = default_max_length(model, tokenizer)
    tokenizer.model_max_length = max_length  # the pipeline's windows: model_max_length long
    stride = max_length // 4  # predict_texts' default
    expected = pipeline_entities(model, tokenizer, ncbi_texts, strategy, stride, decoding)
    options = {"aggregation_strategy": strategy, "decoding": decoding}
    found = list(predict_texts(model, tokenizer, ncbi_texts, batch_size=8, **options))
    assert_same_answers(expected, found)
    assert sum(map(len, found)) >= 10, "the trained model finds diseases"
    long_text = ncbi_texts[40]
    assert len(tokenizer(long_text)["input_ids"]) > 2 * max_length
    assert max(e["end"] for e in found[40]) > len(long_text) * 0.8, "the end of a long text is covered"


@pytest.mark.parametrize("decoding", ["viterbi", "argmax"])
def test_none_strategy_equals_the_pipeline_on_short_texts(tiny_dir, ncbi_texts, decoding):
    model, tokenizer = load_model(tiny_dir)
    short = [t for t in ncbi_texts if len(tokenizer(t)["input_ids"]) <= 128]
    expected = pipeline_entities(model, tokenizer, short, "none", None, decoding)
    found = predict_texts(model, tokenizer, short, aggregation_strategy="none", decoding=decoding)
    assert_same_answers(expected, list(found))


@pytest.mark.parametrize("decoding", ["viterbi", "argmax"])
def test_windows_of_a_small_max_length_match_the_pipeline_with_the_same_stride(tiny_dir, ncbi_texts, decoding):
    model, tokenizer = load_model(tiny_dir)
    tokenizer.model_max_length = 24
    expected = pipeline_entities(model, tokenizer, ncbi_texts[:12], "first", 6, decoding)
    options = {"aggregation_strategy": "first", "decoding": decoding}
    found = predict_texts(model, tokenizer, ncbi_texts[:12], max_length=24, stride=6, **options)
    assert_same_answers(expected, list(found))


class Recording:
    """An iterator that counts how many items were taken; no len(), no indexing."""

    def __init__(self, items):
        self.items = iter(items)
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.items)
        self.taken += 1
        return item


def test_predict_texts_reads_lazily_and_keeps_input_order(tiny_dir, ncbi_texts):
    model, tokenizer = load_model(tiny_dir)
    texts = ncbi_texts * 3  # 138 documents of very different lengths
    source = Recording(texts)
    stream = predict_texts(model, tokenizer, source, aggregation_strategy="first", chunk_size=8, batch_size=4)
    first = next(stream)
    assert source.taken <= 16, "the first chunk, and the next read ahead (prefetch), before the first result"
    rest = list(stream)
    assert source.taken == len(texts)
    at_once = list(predict_texts(model, tokenizer, texts, aggregation_strategy="first", chunk_size=10_000))
    assert_same_answers(at_once, [first, *rest])  # other batches: scores equal up to float rounding


def test_sentence_predictions_stream_in_chunks(tiny_dir):
    model, tokenizer = load_model(tiny_dir)
    sentences = load_sentences(str(NCBI / "test.tsv"))[:30]
    source = Recording(sentences)
    stream = iter_sentence_predictions(model, tokenizer, source, chunk_size=7, batch_size=4)
    first = next(stream)
    assert source.taken <= 14  # the first chunk, and the next read ahead (prefetch)
    assert [first, *stream] == predict_sentences(model, tokenizer, sentences, progress=False)


def test_bad_arguments_are_value_errors(tiny_dir):
    model, tokenizer = load_model(tiny_dir)
    with pytest.raises(ValueError, match="aggregation_strategy"):
        list(predict_texts(model, tokenizer, ["a"], aggregation_strategy="mean"))
    with pytest.raises(ValueError, match="document 2 is a int"):
        list(predict_texts(model, tokenizer, ["a", 3]))
    with pytest.raises(ValueError, match="stride"):
        list(predict_texts(model, tokenizer, ["a"], max_length=16, stride=14))


def test_predict_cli_streams_a_file_in_input_order(tiny_dir, ncbi_texts, tmp_path, capsys):
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(ncbi_texts[:25]) + "\n", encoding="utf-8")
    output = tmp_path / "entities.jsonl"
    argv = ["predict", str(tiny_dir), "--input", str(source), "--output", str(output), "--chunk-size", "4"]
    assert main(argv) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ncbi_texts[:25]
    model, tokenizer = load_model(tiny_dir)
    expected = list(predict_texts(model, tokenizer, ncbi_texts[:25], aggregation_strategy="first"))
    assert_same_answers(expected, [r["entities"] for r in records])
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    conll = tmp_path / "s.conll"
    conll.write_text("BRCA1\nbreast\ncancer\n\nAtaxia\n\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(tiny_dir), "--input", str(conll), "--input-format", "conll", "--chunk-size", "1"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line]
    assert [r[0] for r in rows] == ["BRCA1", "breast", "cancer", "Ataxia"]


def test_load_model_auto_device_is_the_cpu_without_a_gpu(tiny_dir):
    model, _ = load_model(tiny_dir, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    assert model.dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)


def test_batches_are_sorted_by_length_so_little_goes_to_padding(tiny_dir, ncbi_texts):
    """The model sees batches of windows of similar length: far less padding than batching in input order."""
    model, tokenizer = load_model(tiny_dir)
    shapes = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        list(predict_texts(model, tokenizer, ncbi_texts, aggregation_strategy="first", batch_size=4))
    finally:
        hook.remove()
    encoding = tokenizer(ncbi_texts, truncation=True, max_length=512, stride=128, return_overflowing_tokens=True)
    lengths = [len(ids) for ids in encoding["input_ids"]]
    real = sum(lengths)
    in_input_order = sum(max(lengths[i : i + 4]) * len(lengths[i : i + 4]) for i in range(0, len(lengths), 4))
    computed = sum(batch * length for batch, length in shapes)
    assert sorted(length for _, length in shapes) == [length for _, length in shapes]  # shortest first
    assert computed < 1.1 * real < in_input_order


def test_progress_bar_counts_documents(tiny_dir, ncbi_texts, monkeypatch):
    """A bar counting documents (tqdm decides whether standard error is a terminal)."""
    import hf_layer_tokclf.running.texts as texts

    bars = []

    class RecordingBar:
        def __init__(self, **kwargs):
            self.kwargs, self.n = kwargs, 0
            bars.append(self)

        def update(self, count):
            self.n += count

        def close(self):
            self.closed = True

    monkeypatch.setattr(texts, "tqdm", RecordingBar)
    model, tokenizer = load_model(tiny_dir)
    list(predict_texts(model, tokenizer, ncbi_texts, progress=True, total=len(ncbi_texts), chunk_size=16))
    list(predict_texts(model, tokenizer, ncbi_texts[:3]))
    shown, hidden = bars
    assert (
        shown.kwargs["disable"] is None and shown.kwargs["total"] == len(ncbi_texts) and shown.kwargs["unit"] == "doc"
    )
    assert shown.n == len(ncbi_texts) and shown.closed
    assert hidden.kwargs["disable"] is True


@pytest.mark.parametrize("command", [["predict", "--text", "BRCA1"], ["evaluate", "--data", str(NCBI / "test.tsv")]])
@pytest.mark.parametrize("where", ["/no/such/model", "./runs/missing-model", "runs/missing/model"])
def test_a_missing_model_folder_is_one_line_naming_it(command, where, capsys):
    assert main([command[0], where, *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hf-layer-tokclf {command[0]}: error: no such folder: {where}") and "\n" not in err


def test_one_aggregation_default_everywhere_the_one_training_matches(tiny_dir, ncbi_texts, tmp_path):
    """predict_texts, the CLI and the Hub verification all group subwords as training labels them: "first"."""
    from hf_layer_tokclf.cli.predict import predict_parser
    from hf_layer_tokclf.sharing.hub import push_to_hub

    assert predict_parser().get_default("aggregation_strategy") == "first"
    model, tokenizer = load_model(tiny_dir)
    texts = ncbi_texts[:10]
    default = list(predict_texts(model, tokenizer, texts))
    assert default == list(predict_texts(model, tokenizer, texts, aggregation_strategy="first"))
    assert default != list(predict_texts(model, tokenizer, texts, aggregation_strategy="simple")), "a telling model"

    text = next(
        t
        for t, a, b in zip(
            texts, default, predict_texts(model, tokenizer, texts, aggregation_strategy="simple"), strict=True
        )
        if a != b
    )
    result = push_to_hub(
        tiny_dir, "someone/tiny", dry_run=True, staging_dir=tmp_path / "staged", text=text, echo=lambda _: None
    )
    [want] = predict_texts(model, tokenizer, [text])
    strip = lambda entities: [{k: v for k, v in e.items() if k != "score"} for e in entities]  # noqa: E731
    assert strip(result.verification["entities"]) == strip(want)


@pytest.mark.parametrize(
    ("device", "asked", "bf16", "expected"),
    [
        ("cpu", "auto", None, torch.float32),
        ("cuda", "auto", True, torch.bfloat16),  # A100, H100, L4, RTX 30xx and newer
        ("cuda", "auto", False, torch.float16),  # T4, V100: bfloat16 would be emulated, or fail
        ("cuda", "float32", False, torch.float32),
        ("cuda", "bfloat16", False, torch.bfloat16),  # asked for: taken as asked
        ("cpu", "bfloat16", None, torch.bfloat16),
        ("cpu", "float16", None, torch.float16),
    ],
)
def test_pick_dtype_follows_the_gpu(device, asked, bf16, expected):
    from hf_layer_tokclf.running.loading import pick_dtype

    assert pick_dtype(torch.device(device), asked, bf16_supported=bf16) == expected


def test_pick_dtype_refuses_an_unknown_name():
    from hf_layer_tokclf.running.loading import pick_dtype

    with pytest.raises(ValueError, match="float64"):
        pick_dtype(torch.device("cpu"), "float64")


def test_dtype_and_device_reach_the_model_in_predict_and_evaluate(tiny_dir, tmp_path, capsys):
    model, _ = load_model(tiny_dir, device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    assert load_model(tiny_dir)[0].dtype == torch.float32
    scores = tmp_path / "scores.json"
    argv = ["evaluate", str(tiny_dir), "--data", str(NCBI / "devel.tsv"), "--output", str(scores)]
    assert main([*argv, "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert 0 <= json.loads(scores.read_text())["eval_f1"] <= 1
    assert main(["predict", str(tiny_dir), "--text", TEXT, "--device", "cpu", "--dtype", "float32"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"] == TEXT


def test_the_next_chunk_is_read_and_tokenized_while_the_model_runs_this_one(tiny_dir, ncbi_texts):
    """While the model runs chunk 0, chunk 1 is read (and tokenized) in the background: the forward pass waits
    (up to 10 s) to see it read. Done one after the other, it never is."""
    import time

    model, tokenizer = load_model(tiny_dir)
    source = Recording(ncbi_texts[:24])
    seen_during_forward = []

    def wait_for_the_next_chunk(module, args, kwargs):
        deadline = time.monotonic() + 10
        while source.taken <= 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_during_forward.append(source.taken)

    hook = model.register_forward_pre_hook(wait_for_the_next_chunk, with_kwargs=True)
    try:
        first = next(predict_texts(model, tokenizer, source, aggregation_strategy="first", chunk_size=8))
    finally:
        hook.remove()
    assert seen_during_forward[0] == 16, "chunk 1 was read during chunk 0's forward pass, and no more"
    assert first == next(predict_texts(model, tokenizer, ncbi_texts[:1], aggregation_strategy="first"))


@pytest.mark.parametrize("max_batch_tokens", [None, 1, 2048])
def test_entities_and_labels_are_the_same_with_or_without_overlap_and_with_any_budget(
    trained_model, ncbi_texts, max_batch_tokens
):
    """Real MiniLM, NCBI texts and sentences: chunk by chunk (overlapped) and in one chunk, with any token budget,
    the same entities and labels as one chunk in batches of 32 windows."""
    model, tokenizer = trained_model
    texts = ncbi_texts
    reference = list(predict_texts(model, tokenizer, texts, chunk_size=10_000))
    found = list(predict_texts(model, tokenizer, texts, chunk_size=7, max_batch_tokens=max_batch_tokens))
    assert_same_answers(reference, found)
    sentences = load_sentences(str(NCBI / "test.tsv"))[:40]
    labels = predict_sentences(model, tokenizer, sentences, progress=False)
    chunked = list(
        iter_sentence_predictions(model, tokenizer, sentences, chunk_size=9, max_batch_tokens=max_batch_tokens)
    )
    assert chunked == labels


def test_window_batches_keep_to_the_token_budget(tiny_dir, ncbi_texts):
    """No batch over the budget of padded tokens, except a window longer than it alone; short windows fill a batch
    of more than batch_size."""
    from hf_layer_tokclf.running.logits import window_logits

    model, tokenizer = load_model(tiny_dir)
    shapes = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    windows = [dict(tokenizer(text, truncation=True, max_length=128)) for text in ncbi_texts]  # 2 to 128 subwords
    try:
        budgeted = window_logits(model, tokenizer, windows, batch_size=4, max_batch_tokens=120)
        shapes_budgeted, shapes[:] = list(shapes), []
        plain = window_logits(model, tokenizer, windows, batch_size=4)
    finally:
        hook.remove()
    assert all(rows * length <= 120 or rows == 1 for rows, length in shapes_budgeted)
    assert any(length > 120 for rows, length in shapes_budgeted)  # the long window, alone
    assert max(rows for rows, _ in shapes_budgeted) > 4 == max(rows for rows, _ in shapes)
    assert sum(rows for rows, _ in shapes_budgeted) == len(windows)
    for a, b in zip(budgeted, plain, strict=True):
        assert a.shape == b.shape and abs(a - b).max() < 1e-4


def test_a_consumer_that_uses_the_tokenizer_between_chunks_never_shares_it_with_the_thread(
    tiny_dir, ncbi_texts, monkeypatch
):
    """A fast tokenizer's truncation is a setting of its Rust object, set by each call: the caller's own call
    between two chunks (here with truncation off), while the thread tokenizes the next chunk with truncation,
    raises "Already borrowed" (tokenizers < 0.23) or silently leaves a window untruncated (0.23). So the thread
    tokenizes with a tokenizer of its own: no Rust tokenizer is ever set from two threads, and the entities are
    those of a run without the caller's calls."""
    import threading

    from transformers import PreTrainedTokenizerFast

    model, tokenizer = load_model(tiny_dir)
    setters: dict[int, set[int]] = {}
    original = PreTrainedTokenizerFast.set_truncation_and_padding

    def spy(self, *args, **kwargs):
        setters.setdefault(id(self.backend_tokenizer), set()).add(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerFast, "set_truncation_and_padding", spy)
    texts = ncbi_texts * 2
    found = []
    for entities in predict_texts(model, tokenizer, texts, chunk_size=5, max_length=32, stride=8):
        found.append(entities)
        tokenizer([" ".join(texts)] * 4)  # the caller's own use: no truncation
    assert len(setters) >= 2 and all(len(threads) == 1 for threads in setters.values()), setters
    assert_same_answers(list(predict_texts(model, tokenizer, texts, chunk_size=1000, max_length=32, stride=8)), found)


def test_closing_the_stream_stops_its_thread(tiny_dir, ncbi_texts):
    import threading

    model, tokenizer = load_model(tiny_dir)
    stream = predict_texts(model, tokenizer, ncbi_texts * 3, chunk_size=4)
    next(stream)
    assert [t for t in threading.enumerate() if t.name == "hf_layer_tokclf-prefetch"]
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "hf_layer_tokclf-prefetch"]
