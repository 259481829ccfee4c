"""Output folders: an overwrite replaces what a run wrote and nothing else; whole folders swap in atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hf_layer_tokclf.files import OutputExistsError, atomic_folder, current_umask, prepare_output_dir

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
    folder.mkdir(parents=True, exist_ok=True)
    for name in OLD_RUN:
        (folder / name).write_text("old run")
    (folder / "checkpoint-8").mkdir()
    (folder / "checkpoint-8" / "optimizer.pt").write_text("old run")


def make_users_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("mine")
    (folder / "data").mkdir()
    (folder / "data" / "train.tsv").write_text("Cancer\tB-Disease\n")
    (folder / "checkpoint-notes").write_text("mine too: not a checkpoint-N folder")


def test_overwrite_replaces_the_runs_files_and_keeps_everything_else(tmp_path):
    make_old_run(tmp_path / "run")
    make_users_files(tmp_path / "run")
    prepare_output_dir(tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-notes", "data", "notes.txt"]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / "data" / "train.tsv").is_file()


def test_without_overwrite_a_folder_holding_anything_is_refused(tmp_path):
    make_users_files(tmp_path)
    with pytest.raises(OutputExistsError, match="not empty; pass --overwrite-output-dir"):
        prepare_output_dir(tmp_path)
    assert prepare_output_dir(tmp_path, resume=True) == tmp_path  # --resume keeps what is there


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
    for folder in (home, cwd):
        make_old_run(folder)
        make_users_files(folder)
    make_old_run(parent)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    (tmp_path / "link").symlink_to(cwd)
    return {"home": home, "cwd": cwd, ".": Path("."), "cwd parent": parent, "link": tmp_path / "link"}


@pytest.mark.parametrize("place", ["home", "cwd", ".", "cwd parent", "link", "root"])
def test_overwrite_refuses_home_root_and_the_working_directory_chain(places, nothing_deleted, place):
    folder = Path("/") if place == "root" else places[place]
    before = {p: sorted(os.listdir(p)) for p in set(places.values())}
    with pytest.raises(OutputExistsError, match="refusing to overwrite") as error:
        prepare_output_dir(folder, overwrite=True)
    assert "use a new subfolder" in str(error.value)
    assert {p: sorted(os.listdir(p)) for p in before} == before


def test_a_new_subfolder_of_the_working_directory_is_fine(places):
    assert prepare_output_dir(Path("new-run"), overwrite=True).is_dir()
    os.mkdir("empty")
    os.chdir("empty")
    assert prepare_output_dir(Path("."), overwrite=False) == Path(".")  # an empty cwd, not overwritten


def written(name: str) -> bool:
    return name in {"model.onnx", "config.json"}


def test_atomic_folder_swaps_in_the_new_folder_with_normal_permissions(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.onnx").write_text("old")
    (target / "config.json").write_text("old")
    with atomic_folder(target, written=written) as building:
        assert building.parent == tmp_path and building != target
        assert (target / "model.onnx").read_text() == "old"  # nothing moves until the block succeeds
        (building / "model.onnx").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one is gone, no temporary left
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx"]  # a file the new one lacks went with the old
    assert (target / "model.onnx").read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700


def test_atomic_folder_leaves_the_old_folder_on_error_and_refuses_foreign_files(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.onnx").write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_folder(target, written=written) as building:
        (building / "model.onnx").write_text("new")
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "model.onnx").read_text() == "old"
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"notes\.txt"), atomic_folder(target, written=written) as building:
        (building / "model.onnx").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx", "notes.txt"]


def test_reading_the_umask_leaves_it_alone(monkeypatch):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called"))
        assert current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)
