"""Output folders and files: a run writes and deletes only what it wrote (its manifest lists it), never through a
symlink, one run at a time (a lock); an overwrite replaces what a run wrote and nothing else; whole folders swap
in atomically."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import pytest

from hf_layer_tokclf.base.files import OutputExistsError, copy_file, current_umask, open_for_resume, open_new
from hf_layer_tokclf.base.locks import RunInProgressError
from hf_layer_tokclf.base.manifest import LOCK, MANIFEST, output_names, read_manifest, record_outputs
from hf_layer_tokclf.base.outputs import (
    RUN_OUTPUTS,
    Outputs,
    atomic_folder,
    check_output_path,
    claim_output_dir,
    remove_outputs,
)


def claim_run(path, **options):
    """A training run's claim of its folder, released at once (the lock is not what these tests are about)."""
    with claim_output_dir(path, RUN_OUTPUTS, **options) as claim:
        return claim.path


OLD_RUN = [
    "model.safetensors",
    "model-00001-of-00002.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "configuration_layer_tokclf.py",
    "modeling_layer_tokclf.py",
    "tokenizer.json",
    "vocab.txt",
    "README.md",
    "metrics.json",
    "training_args.bin",
    ".metrics.json.k2j4h5ab.tmp",  # left by a run killed while it wrote metrics.json
]


def make_old_run(folder: Path) -> None:
    """A finished training run: its files, listed in its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    with claim_output_dir(folder, RUN_OUTPUTS, resume=True) as claim:
        for name in OLD_RUN:
            (folder / name).write_text("old run")
        (folder / "checkpoint-8").mkdir()
        (folder / "checkpoint-8" / "optimizer.pt").write_text("old run")
        claim.finish()


def make_users_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("mine")
    (folder / "data").mkdir()
    (folder / "data" / "train.tsv").write_text("Cancer\tB-Disease\n")
    (folder / "checkpoint-notes").write_text("mine too: not a checkpoint-N folder")


def test_overwrite_replaces_the_runs_files_and_keeps_everything_else(tmp_path):
    make_old_run(tmp_path / "run")
    make_users_files(tmp_path / "run")
    claim_run(tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [MANIFEST, "checkpoint-notes", "data", "notes.txt"]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / "data" / "train.tsv").is_file()


def test_without_overwrite_a_folder_holding_anything_is_refused(tmp_path):
    make_old_run(tmp_path)
    make_users_files(tmp_path)
    with pytest.raises(OutputExistsError, match="not empty; pass --overwrite-output-dir"):
        claim_run(tmp_path)
    assert claim_run(tmp_path, resume=True) == tmp_path  # --resume keeps what is there
    assert (tmp_path / "README.md").read_text() == "old run"


@pytest.fixture
def nothing_deleted(monkeypatch):
    """Any deletion fails the test (and, on a broken implementation, protects the real files)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"deleted {args[:1]}")

    for module, name in ((shutil, "rmtree"), (os, "unlink"), (os, "remove"), (os, "rmdir"), (Path, "unlink")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, Path]:
    """A home folder and a working directory two levels below a parent, each holding a run and a user's file."""
    home, parent = tmp_path / "home", tmp_path / "parent"
    cwd = parent / "project"
    make_old_run(parent)
    for folder in (home, cwd):
        make_old_run(folder)
        make_users_files(folder)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    (tmp_path / "link").symlink_to(cwd)
    return {"home": home, "cwd": cwd, ".": Path("."), "cwd parent": parent, "link": tmp_path / "link"}


@pytest.mark.parametrize("place", ["home", "cwd", ".", "cwd parent", "link", "root"])
def test_overwrite_refuses_home_root_and_the_working_directory_chain(places, nothing_deleted, place):
    folder = Path("/") if place == "root" else places[place]
    before = {p: sorted(os.listdir(p)) for p in set(places.values())}
    with pytest.raises(OutputExistsError, match="refusing to overwrite") as error:
        claim_run(folder, overwrite=True)
    assert "use a new subfolder" in str(error.value)
    assert {p: sorted(os.listdir(p)) for p in before} == before


def test_a_new_subfolder_of_the_working_directory_is_fine(places):
    with claim_output_dir(Path("new-run"), RUN_OUTPUTS, overwrite=True) as claim:
        assert claim.path.is_dir()
    os.mkdir("empty")
    os.chdir("empty")
    assert claim_run(Path("."), overwrite=False) == Path(".")  # an empty cwd, not overwritten


EXPORT = Outputs("export", output_names(("model.onnx", "config.json")), legacy=lambda f: True, exclusive=True)


def test_atomic_folder_swaps_in_the_new_folder_with_normal_permissions(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.onnx").write_text("old")
    (target / "config.json").write_text("old")
    with atomic_folder(target, EXPORT) as building:
        assert building.parent == tmp_path and building != target
        assert (target / "model.onnx").read_text() == "old"  # nothing moves until the block succeeds
        (building / "model.onnx").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one is gone, no temporary left
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "model.onnx"]  # a file the new one lacks went
    assert (target / "model.onnx").read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700


def test_atomic_folder_leaves_the_old_folder_on_error_and_refuses_foreign_files(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.onnx").write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_folder(target, EXPORT) as building:
        (building / "model.onnx").write_text("new")
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "model.onnx").read_text() == "old"
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"notes\.txt"), atomic_folder(target, EXPORT) as building:
        (building / "model.onnx").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx", "notes.txt"]
    assert read_manifest(target) is None  # nothing was written in it


def test_reading_the_umask_leaves_it_alone(monkeypatch):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called"))
        assert current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)


# --- manifests: what a run wrote ---------------------------------------------------------------


def test_a_folder_of_files_and_no_manifest_is_refused_whatever_the_flags(tmp_path, nothing_deleted):
    """The files are named as a run's (README.md, config.json, vocab.txt, checkpoint-7), but no run wrote them."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("README.md", "config.json", "vocab.txt"):
        (folder / name).write_text("mine")
    (folder / "checkpoint-7").mkdir()
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(OutputExistsError, match=r"did not write \(README\.md, checkpoint-7, config\.json, vocab"):
            claim_run(folder, **flags)
    assert sorted(os.listdir(folder)) == ["README.md", "checkpoint-7", "config.json", "vocab.txt"]


def test_a_run_of_an_older_version_is_taken_as_a_run(tmp_path):
    """No manifest, but metrics.json with the run's settings (written last by every version): a finished run."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"settings": {"model": "x"}}))
    (folder / "model.safetensors").write_text("weights")
    (folder / "checkpoint-3").mkdir()
    (folder / "notes.txt").write_text("mine")
    claim_run(folder, overwrite=True)
    assert sorted(os.listdir(folder)) == [MANIFEST, "notes.txt"]


def test_an_unlisted_file_of_a_runs_name_in_a_finished_run_is_refused(tmp_path):
    make_old_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoint-8").rename(tmp_path / "run" / "checkpoint-9")  # not what the run listed
    with pytest.raises(OutputExistsError, match=r"did not write \(checkpoint-9\)"):
        claim_run(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "README.md").read_text() == "old run"


def test_a_checkpoint_folder_of_the_users_in_a_run_folder_is_refused(tmp_path):
    """The Trainer's rotation deletes the oldest checkpoint-* folders, checkpoint-best too: refused, not lost."""
    make_old_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoint-best").mkdir()
    (tmp_path / "run" / "checkpoint-notes.txt").write_text("a file: no rotation deletes it")
    before = sorted(os.listdir(tmp_path / "run"))
    with pytest.raises(OutputExistsError, match=r"did not write \(checkpoint-best\)"):
        claim_run(tmp_path / "run", resume=True)
    assert sorted(os.listdir(tmp_path / "run")) == before


def test_a_killed_run_owns_what_bears_its_names(tmp_path):
    """A run killed before it recorded what it wrote (a checkpoint the Trainer saved) still owns it."""
    folder = tmp_path / "run"
    claim = claim_output_dir(folder, RUN_OUTPUTS)
    (folder / "checkpoint-2").mkdir()
    (folder / "notes.txt").write_text("mine")
    del claim  # killed: no finish
    claim_run(folder, overwrite=True)
    assert sorted(os.listdir(folder)) == [MANIFEST, "notes.txt"]


def test_another_commands_folder_is_refused(tmp_path):
    with claim_output_dir(tmp_path / "sweep", Outputs("sweep", output_names(("sweep.json",)))) as claim:
        (tmp_path / "sweep" / "sweep.json").write_text("{}")
        claim.finish()
    with pytest.raises(OutputExistsError, match="holds the output of `sweep`, not of `train`"):
        claim_run(tmp_path / "sweep", overwrite=True)


def test_overwrite_never_follows_a_symlink(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("root")
    folder = tmp_path / "run"
    make_old_run(folder)
    (folder / "vocab.txt").unlink()
    (folder / "vocab.txt").symlink_to(host / "passwd")  # a listed name, now a link: never written through
    with pytest.raises(OutputExistsError, match=r"vocab\.txt is a symlink"):
        claim_run(folder, resume=True)
    (folder / "checkpoint-8").rename(tmp_path / "moved")
    (folder / "checkpoint-8").symlink_to(host)  # a listed folder, now a link
    remove_outputs(folder)  # an overwrite's deletion: the links go, never what they point to
    assert (host / "passwd").read_text() == "root"
    assert not (folder / "vocab.txt").is_symlink() and not (folder / "checkpoint-8").is_symlink()


def test_a_listed_folder_with_a_manifest_of_its_own_keeps_what_it_does_not_list(tmp_path):
    outputs = Outputs("sweep", output_names((), (re.compile(r"^probe-layer-\d+$"),)))
    with claim_output_dir(tmp_path / "sweep", outputs) as claim:
        make_old_run(tmp_path / "sweep" / "probe-layer-2")
        claim.finish()
    (tmp_path / "sweep" / "probe-layer-2" / "notes.txt").write_text("mine")
    assert read_manifest(tmp_path / "sweep")["files"] == ["probe-layer-2"]
    with claim_output_dir(tmp_path / "sweep", outputs, overwrite=True):
        assert os.listdir(tmp_path / "sweep" / "probe-layer-2") == ["notes.txt"]


def test_a_manifest_lists_names_relative_to_its_folder(tmp_path):
    with claim_output_dir(tmp_path / "run", RUN_OUTPUTS) as claim:
        (tmp_path / "run" / "config.json").write_text("{}")
        claim.record("README.md")  # listed before it is written
        claim.finish()
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["command"] == "train" and manifest["complete"] is True
    assert manifest["files"] == ["README.md", "config.json"]
    assert sorted(os.listdir(tmp_path / "run")) == [MANIFEST, "config.json"]  # the lock is gone


def test_a_claim_that_wrote_nothing_leaves_no_folder(tmp_path):
    claim_output_dir(tmp_path / "new", RUN_OUTPUTS).release()
    assert not (tmp_path / "new").exists()
    with pytest.raises(OutputExistsError, match="is a file"):
        claim_run(_a_file(tmp_path))


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


def test_record_needs_a_claimed_folder(tmp_path):
    with pytest.raises(OutputExistsError, match="claim it"):
        record_outputs(tmp_path, ["x"])


# --- locks: one run at a time ------------------------------------------------------------------


def _hold(folder: str, ready, done) -> None:
    """Another process: claims ``folder`` and holds it until told (or killed)."""
    claim = claim_output_dir(folder, RUN_OUTPUTS)
    ready.set()
    done.wait(60)
    claim.release()


def test_a_second_run_is_told_a_run_is_in_progress_and_a_dead_ones_lock_is_taken_over(tmp_path):
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=_hold, args=(str(tmp_path / "run"), ready, done))
    other.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunInProgressError, match=rf"a run is in progress \(pid {other.pid}\b"):
            claim_run(tmp_path / "run", overwrite=True)
        assert (tmp_path / "run" / LOCK).is_file()
    finally:
        other.kill()  # killed: its lock stays behind
        other.join()
    assert (tmp_path / "run" / LOCK).is_file()
    assert claim_run(tmp_path / "run", overwrite=True) == tmp_path / "run"  # stale: taken over
    assert not (tmp_path / "run" / LOCK).exists()


# --- single files -------------------------------------------------------------------------------


def test_single_files_are_never_opened_through_a_symlink(tmp_path):
    host = tmp_path / "host.txt"
    host.write_text("precious")
    (tmp_path / "link").symlink_to(host)
    with pytest.raises(OutputExistsError, match="already exists"):
        open_new(tmp_path / "link")
    with pytest.raises(OutputExistsError, match="symlink"):
        open_for_resume(tmp_path / "link")
    with pytest.raises(OutputExistsError, match="symlink"):
        copy_file(tmp_path / "link", tmp_path / "copy")
    with pytest.raises(OutputExistsError, match="already exists"):
        copy_file(host, tmp_path / "link")
    assert host.read_text() == "precious" and not (tmp_path / "copy").exists()
    with open_new(tmp_path / "new") as f:
        f.write(b"new")
    with pytest.raises(OutputExistsError, match="already exists"):
        open_new(tmp_path / "new")


def test_an_output_file_that_is_a_folder_is_refused_even_with_overwrite(tmp_path):
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output_path(tmp_path, overwrite=True)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        check_output_path(tmp_path / "link")  # a dangling link is something there too
    assert check_output_path(tmp_path / "link", overwrite=True) == tmp_path / "link"
    with pytest.raises(OutputExistsError, match="is not a folder"):
        check_output_path(_a_file(tmp_path) / "out.json", overwrite=True)


def test_fill_marked_block_replaces_only_between_the_markers(tmp_path):
    from hf_layer_tokclf.base.files import fill_marked_block, marked_block

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- t -->\nold\n<!-- /t -->\nrest\n", encoding="utf-8")
    assert fill_marked_block(readme, "<!-- t -->", "<!-- /t -->", "new") is True
    assert readme.read_text(encoding="utf-8") == "intro\n<!-- t -->\nnew\n<!-- /t -->\nrest\n"
    assert fill_marked_block(readme, "<!-- t -->", "<!-- /t -->", "new") is False
    assert (
        marked_block(readme.read_text(encoding="utf-8"), "<!-- t -->", "<!-- /t -->") == "<!-- t -->\nnew\n<!-- /t -->"
    )
    with pytest.raises(ValueError, match=r"no <!-- u --> \.\.\. <!-- /u --> block"):
        fill_marked_block(readme, "<!-- u -->", "<!-- /u -->", "x")
