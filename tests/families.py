"""Tiny random checkpoints of each encoder family, laid out as the Hub stores them, for tests without the Hub.

`make_checkpoint(family, path)` writes the family's *pretraining* model (random, seeded) and a tokenizer trained
here with the `tokenizers` library on NCBI-disease words, in that family's style: what a user's
`--model_name_or_path` points at, in miniature. `FAMILIES` holds the model types the installed transformers
has (EuroBERT arrived in 5.x).

Tokenizing pre-split words (``is_split_into_words=True``) with the byte-level BPE families, as found on
transformers 5.24 (tokenizers 0.23) and 4.57.6 (tokenizers 0.22) with these checkpoints (test_families.py
checks the points marked *):

- Without a prefix space each word is tokenized as if it began the text: "mutations" gives ``m ut ations``,
  not the running text's ``Ġmutations``. 5.24 does that silently, RoBERTa included; 4.57's
  `RobertaTokenizerFast` refuses pre-split words unless ``add_prefix_space=True`` (an AssertionError).
- RoBERTa (tokenizer_class `RobertaTokenizer`): ``AutoTokenizer.from_pretrained(path, add_prefix_space=True)``
  works on both (*): the class builds its ByteLevel pre-tokenizer and RobertaProcessing from the argument;
  offsets are relative to each word and trimmed.
- ModernBERT and EuroBERT (tokenizer_class `PreTrainedTokenizerFast`, i.e. `TokenizersBackend` on 5.x): on 5.24
  ``add_prefix_space=True`` is **silently ignored** (*): `TokenizersBackend` takes tokenizer.json as saved and
  only stores ``tokenizer.add_prefix_space = True``, an attribute nothing reads (no warning, no error). 4.57's
  `PreTrainedTokenizerFast.__init__` rewrites the pre-tokenizer when its *top-level* JSON state has an
  ``add_prefix_space`` key: that works for ModernBERT (a bare ByteLevel) (*), not for EuroBERT (Llama 3's
  ``Sequence[Split(regex), ByteLevel(use_regex=False)]``, ignored there too).
- What works on both versions for every byte-level style: a normalizer that puts the space in front of each
  word, ``tokenizer.backend_tokenizer.normalizer = tokenizers.normalizers.Prepend(" ")`` (wrap an existing
  normalizer: ``normalizers.Sequence([old, normalizers.Prepend(" ")])``) (*). Pre-split words are normalized one
  by one, so each gets the running text's pieces, and offsets stay relative to the word as given. It also puts
  a space before plain text, as add_prefix_space does. Keep ``add_prefix_space=True`` for RoBERTa on 4.57 (its
  assertion); with it the Prepend is harmless (ByteLevel adds no second space).
- Also on both versions, for a top-level ByteLevel (ModernBERT) only: the live pre-tokenizer is changed in place
  by ``tokenizer.backend_tokenizer.pre_tokenizer.add_prefix_space = True``, with the same pieces and offsets
  (it does not get RoBERTa on 4.57 past its assertion, which reads the Python attribute). For EuroBERT's
  Sequence (``pre_tokenizer[1].add_prefix_space = True``) it is wrong: the space goes in front of every regex
  piece, so "BRCA1" gives ``ĠBRCA Ġ 1`` where the running text has ``ĠBRCA 1``.
- Prepending the space to the strings, ``[" " + w for w in words]``, gives the right pieces too, but offsets
  then count the space (except through RoBERTa's trimming post-processor).
- Whatever the method, "(1)" as three words gives ``Ġ( Ġ1 Ġ)`` where running text has ``Ġ( 1 )``: word-wise
  input has a space before every word.

Other facts these checkpoints pin down:

- tokenizer_class written by save_pretrained on 5.24: BERT and ELECTRA both `BertTokenizer` (5.x's
  `ElectraTokenizerFast` is an alias of `BertTokenizer`), `RobertaTokenizer`, `XLMRobertaTokenizer`,
  `DebertaV2Tokenizer`, and `TokenizersBackend` for a `PreTrainedTokenizerFast`, which 4.57 cannot load ("Tokenizer
  class TokenizersBackend does not exist"): so ModernBERT and EuroBERT get "PreTrainedTokenizerFast" written back,
  as on the Hub. 4.57 writes `ElectraTokenizer`, `XLMRobertaTokenizerFast`, `DebertaV2TokenizerFast` and
  `PreTrainedTokenizerFast`, plus special_tokens_map.json and (BERT, ELECTRA) vocab.txt or (RoBERTa)
  vocab.json, merges.txt and added_tokens.json; 5.24 writes only tokenizer.json and tokenizer_config.json.
- 5.x rebuilds the model-specific classes' pipelines in ``__init__`` (keeping tokenizer.json's vocabulary and
  post-processor): e.g. RoBERTa's ByteLevel follows ``add_prefix_space``, DeBERTa gets its own normalizer.
  `TokenizersBackend` / 4.57's fast classes take tokenizer.json as saved.
- token_type_ids: BERT, ELECTRA and DeBERTa-v2 return them; RoBERTa, XLM-R, ModernBERT and EuroBERT do not
  (ModernBERT and EuroBERT because tokenizer_config.json says ``model_input_names: [input_ids,
  attention_mask]`` as on the Hub; without it 4.57's `PreTrainedTokenizerFast` would return token_type_ids,
  5.24's `TokenizersBackend` would not).
- `AutoModel` on these checkpoints misses only the pooler of BERT, RoBERTa and XLM-R (a masked-LM checkpoint
  has none; roberta-base on the Hub is the same).
- Special token ids copy the real layouts: BERT/ELECTRA [PAD] [UNK] [CLS] [SEP] [MASK] = 0-4; RoBERTa/XLM-R
  <s> <pad> </s> <unk> = 0-3 (pad_token_id 1) and <mask> last; DeBERTa-v3 [PAD] [CLS] [SEP] [UNK] = 0-3 and
  [MASK] last; ModernBERT [UNK] [CLS] [SEP] [PAD] [MASK] after the BPE vocabulary; EuroBERT
  <|begin_of_text|> <|end_of_text|> <|mask|> after it, with pad = eos = <|end_of_text|>.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "data" / "ncbi-disease" / "train.tsv"
TRAINING_SENTENCES = 1000  # of 5432: enough words for a useful vocabulary, and Unigram's trainer stays under 1 s
VOCAB_SIZE = 800
MAX_LENGTH = 128  # positions (RoBERTa and XLM-R add their offset of 2) and the tokenizers' model_max_length

PRETRAINING_CLASS: dict[str, str] = {
    "bert": "BertForMaskedLM",
    "roberta": "RobertaForMaskedLM",
    "xlm-roberta": "XLMRobertaForMaskedLM",
    "electra": "ElectraForPreTraining",  # the discriminator, which ELECTRA encoders (BioM-ELECTRA) ship
    "deberta-v2": "DebertaV2ForMaskedLM",
    "modernbert": "ModernBertForMaskedLM",
    "eurobert": "EuroBertForMaskedLM",
}
STOCK_TOKEN_CLASSIFIER: dict[str, str] = {
    "bert": "BertForTokenClassification",
    "roberta": "RobertaForTokenClassification",
    "xlm-roberta": "XLMRobertaForTokenClassification",
    "electra": "ElectraForTokenClassification",
    "deberta-v2": "DebertaV2ForTokenClassification",
    "modernbert": "ModernBertForTokenClassification",
    "eurobert": "EuroBertForTokenClassification",
}
# The model types this transformers has (4.57 has no EuroBERT).
FAMILIES: tuple[str, ...] = tuple(family for family, name in PRETRAINING_CLASS.items() if hasattr(transformers, name))


def training_sentences(path: Path = TRAIN, limit: int = TRAINING_SENTENCES) -> list[str]:
    """The first ``limit`` sentences of a CoNLL file (word<TAB>label lines), words joined by spaces."""
    sentences: list[str] = []
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                sentences.append(" ".join(words))
                words = []
                if len(sentences) == limit:
                    return sentences
    if words:
        sentences.append(" ".join(words))
    return sentences


# --- tokenizer styles --------------------------------------------------------------------------------------------
# The trainers of `tokenizers` iterate Rust hash maps, so the same data can give different vocabularies; each style
# below removes that: see the comments.


def _specials(tokens: list[str]) -> list[AddedToken]:
    return [AddedToken(token, special=True, normalized=False) for token in tokens]


def _rebuilt(tokenizer: Tokenizer, model: models.Model, specials: list[str]) -> Tokenizer:
    """``tokenizer``'s pipeline around a new ``model``, with only ``specials`` as added tokens."""
    fresh = Tokenizer(model)
    fresh.normalizer = tokenizer.normalizer
    fresh.pre_tokenizer = tokenizer.pre_tokenizer
    fresh.decoder = tokenizer.decoder
    fresh.add_special_tokens(_specials(specials))
    return fresh


def _template(tokenizer: Tokenizer, start: str, end: str) -> processors.TemplateProcessing:
    """The template "start $A end" (a pair: $B typed 1), as ModernBERT, DeBERTa-v3, XLM-R and EuroBERT have it."""
    return processors.TemplateProcessing(
        single=f"{start} $A {end}",
        pair=f"{start} $A {end} $B:1 {end}:1",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in (start, end)],
    )


def _wordpiece(sentences: list[str]) -> Tokenizer:
    """BERT's style: lowercasing BertNormalizer, BertPreTokenizer, WordPiece with "##" continuations.

    WordPieceTrainer gives "##x" ids in hash-map order, and those ids break ties between equally frequent merges:
    the vocabulary varied from run to run. Passing every "##x" in as a (sorted) special token fixes their ids;
    the tokenizer is then rebuilt with only the five real special tokens as added tokens.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    chars = sorted({c for sentence in sentences for c in tokenizer.normalizer.normalize_str(sentence) if c != " "})
    trainer = trainers.WordPieceTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials + [f"##{c}" for c in chars], show_progress=False
    )
    tokenizer.train_from_iterator(sentences, trainer)
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    tokenizer = _rebuilt(tokenizer, models.WordPiece(vocab, unk_token="[UNK]"), specials)
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return tokenizer


def _byte_level_bpe(
    sentences: list[str], first: list[str], last: list[str], pre_tokenizer: pre_tokenizers.PreTokenizer | None = None
) -> Tokenizer:
    """GPT-2's style: BPE over bytes; special tokens ``first`` take the lowest ids, ``last`` follow the merges.

    ``pre_tokenizer`` defaults to ByteLevel(add_prefix_space=False), as roberta-base and ModernBERT-base save it.
    Deterministic as it is: all 256 bytes are in the (sorted) initial alphabet, so no id depends on hash order.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(last),
        special_tokens=first,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer)
    tokenizer.add_special_tokens(_specials(last))
    return tokenizer


def _unigram(sentences: list[str], first: list[str], last: list[str], unk: str) -> Tokenizer:
    """SentencePiece's style: Unigram over Metaspace pieces ("▁" starts every word, prepend_scheme "always").

    UnigramTrainer's scores carry float noise from hash-ordered sums (and characters it adds back get scores in
    hash order), which reordered near-equal pieces. The set of pieces came out the same in every run tried; their
    scores are rounded to 0.01 and ties sorted by piece.
    """
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE - len(last), special_tokens=first, unk_token=unk, show_progress=False
    )
    tokenizer.train_from_iterator(sentences, trainer)
    pieces = [(piece, round(score, 2)) for piece, score in json.loads(tokenizer.to_str())["model"]["vocab"]]
    vocab = [(token, 0.0) for token in first] + sorted(
        (item for item in pieces if item[0] not in first), key=lambda item: (-item[1], item[0])
    )
    return _rebuilt(tokenizer, models.Unigram(vocab, unk_id=first.index(unk), byte_fallback=False), first + last)


def _bert_style(class_name: str, sentences: list[str]):
    """BERT's and ELECTRA's tokenizer: WordPiece with BertProcessing, [CLS] ... [SEP]."""
    tokenizer = _wordpiece(sentences)
    wrapped = getattr(transformers, class_name)(tokenizer_object=tokenizer, do_lower_case=True)
    wrapped.backend_tokenizer.post_processor = tokenizer.post_processor  # 5.x's BertTokenizer sets a template
    return wrapped


def _roberta_style(sentences: list[str]):
    """roberta-base's tokenizer: byte-level BPE, RobertaProcessing <s> ... </s> with trimmed offsets."""
    tokenizer = _byte_level_bpe(sentences, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"])
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), trim_offsets=True
    )
    wrapped = transformers.RobertaTokenizerFast(tokenizer_object=tokenizer, add_prefix_space=False, trim_offsets=True)
    wrapped.backend_tokenizer.post_processor = tokenizer.post_processor
    return wrapped


def _modernbert_style(sentences: list[str]):
    """ModernBERT-base's tokenizer: byte-level BPE, a plain PreTrainedTokenizerFast with "[CLS] $A [SEP]"."""
    tokenizer = _byte_level_bpe(sentences, [], ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    tokenizer.post_processor = _template(tokenizer, "[CLS]", "[SEP]")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


# Llama 3's pre-tokenizer split, which EuroBERT's tokenizer (Llama 3's, <|mask|> in a reserved slot) keeps
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _eurobert_style(sentences: list[str]):
    """EuroBERT's tokenizer: Llama 3's regex split then ByteLevel BPE, "<|begin_of_text|> $A <|end_of_text|>"."""
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer = _byte_level_bpe(sentences, [], ["<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"], pre)
    tokenizer.post_processor = _template(tokenizer, "<|begin_of_text|>", "<|end_of_text|>")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        mask_token="<|mask|>",
        model_input_names=["input_ids", "attention_mask"],
    )


def _deberta_v3_style(sentences: list[str]):
    """deberta-v3-base's tokenizer: SentencePiece Unigram, [CLS] $A [SEP], [MASK] after the pieces."""
    tokenizer = _unigram(sentences, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], ["[MASK]"], unk="[UNK]")
    tokenizer.post_processor = _template(tokenizer, "[CLS]", "[SEP]")
    wrapped = transformers.DebertaV2TokenizerFast(tokenizer_object=tokenizer)
    wrapped.backend_tokenizer.post_processor = tokenizer.post_processor
    return wrapped


def _xlm_roberta_style(sentences: list[str]):
    """xlm-roberta-base's tokenizer: SentencePiece Unigram, <s> $A </s>, <mask> after the pieces."""
    tokenizer = _unigram(sentences, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], unk="<unk>")
    tokenizer.post_processor = _template(tokenizer, "<s>", "</s>")
    wrapped = transformers.XLMRobertaTokenizerFast(tokenizer_object=tokenizer)
    wrapped.backend_tokenizer.post_processor = tokenizer.post_processor
    return wrapped


TOKENIZERS: dict[str, Callable[[list[str]], transformers.PreTrainedTokenizerBase]] = {
    "bert": partial(_bert_style, "BertTokenizerFast"),
    "roberta": _roberta_style,
    "xlm-roberta": _xlm_roberta_style,
    "electra": partial(_bert_style, "ElectraTokenizerFast"),
    "deberta-v2": _deberta_v3_style,
    "modernbert": _modernbert_style,
    "eurobert": _eurobert_style,
}

# --- configs -----------------------------------------------------------------------------------------------------

# What sets each family apart, as in its base checkpoint on the Hub (bert-base-uncased, roberta-base,
# xlm-roberta-base, BioM-ELECTRA, microsoft/deberta-v3-base, answerdotai/ModernBERT-base, EuroBERT/EuroBERT-210m),
# at tiny sizes; the shared sizes are in make_checkpoint.
CONFIGS: dict[str, dict] = {
    "bert": {},
    "roberta": {"max_position_embeddings": MAX_LENGTH + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
    "xlm-roberta": {"max_position_embeddings": MAX_LENGTH + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
    "electra": {"embedding_size": 16},  # < hidden_size, so the model has embeddings_project
    "deberta-v2": {
        "relative_attention": True,
        "position_buckets": 32,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_biased_input": False,
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-7,
    },
    # 4 layers: global, local, local, global
    "modernbert": {"global_attn_every_n_layers": 3, "local_attention": 16, "classifier_pooling": "mean"},
    "eurobert": {
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 250000.0},
    },
}
# config field -> the token whose id it holds
TOKEN_IDS: dict[str, dict[str, str]] = {
    "bert": {"pad_token_id": "[PAD]"},
    "roberta": {"pad_token_id": "<pad>", "bos_token_id": "<s>", "eos_token_id": "</s>"},
    "xlm-roberta": {"pad_token_id": "<pad>", "bos_token_id": "<s>", "eos_token_id": "</s>"},
    "electra": {"pad_token_id": "[PAD]"},
    "deberta-v2": {"pad_token_id": "[PAD]"},
    "modernbert": {
        "pad_token_id": "[PAD]",
        "bos_token_id": "[CLS]",
        "eos_token_id": "[SEP]",
        "cls_token_id": "[CLS]",
        "sep_token_id": "[SEP]",
    },
    "eurobert": {
        "pad_token_id": "<|end_of_text|>",
        "bos_token_id": "<|begin_of_text|>",
        "eos_token_id": "<|end_of_text|>",
        "mask_token_id": "<|mask|>",
    },
}


def make_checkpoint(
    family: str,
    path: Path | str,
    *,
    num_hidden_layers: int = 4,
    hidden_size: int = 32,
    seed: int = 0,
    config: dict | None = None,
) -> Path:
    """Writes a random ``family`` pretraining model (safetensors) and its tokenizer into ``path``; returns it.

    ``config`` holds config fields to set over the family's `CONFIGS` (a variant, e.g. DeBERTa-v2 with
    ``share_att_key=False``). ``path`` is created; an existing non-empty folder is refused, so that no other
    files end up beside these. The same arguments give the same files.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES} (transformers {transformers.__version__})")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)

    tokenizer = TOKENIZERS[family](training_sentences())
    tokenizer.model_max_length = MAX_LENGTH
    tokenizer.save_pretrained(path)
    if type(tokenizer) is transformers.PreTrainedTokenizerFast:  # TokenizersBackend on 5.x
        _set_tokenizer_class(path, "PreTrainedTokenizerFast")  # 5.x writes TokenizersBackend, unknown to 4.x

    kwargs = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": MAX_LENGTH,
        **CONFIGS[family],
        **(config or {}),
        **{field: tokenizer.convert_tokens_to_ids(token) for field, token in TOKEN_IDS[family].items()},
    }
    backbone = transformers.AutoConfig.for_model(family, **kwargs)
    torch.manual_seed(seed)
    getattr(transformers, PRETRAINING_CLASS[family])(backbone).save_pretrained(path)
    return path


def _set_tokenizer_class(path: Path, name: str) -> None:
    file = path / "tokenizer_config.json"
    tokenizer_config = json.loads(file.read_text(encoding="utf-8"))
    tokenizer_config["tokenizer_class"] = name
    file.write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
