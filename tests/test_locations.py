"""Hub ids and finished model folders, told apart the same way by every command."""

import re

import pytest

from hf_layer_tokclf.base.locations import check_model_folder, check_repo_id, is_repo_id


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


# --------------------------------------------------------------------------------------------
# A model argument that names nothing: a mistyped path, not a Hub error (issue 27 item 1)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A working directory with runs/my-model (a model) and runs/my-data (a folder); the Hub must not be asked."""
    import huggingface_hub

    for name in ("my-model", "my-data"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / "my-model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: asked.append(args) or 1 / 0)
    return asked


@pytest.mark.parametrize(
    "value, nearest",
    [
        ("runs/my-modle", "runs/my-model"),  # a typo: the nearest folder first
        ("runs/does-not-exist", "runs/my-model"),  # nothing near: the model folders there
        ("runs/my-modle/sub", "runs/my-model"),  # the deepest folder that exists is runs
        ("./runs/my-modle", "runs/my-model"),
    ],
)
def test_a_path_under_a_local_folder_is_no_such_folder_with_the_nearest_ones(runs, value, nearest):
    """runs/ is a local folder, so runs/x is a path (never a Hub id): the Hub is not asked."""
    from hf_layer_tokclf.base.locations import check_model_location

    with pytest.raises(ValueError, match=rf"^no such folder: {re.escape(value)}\b") as error:
        check_model_location(value)
    assert nearest in str(error.value) and "Hub" not in str(error.value)
    assert runs == []


def test_the_folders_suggested_are_near_the_typo(runs):
    from hf_layer_tokclf.base.locations import check_model_location

    with pytest.raises(ValueError) as error:
        check_model_location("runs/my-dta")
    assert "did you mean runs/my-data?" in str(error.value)


def test_an_existing_folder_without_config_keeps_its_message(runs):
    from hf_layer_tokclf.base.locations import check_model_location

    with pytest.raises(ValueError, match=r"^runs/my-data: no model here \(no config.json\)\.$"):
        check_model_location("runs/my-data")
    check_model_location("runs/my-model")
    assert runs == []


def test_a_possible_hub_id_offline_says_why_it_could_not_be_fetched(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (as in every test): a Hub id that is not cached cannot be fetched, and that is said."""
    from hf_layer_tokclf.base.locations import check_model_location

    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone-else").mkdir()
    with pytest.raises(ValueError) as error:
        check_model_location("someone/model", cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert message.startswith("no such folder: someone/model")
    assert "As a Hub id, someone/model could not be fetched" in message and "HF_HUB_OFFLINE" in message
    assert "did you mean someone-else?" in message


def test_a_cached_hub_id_passes_offline(tmp_path):
    """The Hub's cache layout (models--owner--name/snapshots/REV): a model fetched before loads offline."""
    from hf_layer_tokclf.base.locations import check_model_location

    repo = tmp_path / "cache" / "models--someone--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    check_model_location("someone/model", cache_dir=tmp_path / "cache")


def test_a_hub_out_of_reach_or_without_the_repository_is_said(tmp_path, monkeypatch):
    """Online, with no connection (the error huggingface_hub raises, from its cause) or no such repository."""
    import httpx
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from hf_layer_tokclf.base import locations

    def unreachable(*args, **kwargs):
        try:
            raise httpx.ConnectError("[Errno -2] Name or service not known")
        except httpx.ConnectError as cause:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from cause

    def missing(*args, **kwargs):
        raise RepositoryNotFoundError(
            "404 Client Error", response=httpx.Response(404, request=httpx.Request("GET", "x"))
        )

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ValueError, match=r"^no such folder: someone/model\. As a Hub id, .* the Hub cannot be reached "
                       r"\(ConnectError: \[Errno -2\] Name or service not known\)"):  # fmt: skip
        locations.check_model_location("someone/model")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(ValueError, match=r"^no such folder: someone/model\. As a Hub id, .* no such repository"):
        locations.check_model_location("someone/model")


def test_a_path_that_cannot_be_a_hub_id_is_not_looked_up(runs):
    from hf_layer_tokclf.base.locations import check_model_location

    for value in ("/no/such/model", "runs/a/b/c", "not a hub id"):
        with pytest.raises(ValueError, match=rf"^no such folder: {re.escape(value)}"):
            check_model_location(value)
    assert runs == []
