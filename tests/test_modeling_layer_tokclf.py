import pytest
import torch
from conftest import LABEL2ID, LABELS, tiny_bert_kwargs
from safetensors import safe_open
from transformers import AutoModel, AutoModelForTokenClassification, BertConfig, BertForTokenClassification, BertModel

from hf_layer_tokclf import BertForLayerTokenClassification, BertLayerModel, LayerTokenClassificationConfig


def tiny_model(**overrides) -> BertForLayerTokenClassification:
    torch.manual_seed(0)
    return BertForLayerTokenClassification(LayerTokenClassificationConfig(**tiny_bert_kwargs(**overrides))).eval()


@pytest.fixture(scope="module")
def stock_dir(tmp_path_factory):
    """A fine-tuned-looking BertForTokenClassification checkpoint with a trained-looking head."""
    torch.manual_seed(1)
    model = BertForTokenClassification(BertConfig(**tiny_bert_kwargs()))
    path = tmp_path_factory.mktemp("stock")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def full_bert_dir(tmp_path_factory):
    """A plain pretrained-style BertModel checkpoint (with pooler), like PubMedBERT on disk."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("bert")
    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(path)
    return path


def notebook_features(bert_dir, inputs, layer):
    """What the notebook recipe computes: every layer, then hidden_states[layer]."""
    bert = AutoModel.from_pretrained(bert_dir).eval()
    with torch.no_grad():
        return bert(**inputs, output_hidden_states=True).hidden_states[layer]


def test_last_layer_equals_stock_bert_for_token_classification(stock_dir, inputs):
    stock = BertForTokenClassification.from_pretrained(stock_dir).eval()
    ours = BertForLayerTokenClassification.from_pretrained(stock_dir, hidden_layer=-1).eval()
    with torch.no_grad():
        expected, got = stock(**inputs).logits, ours(**inputs).logits
    assert got.shape == (2, 9, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_last_layer_equals_stock_on_real_minilm_weights(minilm_path, tokenizer):
    kwargs = dict(num_labels=3, id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)
    stock = BertForTokenClassification.from_pretrained(minilm_path, **kwargs).eval()
    ours = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=6, **kwargs).eval()
    ours.classifier.load_state_dict(stock.classifier.state_dict())
    batch = tokenizer(
        ["Familial adenomatous polyposis.", "Ataxia telangiectasia is rare in children."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, stock(**batch).logits, atol=1e-5, rtol=0)


def test_minilm_at_layer_3_runs_three_layers_and_matches_hidden_states_3(minilm_path, tokenizer):
    ours = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=3, num_labels=3).eval()
    assert len(ours.bert.encoder.layer) == 3 and ours.bert.pooler is None
    calls = []
    for layer in ours.bert.encoder.layer:
        layer.register_forward_hook(lambda *args: calls.append(1))
    batch = tokenizer(["Cystic fibrosis is inherited."], return_tensors="pt")
    with torch.no_grad():
        logits = ours(**batch).logits
    assert len(calls) == 3
    features = notebook_features(minilm_path, batch, 3)
    torch.testing.assert_close(logits, ours.classifier(features), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_every_layer_matches_the_notebook_recipe(full_bert_dir, inputs, layer):
    ours = BertForLayerTokenClassification.from_pretrained(full_bert_dir, hidden_layer=layer, num_labels=3).eval()
    assert len(ours.bert.encoder.layer) == layer
    with torch.no_grad():
        logits = ours(**inputs).logits
    features = notebook_features(full_bert_dir, inputs, layer)
    torch.testing.assert_close(logits, ours.classifier(features), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "concat", "scalar_mix"])
def test_layer_pooling(full_bert_dir, inputs, pooling):
    ours = BertForLayerTokenClassification.from_pretrained(
        full_bert_dir, hidden_layer=[1, 3], layer_pooling=pooling, num_labels=3
    ).eval()
    assert len(ours.bert.encoder.layer) == 3
    h1, h3 = (notebook_features(full_bert_dir, inputs, k) for k in (1, 3))
    if pooling == "scalar_mix":
        # Loaded from a checkpoint without them, the mix weights start uniform with scale 1.
        torch.testing.assert_close(ours.scalar_mix.weights.data, torch.zeros(2))
        torch.testing.assert_close(ours.scalar_mix.gamma.data, torch.ones(1))
        with torch.no_grad():
            ours.scalar_mix.weights.copy_(torch.tensor([0.0, 1.0]))
            ours.scalar_mix.gamma.fill_(2.0)
        w = torch.softmax(torch.tensor([0.0, 1.0]), 0)
        expected = 2.0 * (w[0] * h1 + w[1] * h3)
    else:
        expected = torch.cat([h1, h3], -1) if pooling == "concat" else (h1 + h3) / 2
    assert ours.classifier.in_features == expected.shape[-1]
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, ours.classifier(expected), atol=1e-5, rtol=0)


def test_loss_is_cross_entropy_ignoring_minus_100(inputs):
    model = tiny_model(hidden_layer=2)
    labels = torch.tensor([[-100, 0, 1, 2, 0, 0, 1, 2, -100], [-100, 1, 2, 0, 0, -100, -100, -100, -100]])
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)


def test_labels_of_the_wrong_shape_raise(inputs):
    model = tiny_model(hidden_layer=1)
    with pytest.raises(ValueError, match=r"labels have shape \(2, 8\), but the inputs give \(2, 9\)"):
        model(**inputs, labels=torch.zeros(2, 8, dtype=torch.long))


def test_outputs_tuple_hidden_states_and_attentions(inputs):
    model = tiny_model(hidden_layer=2, attn_implementation="eager")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
        plain = model(**inputs)
        as_tuple = model(**inputs, labels=torch.zeros(2, 9, dtype=torch.long), return_dict=False)
    assert len(out.hidden_states) == 3  # embeddings + the 2 layers built
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 9, 9)
    assert plain.hidden_states is None and plain.attentions is None
    assert isinstance(as_tuple, tuple) and as_tuple[0].ndim == 0 and as_tuple[1].shape == (2, 9, 3)


def test_eager_and_sdpa_agree(full_bert_dir, inputs):
    logits = {}
    for implementation in ("eager", "sdpa"):
        model = BertForLayerTokenClassification.from_pretrained(
            full_bert_dir, hidden_layer=3, num_labels=3, attn_implementation=implementation
        ).eval()
        assert model.config._attn_implementation == implementation
        torch.manual_seed(0)
        model.classifier.reset_parameters()
        with torch.no_grad():
            logits[implementation] = model(**inputs).logits
    torch.testing.assert_close(logits["eager"], logits["sdpa"], atol=1e-5, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients(inputs):
    labels = torch.randint(0, 3, (2, 9))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(hidden_layer=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model(**inputs, labels=labels).loss.backward()
        grads.append(model.bert.encoder.layer[0].attention.self.query.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_dtype(full_bert_dir, inputs):
    model = BertForLayerTokenClassification.from_pretrained(
        full_bert_dir, hidden_layer=2, num_labels=3, dtype=torch.bfloat16
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert model(**inputs).logits.dtype == torch.bfloat16


def test_loading_a_full_checkpoint_logs_one_line(full_bert_dir, logs):
    BertForLayerTokenClassification.from_pretrained(full_bert_dir, hidden_layer=1, num_labels=3)
    text = logs.getvalue()
    assert text.count("builds 1 of the 4 encoder layers") == 1
    assert "model of type" not in text
    assert "encoder.layer" not in text and "pooler.dense" not in text  # no LOAD REPORT rows for them
    assert "classifier" in text  # the new head is still reported, as transformers does for any new head


def test_save_stores_only_used_layers_as_safetensors(tmp_path, full_bert_dir):
    model = BertForLayerTokenClassification.from_pretrained(full_bert_dir, hidden_layer=2, num_labels=3)
    model.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin"))
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        stored = sum(f.get_tensor(k).numel() for k in keys)
    assert not [k for k in keys if k.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3.", "bert.pooler"))]
    assert {k.split(".")[3] for k in keys if ".encoder.layer." in k} == {"0", "1"}
    assert stored == sum(p.numel() for p in model.parameters())
    size = (tmp_path / "model.safetensors").stat().st_size
    assert stored * 4 <= size <= stored * 4 + 20_000  # the weights plus a small JSON header


def test_checkpoint_size_scales_with_the_layer(tmp_path):
    """Layer 5 of 12 on BERT-base shape stores embeddings + 5 layers + head (random weights)."""
    sizes = {}
    for k in (5, 12):
        config = LayerTokenClassificationConfig(hidden_layer=k, num_labels=3, vocab_size=2000)
        model = BertForLayerTokenClassification(config)
        model.save_pretrained(tmp_path / str(k))
        sizes[k] = (tmp_path / str(k) / "model.safetensors").stat().st_size
        embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
        layer = sum(p.numel() for p in model.bert.encoder.layer[0].parameters())
        head = sum(p.numel() for p in model.classifier.parameters())
        assert abs(sizes[k] - 4 * (embeddings + k * layer + head)) < 64_000  # JSON header
    assert sizes[5] < 0.5 * sizes[12]


def test_deeper_layer_than_the_checkpoint_stores_fails_clearly(tmp_path, full_bert_dir):
    BertForLayerTokenClassification.from_pretrained(full_bert_dir, hidden_layer=2, num_labels=3).save_pretrained(
        tmp_path
    )
    with pytest.raises(
        ValueError, match=r"hidden_layer=3 needs 3 encoder layers, but the checkpoint at .* stores only 2"
    ):
        BertForLayerTokenClassification.from_pretrained(tmp_path, hidden_layer=3)
    config = LayerTokenClassificationConfig.from_pretrained(tmp_path, hidden_layer=-1)  # layer 4 of the backbone
    with pytest.raises(ValueError, match="stores only 2"):
        BertForLayerTokenClassification.from_pretrained(tmp_path, config=config)
    with pytest.raises(ValueError, match="stores only 2"):
        AutoModelForTokenClassification.from_pretrained(tmp_path, hidden_layer=4)
    # Shallower than stored is fine: it reads the saved layer 1 and skips layer 2.
    shallower = BertForLayerTokenClassification.from_pretrained(tmp_path, hidden_layer=1)
    assert len(shallower.bert.encoder.layer) == 1


def test_a_new_head_starts_as_a_bare_linear_does(minilm_path):
    """PyTorch's nn.Linear init, U(-1/sqrt(in), 1/sqrt(in)) for the bias and kaiming_uniform(a=sqrt(5)) for
    the weight (std 1/sqrt(3 * in)), not BERT's normal(0, 0.02) with a zero bias: that start is what lets
    a few hundred sentences teach the head entities in the first epoch (benchmarks/few_data.py)."""
    torch.manual_seed(0)
    model = BertForLayerTokenClassification.from_pretrained(minilm_path, hidden_layer=3, num_labels=3)
    bound = 1 / 384**0.5
    weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
    assert weight.abs().max() <= bound and bias.abs().max() <= bound
    assert weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
    assert bias.abs().min() > 0


def test_fine_tuned_stock_checkpoint_keeps_its_head(stock_dir):
    ours = BertForLayerTokenClassification.from_pretrained(stock_dir, hidden_layer=2)
    stock = BertForTokenClassification.from_pretrained(stock_dir)
    torch.testing.assert_close(ours.classifier.weight, stock.classifier.weight)
    assert ours.config.id2label == stock.config.id2label


def test_auto_classes_in_process(tmp_path, full_bert_dir, inputs):
    model = BertForLayerTokenClassification.from_pretrained(
        full_bert_dir, hidden_layer=[1, 2], layer_pooling="concat", num_labels=3
    )
    model.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is BertForLayerTokenClassification
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is BertLayerModel
    with torch.no_grad():
        features = base(**inputs).last_hidden_state
        torch.testing.assert_close(loaded(**inputs).logits, loaded.classifier(features))
    assert features.shape == (2, 9, 64)  # two layers concatenated
