"""Pre-split words get the running text's subwords in every family; saved tokenizers load on 4.x too."""

import json

import pytest
from transformers import AutoTokenizer

from hf_layer_tokclf.model.tokenization import load_tokenizer, needs_prefix_space, save_tokenizer

BYTE_LEVEL = ("roberta", "modernbert", "eurobert")
WORDS = ["Germline", "mutations", "in", "BRCA1", "(", "1", ")"]


ALL = ["bert", "roberta", "xlm-roberta", "electra", "deberta-v2", "modernbert", "eurobert"]


@pytest.mark.parametrize("family", ALL)
def test_only_byte_level_tokenizers_need_the_prefix_space_and_get_it(family, checkpoints):
    if family not in checkpoints:
        pytest.skip("this transformers has no EuroBERT")
    assert needs_prefix_space(AutoTokenizer.from_pretrained(checkpoints[family])) == (family in BYTE_LEVEL)
    tokenizer = load_tokenizer(checkpoints[family])
    assert not needs_prefix_space(tokenizer)
    # Each pre-split word gets the subwords it has after a space in running text.
    for word in WORDS[1:4]:
        alone = tokenizer([[word]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
        in_text = tokenizer(f"Germline {word}", add_special_tokens=False)["input_ids"]
        assert in_text[-len(alone) :] == alone, (word, tokenizer.convert_ids_to_tokens(alone))


def test_saved_tokenizers_name_a_class_4x_has(checkpoints, tmp_path):
    tokenizer = load_tokenizer(checkpoints["modernbert"])
    save_tokenizer(tokenizer, tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)  # plain transformers: the prefix space was saved
    words = reloaded(WORDS, is_split_into_words=True)["input_ids"]
    assert words == tokenizer(WORDS, is_split_into_words=True)["input_ids"]
