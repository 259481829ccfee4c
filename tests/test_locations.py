"""Hub ids and finished model folders, told apart the same way by every command."""

import pytest

from hf_layer_tokclf.locations import check_model_folder, check_repo_id, is_repo_id


@pytest.mark.parametrize("value", ["ncbi_disease", "ncbi/ncbi_disease", "bigbio/bc5cdr", "a.b-c_d/e.f"])
def test_repo_ids(value):
    assert is_repo_id(value)


@pytest.mark.parametrize(
    "value", ["./model", "~/runs/x", "runs/a/b", "/abs/path", "a--b/c", "a/../b", "with space", "", None, 3, "x" * 97]
)
def test_paths_and_junk_are_not_repo_ids(value):
    assert not is_repo_id(value)


def test_owner_is_required_where_asked():
    assert is_repo_id("alice/model", owner=True) and not is_repo_id("model", owner=True)
    assert check_repo_id("alice/model") == "alice/model"
    with pytest.raises(ValueError, match="must be OWNER/NAME"):
        check_repo_id("model")
    with pytest.raises(ValueError, match="Invalid repository id 'alice/bad--name'"):
        check_repo_id("alice/bad--name")


def test_a_folder_without_config_names_the_checkpoints_a_killed_run_left(tmp_path):
    (tmp_path / "checkpoint-20").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    with pytest.raises(ValueError, match=r"no model here \(no config.json\)\. It holds checkpoints \(checkpoint-10, "):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    check_model_folder(tmp_path)


def test_an_empty_folder_has_no_model_and_no_hint(tmp_path):
    with pytest.raises(ValueError, match=r"no model here \(no config.json\)\.$"):
        check_model_folder(tmp_path)
