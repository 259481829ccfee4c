"""Every supported encoder family, on small random checkpoints saved as the Hub stores them (tests/families.py).

For each: the Auto class picks the family's classes, only the layers used are built, run and saved,
the classifier reads the full model's ``hidden_states[k]``, skipped weights stay out of the load
report, the last layer matches the family's own classifier, tokenizers align pre-split words, a
saved model runs through remote code on transformers 5.x and 4.57, and a config.json that names
other models loads nothing else.
"""

import json
import shutil

import pytest
import torch
from conftest import ID2LABEL, LABEL2ID, LABELS, TEXT, remote_checks
from families import FAMILIES
from safetensors import safe_open
from transformers import AutoModel, AutoModelForTokenClassification

from hf_layer_tokclf import AutoLayerModel, AutoModelForLayerTokenClassification
from hf_layer_tokclf.model.auto import FAMILIES as SUPPORTED
from hf_layer_tokclf.model.auto import family_of
from hf_layer_tokclf.model.tokenization import load_tokenizer, needs_prefix_space, save_tokenizer
from hf_layer_tokclf.running.decoding import DEFAULT_STRATEGY
from hf_layer_tokclf.running.texts import predict_texts

DEPTH = 4  # make_checkpoint's default
HEAD = dict(num_labels=len(LABELS), id2label=ID2LABEL, label2id=LABEL2ID)
WORDS = ["Germline", "mutations", "in", "BRCA1", "cause", "cancer", "."]
NO_TOKEN_TYPES = {"deberta-v2", "modernbert", "eurobert"}  # DeBERTa-v3: type_vocab_size=0

pytestmark = pytest.mark.parametrize("family", FAMILIES)


def batch(checkpoint):
    """Two pre-split sentences, one padded, with random token_type_ids where the tokenizer makes them."""
    tokenizer = load_tokenizer(checkpoint)
    inputs = tokenizer([WORDS, WORDS[:3]], is_split_into_words=True, padding=True, return_tensors="pt")
    return dict(inputs)


def test_the_auto_class_picks_the_family_and_builds_only_the_layers_used(family, checkpoints, logs, tmp_path):
    model, info = AutoModelForLayerTokenClassification.from_pretrained(
        checkpoints[family], hidden_layer=2, output_loading_info=True, **HEAD
    )
    assert type(model) is SUPPORTED[family].classifier_class
    assert type(model.config).model_type == f"{family}-layer-tokclf" and model.config.num_hidden_layers == DEPTH
    assert len(model.encoder_layers) == 2
    # Deeper layers, pooler and pretraining heads are skipped on purpose: no load-report rows, one log line.
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert info["missing_keys"] and all(key.startswith("classifier.") for key in info["missing_keys"])
    lines = [line for line in logs.getvalue().splitlines() if line.strip()]
    ours = [line for line in lines if "skips the weights" in line]
    assert len(ours) == 1 and "builds 2 of the 4" in ours[0], lines
    assert not [line for line in lines if "unexpected" in line.lower() or "model of type" in line], lines

    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    layer_name = SUPPORTED[family].classifier_class.layers_name
    assert not [key for key in keys if f"{layer_name}.2." in key or f"{layer_name}.3." in key]
    assert [key for key in keys if f"{layer_name}.1." in key] and "classifier.weight" in keys
    assert not [
        key for key in keys if key.startswith(("cls.", "lm_head.", "discriminator_", "lm_predictions", "head."))
    ]
    reloaded = AutoModelForLayerTokenClassification.from_pretrained(tmp_path)
    assert type(reloaded) is type(model) and reloaded.config.hidden_layer == 2


@pytest.mark.parametrize("layer", [0, 1, 3, DEPTH, [1, DEPTH]])
def test_the_classifier_reads_the_full_models_hidden_states(family, checkpoints, layer):
    """Layer k < L is the full model's hidden_states[k]; layer L is its last_hidden_state (final norm included)."""
    full = AutoModel.from_pretrained(checkpoints[family]).eval()
    ours = AutoLayerModel.from_pretrained(checkpoints[family], hidden_layer=layer).eval()
    inputs = batch(checkpoints[family])
    with torch.no_grad():
        expected = full(**inputs, output_hidden_states=True)
        features = ours(**inputs).last_hidden_state

    def state(k):
        return expected.last_hidden_state if k == DEPTH else expected.hidden_states[k]

    target = torch.stack([state(k) for k in layer]).mean(0) if isinstance(layer, list) else state(layer)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(features[real], target[real], atol=1e-5, rtol=0)
    built = max(layer) if isinstance(layer, list) else layer
    assert len(ours.encoder_layers) == max(built, ours.min_layers_built)  # DeBERTa-v2 runs at least one
    norm = SUPPORTED[family].classifier_class.final_norm_name
    if norm:  # the final norm belongs after the last layer only
        assert isinstance(getattr(ours.base_model, norm), torch.nn.Identity) == (built < DEPTH)


def test_at_the_last_layer_the_logits_are_the_family_classifiers(family, checkpoints, tmp_path):
    if family == "modernbert":
        pytest.skip("ModernBertForTokenClassification runs a dense head before dropout + linear (see README)")
    torch.manual_seed(0)
    stock = AutoModelForTokenClassification.from_pretrained(checkpoints[family], **HEAD).eval()
    stock.save_pretrained(tmp_path)
    ours = AutoModelForLayerTokenClassification.from_pretrained(tmp_path, hidden_layer=-1).eval()
    assert type(ours) is SUPPORTED[family].classifier_class
    inputs = batch(checkpoints[family])
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, stock(**inputs).logits, atol=1e-5, rtol=0)


def test_token_type_ids_reach_only_families_that_have_them(family, checkpoints):
    model = AutoModelForLayerTokenClassification.from_pretrained(checkpoints[family], hidden_layer=2, **HEAD).eval()
    types = getattr(model.config, "type_vocab_size", 0)
    assert (family in NO_TOKEN_TYPES) == (not types)
    if types == 1:
        pytest.skip("one token type (RoBERTa, XLM-R): nothing to tell apart")
    inputs = {k: v for k, v in batch(checkpoints[family]).items() if k != "token_type_ids"}
    with torch.no_grad():
        plain = model(**inputs).logits
        typed = model(**inputs, token_type_ids=torch.ones_like(inputs["input_ids"])).logits
    if family in NO_TOKEN_TYPES:  # passed by a pipeline or a collator: dropped, not an error
        torch.testing.assert_close(typed, plain, atol=0, rtol=0)
    else:
        assert not torch.allclose(typed, plain)


def test_the_tokenizer_aligns_pre_split_words(family, checkpoints, tmp_path):
    tokenizer = load_tokenizer(checkpoints[family])
    assert not needs_prefix_space(tokenizer)
    encoded = tokenizer([WORDS], is_split_into_words=True)
    assert sorted({i for i in encoded.word_ids(0) if i is not None}) == list(range(len(WORDS)))
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    firsts = [tokens[encoded.word_ids(0).index(i)] for i in range(len(WORDS))]
    if family in ("roberta", "modernbert", "eurobert"):  # byte-level: every word starts after a space
        assert all(token.startswith("Ġ") for token in firsts), firsts
    save_tokenizer(tokenizer, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] != "TokenizersBackend"  # transformers 4.x has no such class
    assert load_tokenizer(tmp_path)([WORDS], is_split_into_words=True)["input_ids"] == encoded["input_ids"]


def saved(family, checkpoint, folder):
    """A layer classifier of the family at layer 2, with a head that tags entities, saved with its tokenizer."""
    torch.manual_seed(0)
    model = AutoModelForLayerTokenClassification.from_pretrained(checkpoint, hidden_layer=2, **HEAD).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20)
    model.save_pretrained(folder)
    save_tokenizer(load_tokenizer(checkpoint), folder)
    return folder, model


@pytest.fixture(scope="module")
def checked_on_4x(checkpoints, transformers4_path, tmp_path_factory):
    """By family (but EuroBERT, which 4.x lacks): its saved model, and what remote code made of it on 4.57, all
    families checked in one fresh interpreter."""
    root = tmp_path_factory.mktemp("remote-on-4x")
    models = {f: saved(f, checkpoints[f], root / f) for f in FAMILIES if f != "eurobert"}
    reports = remote_checks([folder for folder, _ in models.values()], TEXT, python_path=transformers4_path)
    return {family: (folder, model, reports[folder]) for family, (folder, model) in models.items()}


def test_a_saved_model_runs_through_remote_code_on_4x(family, checked_on_4x):
    """On 4.57, for strangers (test_encoder_families_cli's `verify` does the same on 5.x, for trained models)."""
    if family == "eurobert":
        pytest.skip("transformers 4.x has no EuroBERT")
    folder, model, report = checked_on_4x[family]
    assert isinstance(report, dict), f"Loading {folder} through remote code failed:\n{report}"
    config = json.loads((folder / "config.json").read_text())
    names = {cls.__name__ for cls in (SUPPORTED[family].config_class, model.__class__)}
    assert {value.split(".")[-1] for value in config["auto_map"].values()} >= names
    tokenizer = load_tokenizer(folder)
    with torch.no_grad():
        expected = model(**tokenizer(TEXT, return_tensors="pt")).logits[0]
    assert report["transformers_version"].startswith("4.")
    assert report["model_class"] == type(model).__name__
    assert report["config_class"] == SUPPORTED[family].config_class.__name__
    assert report["auto_model_class"] == SUPPORTED[family].encoder_class.__name__
    assert report["num_layers_built"] == 2
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, atol=1e-5, rtol=0)
    assert report["entities"], "the pipeline found no entity with a head that tags plenty"
    # The pipeline the model ships: predict's entities (valid sequences, probabilities as scores).
    assert report["pipeline_class"] == "LayerTokenClassificationPipeline"
    (expected_entities,) = predict_texts(model, tokenizer, [TEXT], aggregation_strategy=DEFAULT_STRATEGY)
    assert [{k: v for k, v in e.items() if k != "score"} for e in report["entities"]] == [
        {k: v for k, v in e.items() if k != "score"} for e in expected_entities
    ]


FOREIGN = {
    "_name_or_path": "someone/else",
    "base_model": "evil/model",
    "backbone": "x/y",
    "backbone_config": {"model_type": "bert", "_name_or_path": "evil/backbone"},
    "trust_remote_code": True,
    "auto_map": {"AutoConfig": "evil/model--configuration_evil.EvilConfig", "AutoModel": "evil/model--m.EvilModel"},
}


def test_a_config_naming_other_models_loads_nothing_else(family, checkpoints, tmp_path, no_other_source):
    folder = tmp_path / "edited"
    shutil.copytree(checkpoints[family], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **FOREIGN}))
    no_other_source.clear()
    model = AutoModelForLayerTokenClassification.from_pretrained(folder, hidden_layer=2, **HEAD)
    assert type(model) is SUPPORTED[family].classifier_class
    assert {str(source) for source in no_other_source} <= {str(folder)}
    for field in ("backbone", "backbone_config", "trust_remote_code", "auto_map"):
        assert not hasattr(model.config, field) or getattr(model.config, field) in (None, {}), field

    (folder / "config.json").write_text(json.dumps({**config, "model_type": "evil"}))
    with pytest.raises(ValueError, match=r"model_type 'evil' is not an encoder family"):
        AutoModelForLayerTokenClassification.from_pretrained(folder, hidden_layer=2, **HEAD)
    other = next(f for f in SUPPORTED.values() if f.backbone_type != family)
    with pytest.raises(ValueError, match=f"holds a '{family}' model"):
        other.classifier_class.from_pretrained(checkpoints[family], hidden_layer=2, **HEAD)


def test_family_of_names_the_supported_types(family):
    assert family_of(family).backbone_type == family == family_of(f"{family}-layer-tokclf").backbone_type
