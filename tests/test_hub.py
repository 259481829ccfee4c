"""Sharing on the Hub: staging, the fresh-process verification, and the upload through huggingface_hub.

Everything runs up to the network on a tiny trained model. The upload goes through huggingface_hub's
real `HfApi` with its HTTP layer replaced (`set_client_factory` with an `httpx2.MockTransport`): the
fake answers like the Hub and records every request, so nothing ever leaves the machine.
"""

import base64
import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import torch
import yaml
from conftest import REPO, slice_args, tiny_bert_kwargs
from huggingface_hub import constants
from huggingface_hub.utils._http import default_client_factory

from hf_layer_tokclf.base.manifest import CODE_FILES
from hf_layer_tokclf.cli.main import main
from hf_layer_tokclf.sharing import hub, verification
from hf_layer_tokclf.sharing.hub import push_to_hub
from hf_layer_tokclf.sharing.staging import stage
from hf_layer_tokclf.sharing.verification import VerificationError, verify

REPO_ID = "me/tiny-layer-tokclf"
SHARED = {
    "README.md",
    "config.json",
    "configuration_layer_tokclf.py",
    "modeling_layer_tokclf.py",
    "pipeline_layer_tokclf.py",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}
COMMIT_OID = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Answers huggingface_hub's requests as the Hub would, and records them: (method, url, headers, body)."""

    def __init__(self):
        self.requests = []
        self.fail = None  # a function of the request: an exception to raise, or a response to return, or None

    def handle(self, request):
        body = request.read()
        self.requests.append((request.method, request.url, dict(request.headers), body))
        failure = self.fail and self.fail(request)
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return failure
        path = request.url.path
        if path == "/api/repos/create":
            payload = json.loads(body)
            return httpx2.Response(
                200, json={"url": f"https://huggingface.co/{payload['organization']}/{payload['name']}"}
            )
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if "/branch/" in path:
            return httpx2.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular"}
                for f in files
            ]
            return httpx2.Response(200, json={"files": [{**m, "shouldIgnore": False, "oid": None} for m in modes]})
        if path.endswith(".git/info/lfs/objects/batch"):
            objects = [
                {**o, "authenticated": True, "actions": {"upload": {"href": f"https://lfs.example/{o['oid']}"}}}
                for o in json.loads(body)["objects"]
            ]
            return httpx2.Response(200, json={"transfer": "basic", "objects": objects})
        if request.url.host == "lfs.example":
            return httpx2.Response(200)
        if "/commit/" in path:
            url = f"https://huggingface.co/{REPO_ID}/commit/{COMMIT_OID}"
            return httpx2.Response(200, json={"commitUrl": url, "commitOid": COMMIT_OID, "pullRequestUrl": None})
        return httpx2.Response(404, json={"error": f"fake hub: no route for {request.method} {path}"})

    def calls(self):
        """The requests, without huggingface_hub's own fetch of its agent registry (telemetry, errors ignored)."""
        return [(m, url.host, url.path) for m, url, _, _ in self.requests if url.path != "/api/agent-harnesses"]


@pytest.fixture
def fake_hub(monkeypatch):
    fake = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake.handle)))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets it; the fake transport is the guard
    # The legacy LFS protocol is plain HTTP, which the fake answers; hf_xet would talk to its storage by itself.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    yield fake
    huggingface_hub.set_client_factory(default_client_factory)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """A tiny random BERT trained for 2 steps at layer 2 by `train` with --push-to-hub, its push recorded."""
    from transformers import BertConfig, BertModel

    from hf_layer_tokclf.training import train
    from hf_layer_tokclf.training.arguments import ModelArguments

    base = tmp_path_factory.mktemp("tiny-base")
    torch.manual_seed(0)
    BertModel(BertConfig(**tiny_bert_kwargs())).save_pretrained(base)
    tokenizer.save_pretrained(base)
    output_dir = tmp_path_factory.mktemp("tiny") / "model"
    data, args = slice_args(
        output_dir,
        max_steps=2,
        push_to_hub=True,
        hub_model_id=REPO_ID,
        hub_private_repo=True,
        hub_token="hf_fake_token",
    )
    data.max_train_samples, data.max_eval_samples, data.max_test_samples = 16, 8, 8
    pushes, fake = [], FakeHub()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "push_to_hub", lambda *a, **k: pushes.append((a, k)))
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake.handle)))
        try:
            metrics = train.train(ModelArguments(model=str(base), hidden_layer=[2]), data, args)
        finally:
            huggingface_hub.set_client_factory(default_client_factory)
    return output_dir, metrics, {"pushes": pushes, "requests": fake.requests, "args": args}


def staged(folder) -> list[Path]:
    """The files of a staging folder, less its manifest (the record of what was staged, never uploaded)."""
    return [p for p in Path(folder).iterdir() if p.name != ".hf_layer_tokclf.json"]


def copy_model(tiny, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(tiny[0], source)
    return source


def tensor_bytes(path, name):
    """The byte range of one tensor's data in a safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    start, end = json.loads(raw[8 : 8 + length])[name]["data_offsets"]
    return 8 + length + start, 8 + length + end


# --- staging -----------------------------------------------------------------------------------


def test_stage_copies_exactly_the_shared_files(tiny, tmp_path):
    source = copy_model(tiny, tmp_path)
    (source / "checkpoint-2").mkdir()
    (source / "checkpoint-2" / "optimizer.pt").write_bytes(b"optimizer state")
    (source / "runs").mkdir()
    (source / "runs" / "events.out.tfevents.1").write_bytes(b"log")
    for name, content in {
        "training_args.bin": "pickle",
        "trainer_state.json": "{}",
        ".env": "HF_TOKEN=hf_secret",
        "token": "hf_secret",
        ".README.md.abc.tmp": "half a card",
        "eval_test.json": "{}",
        "notes.txt": "mine",
    }.items():
        (source / name).write_text(content)

    staged_paths = stage(source, tmp_path / "staging", repo_id=REPO_ID)

    assert {p.name for p in staged_paths} == {p.name for p in staged(tmp_path / "staging")} == SHARED
    for path in staged_paths:
        if path.name != "README.md":
            assert path.read_bytes() == (source / path.name).read_bytes(), path.name
    assert (tmp_path / "staging" / "README.md").read_text() != (source / "README.md").read_text()  # re-rendered


def test_stage_never_follows_a_symlink(tiny, tmp_path, capsys):
    """A file of an allowed name that links elsewhere (a host file) is refused, never staged nor uploaded."""
    source = copy_model(tiny, tmp_path)
    host = tmp_path / "host-secrets.txt"
    host.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (source / "vocab.txt").unlink(missing_ok=True)
    (source / "vocab.txt").symlink_to(host)
    with pytest.raises(ValueError, match=r"vocab\.txt is a symlink"):
        stage(source, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    argv = ["push", str(source), "--repo-id", REPO_ID, "--dry-run", "--staging-dir", str(tmp_path / "s")]
    assert main([*argv, "--no-custom-code"]) == 2 and "vocab.txt is a symlink" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_card_metadata_parses_back(tiny, tmp_path):
    _, metrics, _ = tiny
    stage(tiny[0], tmp_path / "staging", repo_id=REPO_ID)
    text = (tmp_path / "staging" / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "token-classification"
    assert meta["datasets"] == ["ncbi/ncbi_disease"] and "hf-layer-tokclf" in meta["tags"]
    (index,) = meta["model-index"]
    assert index["name"] == REPO_ID
    scores = {m["type"]: m["value"] for m in index["results"][0]["metrics"]}
    assert scores["f1"] == round(metrics["test_f1"], 4) and index["results"][0]["dataset"]["split"] == "test"
    assert f'repo_id = "{REPO_ID}"' in body and "trust_remote_code=True" in body and 'revision = "<commit sha>"' in body
    assert "**2 of 4** encoder layers" in body and "`O`, `B-Disease`, `I-Disease`" in body


def test_stage_refuses_what_it_cannot_share(tiny, tmp_path):
    source = copy_model(tiny, tmp_path)
    staging = tmp_path / "staging"
    stage(source, staging)
    with pytest.raises(ValueError, match="not empty"):
        stage(source, staging)
    assert len(stage(source, staging, overwrite=True)) == len(SHARED)  # a previous staging may be replaced
    (staging / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"did not write \(notes\.txt\)"):
        stage(source, staging, overwrite=True)
    with pytest.raises(ValueError, match="outside the model folder"):
        stage(source, source / "upload")

    (source / "model.safetensors").rename(source / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle weights only"):
        stage(source, tmp_path / "other")
    config = json.loads((source / "config.json").read_text())
    del config["auto_map"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no auto_map"):
        stage(source, tmp_path / "other")
    assert not (tmp_path / "other").exists()


# --- verification ------------------------------------------------------------------------------


def test_dry_run_verifies_lists_the_files_and_keeps_the_folder(tiny, tmp_path, fake_hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main(["push", str(tiny[0]), "--repo-id", REPO_ID, "--dry-run"]) == 0
    out = capsys.readouterr().out
    folder = next(line for line in out.splitlines() if line.startswith("Dry run")).rsplit(" ", 1)[1]
    try:
        assert {p.name for p in staged(folder)} == SHARED
        for name in SHARED:
            size = (tiny[0] / name).stat().st_size if name != "README.md" else None
            line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
            assert size is None or f"({size:,} bytes)" in line, line
        assert "logits match" in out and "nothing was uploaded" in out
    finally:
        shutil.rmtree(folder)
    assert fake_hub.requests == []


def test_corrupted_weights_are_refused(tiny, tmp_path, fake_hub, monkeypatch):
    real_stage = hub.stage

    def stage_then_corrupt(*args, **kwargs):  # the staged copy still loads, with other numbers in the head
        staged = real_stage(*args, **kwargs)
        weights = next(p for p in staged if p.name == "model.safetensors")
        start, end = tensor_bytes(weights, "classifier.bias")
        raw = bytearray(weights.read_bytes())
        raw[start:end] = struct.pack("<3f", 9.0, -9.0, 0.0)
        weights.write_bytes(bytes(raw))
        return staged

    monkeypatch.setattr(hub, "stage", stage_then_corrupt)
    with pytest.raises(VerificationError, match=r"logits differ.*Nothing was uploaded"):
        push_to_hub(tiny[0], REPO_ID, staging_dir=tmp_path / "staging")
    assert fake_hub.requests == []

    monkeypatch.setattr(hub, "stage", real_stage)
    source = copy_model(tiny, tmp_path)
    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(VerificationError, match=r"does not load.*Nothing was uploaded"):
        push_to_hub(source, REPO_ID)
    assert fake_hub.requests == []


def test_code_that_no_longer_matches_is_refused(tiny, tmp_path, fake_hub):
    source = copy_model(tiny, tmp_path)
    with open(source / "modeling_layer_tokclf.py", "a") as f:
        f.write("\nimport os  # an edit that changes no logits\n")
    with pytest.raises(VerificationError, match=r"modeling_layer_tokclf.py .* is not the installed"):
        push_to_hub(source, REPO_ID)
    assert fake_hub.requests == []

    staged = tmp_path / "staging"
    stage(tiny[0], staged)
    code = staged / "configuration_layer_tokclf.py"
    code.write_text(code.read_text() + "\n# edited after staging\n")
    with pytest.raises(VerificationError, match=r"configuration_layer_tokclf\.py"):
        verify(staged, tiny[0])


def test_code_that_computes_something_else_is_refused(tiny, tmp_path, monkeypatch):
    """Second line of defence: even if the byte check were passed, the logits comparison catches a change."""
    package = tmp_path / "package"
    package.mkdir()
    for name in CODE_FILES:
        shutil.copyfile(verification.MODEL_DIR / name, package / name)
    modeling = package / "modeling_layer_tokclf.py"
    source_code = modeling.read_text()
    assert source_code.count("logits = self.classifier(") == 1
    modeling.write_text(source_code.replace("logits = self.classifier(", "logits = 1.5 * self.classifier("))
    monkeypatch.setattr(verification, "MODEL_DIR", package)
    staged = tmp_path / "staging"
    stage(tiny[0], staged)
    shutil.copyfile(modeling, staged / modeling.name)
    with pytest.raises(VerificationError, match="logits differ") as error:
        verify(staged, tiny[0])
    assert "entities" not in error.value.problems[0]


# --- upload ------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")  # huggingface_hub's LFS PUT, not ours
def test_upload_makes_one_commit_with_exactly_the_staged_files(tiny, tmp_path, fake_hub):
    staging = tmp_path / "staging"
    result = push_to_hub(
        tiny[0], REPO_ID, private=True, revision="v1", commit_message="Add the model", staging_dir=staging
    )

    assert result.commit_oid == COMMIT_OID and result.commit_url.endswith(COMMIT_OID)
    calls = fake_hub.calls()
    assert [path for _, host, path in calls if host == "huggingface.co"] == [
        "/api/repos/create",
        f"/api/models/{REPO_ID}/branch/v1",
        "/api/validate-yaml",
        f"/api/models/{REPO_ID}/preupload/v1",
        f"/{REPO_ID}.git/info/lfs/objects/batch",
        f"/api/models/{REPO_ID}/commit/v1",
    ]
    hub_headers = [h for _, url, h, _ in fake_hub.requests if url.host == "huggingface.co" and "agent" not in url.path]
    assert all(h["authorization"] == "Bearer hf_fake_token" for h in hub_headers)  # HF_TOKEN, via get_token
    (create,) = [json.loads(body) for _, url, _, body in fake_hub.requests if url.path == "/api/repos/create"]
    assert create.get("visibility", "private" if create.get("private") else None) == "private" and (
        create["organization"],
        create["name"],
    ) == tuple(REPO_ID.split("/"))

    files = {p.name: p.read_bytes() for p in staged(staging)}
    assert set(files) == SHARED
    weights_sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    (put,) = [r for r in fake_hub.requests if r[1].host == "lfs.example"]
    assert put[0] == "PUT" and put[1].path == f"/{weights_sha}" and put[3] == files["model.safetensors"]

    (commit,) = [r for r in fake_hub.requests if "/commit/" in r[1].path]
    lines = [json.loads(line) for line in commit[3].decode().splitlines()]
    assert lines[0] == {"key": "header", "value": {"summary": "Add the model", "description": ""}}
    regular = {e["value"]["path"]: base64.b64decode(e["value"]["content"]) for e in lines if e["key"] == "file"}
    lfs = {e["value"]["path"]: e["value"] for e in lines if e["key"] == "lfsFile"}
    assert regular == {name: content for name, content in files.items() if name != "model.safetensors"}
    assert set(lfs) == {"model.safetensors"} and lfs["model.safetensors"]["oid"] == weights_sha
    assert len(lines) == 1 + len(SHARED)  # the header, one entry per file, nothing else


def unreachable(request):
    return httpx2.ConnectError("[Errno -2] Name or service not known", request=request)


def forbidden_commit(request):
    if "/commit/" in request.url.path:
        return httpx2.Response(403, json={"error": "You don't have the rights to create a commit"}, request=request)
    return None


@pytest.mark.parametrize(
    ("failure", "message", "last_call"),
    [
        (
            unreachable,
            "could not reach the Hub (ConnectError: [Errno -2] Name or service not known). Nothing was uploaded.",
            "/api/repos/create",
        ),
        (
            forbidden_commit,
            "(403: You don't have the rights to create a commit); it needs write access",
            f"/api/models/{REPO_ID}/commit/main",
        ),
    ],
    ids=["unreachable", "forbidden-commit"],
)
@pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
def test_network_failures_are_one_clear_line(tiny, fake_hub, monkeypatch, capsys, failure, message, last_call):
    monkeypatch.setattr(hub, "verify", lambda *a, **k: {"max_abs_diff": 0.0, "entities": []})  # tested above
    fake_hub.fail = failure
    assert main(["push", str(tiny[0]), "--repo-id", REPO_ID]) == 1
    err = capsys.readouterr().err.splitlines()[-1]  # after huggingface_hub's progress bar, if any
    assert err.startswith(f"hf-layer-tokclf push: error: Uploading to {REPO_ID} failed: ")
    assert message in err
    assert "Nothing was uploaded." in err or "No commit was made, so none of the files are in the repository." in err
    paths = [path for _, _, path in fake_hub.calls()]
    assert paths[-1] == last_call and sum("/commit/" in path for path in paths) <= 1


@pytest.mark.parametrize("repo_id", ["no-owner", "a/b/c", "me/has space", "me/x--y", "/name", "me/"])
def test_bad_repo_ids_are_refused_first(tiny, fake_hub, repo_id):
    with pytest.raises(ValueError, match=r"OWNER/NAME|Invalid repository id"):
        push_to_hub(tiny[0], repo_id, dry_run=True)
    assert fake_hub.requests == []


def test_missing_token_or_offline_mode_stop_before_anything(tiny, tmp_path, fake_hub, monkeypatch, capsys):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main(["push", str(tiny[0]), "--repo-id", REPO_ID, "--staging-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "No Hugging Face token found: run `hf auth login`, or set HF_TOKEN" in err and err.count("\n") == 1
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        push_to_hub(tiny[0], REPO_ID, token="hf_fake_token")
    assert fake_hub.requests == [] and not (tmp_path / "s").exists()


def test_push_script_is_a_thin_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = ("--repo-id", "--private", "--revision", "--commit-message", "--dry-run", "--staging-dir", "--token")
    for option in (*options, "--no-custom-code"):
        assert option in text
    script = str(REPO / "push_to_hub.py")
    proc = subprocess.run(
        [sys.executable, script, str(tmp_path), "--repo-id", "not a repo"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("push_to_hub.py: error: The repository id must be")


# --- train --push-to-hub -----------------------------------------------------------------------


def test_train_push_to_hub_goes_through_push_to_hub_after_saving(tiny):
    output_dir, _, record = tiny
    assert record["pushes"] == [
        ((output_dir,), {"repo_id": REPO_ID, "private": True, "revision": None, "token": "hf_fake_token"})
    ]
    assert record["requests"] == []  # the Trainer did not push by itself
    assert record["args"].push_to_hub is False


@pytest.mark.parametrize(
    ("options", "message"),
    [([], "--push-to-hub needs --hub-model-id"), (["--hub-model-id", "nobody"], "must be OWNER/NAME")],
)
def test_train_push_to_hub_checks_its_options_before_training(tmp_path, capsys, options, message):
    output_dir = tmp_path / "run"
    argv = ["train", "--train-file", str(tmp_path / "missing.tsv"), "--output-dir", str(output_dir), "--push-to-hub"]
    assert main([*argv, *options]) == 2
    assert message in capsys.readouterr().err
    assert not output_dir.exists()


# --- push --no-custom-code: the stock form -----------------------------------------------------

STOCK_SHARED = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_no_custom_code_dry_run_stages_and_verifies_the_stock_form(tiny, tmp_path, fake_hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    staging = tmp_path / "staging"
    argv = ["push", str(tiny[0]), "--repo-id", REPO_ID, "--dry-run", "--no-custom-code", "--staging-dir", str(staging)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "the stock form, no trust_remote_code" in out and "logits match" in out and "nothing was uploaded" in out
    assert {p.name for p in staged(staging)} == STOCK_SHARED
    config = json.loads((staging / "config.json").read_text())
    assert "auto_map" not in config and "custom_pipelines" not in config and "hidden_layer" not in config
    assert config["architectures"] == ["BertForTokenClassification"] and config["num_hidden_layers"] == 2
    card = (staging / "README.md").read_text()
    assert (
        "**stock form**" in card and "trust_remote_code=True" not in card and "decodes" not in card.split("## Usage")[1]
    )
    assert "labels each token on its own (argmax)" in card and "modeling_layer_tokclf.py" not in card
    assert fake_hub.requests == []


def test_no_custom_code_verification_catches_what_differs(tiny, tmp_path):
    staging = tmp_path / "staging"
    stage(tiny[0], staging, custom_code=False)
    shutil.copyfile(verification.MODEL_DIR / "modeling_layer_tokclf.py", staging / "modeling_layer_tokclf.py")
    with pytest.raises(VerificationError, match=r"unexpected files \['modeling_layer_tokclf.py'\]"):
        verify(staging, tiny[0], custom_code=False)
    (staging / "modeling_layer_tokclf.py").unlink()
    weights = staging / "model.safetensors"
    start, end = tensor_bytes(weights, "classifier.bias")
    raw = bytearray(weights.read_bytes())
    raw[start:end] = struct.pack("<3f", 9.0, -9.0, 0.0)
    weights.write_bytes(bytes(raw))
    with pytest.raises(VerificationError, match="logits differ"):
        verify(staging, tiny[0], custom_code=False)


def test_no_custom_code_refuses_a_model_without_a_stock_form_before_staging(tmp_path, tokenizer, fake_hub, capsys):
    from hf_layer_tokclf import BertForLayerTokenClassification, LayerTokenClassificationConfig

    config = LayerTokenClassificationConfig(**tiny_bert_kwargs(hidden_layer=[1, 2], layer_pooling="concat"))
    BertForLayerTokenClassification(config).save_pretrained(tmp_path / "pooled")
    tokenizer.save_pretrained(tmp_path / "pooled")
    staging = tmp_path / "staging"
    argv = ["push", str(tmp_path / "pooled"), "--repo-id", REPO_ID, "--no-custom-code", "--staging-dir", str(staging)]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("hf-layer-tokclf push: error: ") and "reads one layer" in err
    assert not staging.exists() and fake_hub.requests == []


def test_a_multitask_model_is_staged_with_its_code_and_verified(multitask_dir, tmp_path, fake_hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    staging = tmp_path / "staged"
    argv = ["push", str(multitask_dir), "--repo-id", REPO_ID, "--dry-run", "--staging-dir", str(staging)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert {*CODE_FILES, "modeling_multitask_layer_tokclf.py"} <= {p.name for p in staging.iterdir()}
    assert "logits match" in out and "nothing was uploaded" in out
    assert fake_hub.requests == []
