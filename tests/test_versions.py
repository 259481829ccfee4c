"""What the test run itself builds and leaves: tests/versions.py's cached environments are built once, even by
concurrent workers, and temporary files stay inside pytest's folder (conftest)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from versions import build_once

TESTS = Path(__file__).resolve().parent

# A slow, non-atomic build that logs its start and end: a second process must neither build again nor
# see the folder before it is complete.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from versions import build_once

    folder, log = Path(sys.argv[2]), Path(sys.argv[3])

    def build(target):
        with log.open("a") as out:
            out.write("start\\n")
        target.mkdir(parents=True)
        time.sleep(1.5)
        (target / "payload").write_text("complete")
        with log.open("a") as out:
            out.write("end\\n")

    build_once(folder, "stamp-1", build)
    print((folder / "payload").read_text())
    """
)


def test_concurrent_workers_build_once_and_both_see_it_complete(tmp_path):
    folder, log = tmp_path / "cache" / "env", tmp_path / "log"
    cmd = [sys.executable, "-c", CHILD, str(TESTS), str(folder), str(log)]
    children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [child.communicate(timeout=60) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "complete"
    assert log.read_text().split() == ["start", "end"]


def test_a_changed_stamp_or_an_interrupted_build_is_rebuilt(tmp_path):
    folder = tmp_path / "env"
    builds: list[str] = []

    def build(target: Path) -> None:
        target.mkdir()
        (target / "payload").write_text(str(len(builds)))
        builds.append("built")

    build_once(folder, "a", build)
    build_once(folder, "a", build)
    assert builds == ["built"]
    build_once(folder, "b", build)  # the specs changed
    assert builds == ["built"] * 2

    def interrupted(target: Path) -> None:
        target.mkdir()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_once(folder, "c", interrupted)
    assert folder.is_dir()
    build_once(folder, "c", build)  # the half-built folder is not taken for a finished one
    assert builds == ["built"] * 3
    assert (folder / "payload").read_text() == "2"


def test_temporary_files_of_this_process_and_its_children_stay_in_pytest_folder(temporary_files_in_pytest_tmp):
    folder = temporary_files_in_pytest_tmp
    assert Path(tempfile.mkdtemp()).parent == folder
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp())"], capture_output=True, text=True, check=True
    )
    assert Path(child.stdout.strip()).parent == folder


def test_the_lowest_environment_is_rebuilt_for_a_dependency_not_for_pytests_settings():
    """Its stamp follows what pip installs from pyproject.toml; an edit of pytest's options (as this issue's
    --durations) must not cost CI another torch install."""
    from versions import lowest_venv_stamp

    pyproject = (TESTS.parent / "pyproject.toml").read_text(encoding="utf-8")
    stamp = lowest_venv_stamp(pyproject)
    assert "--durations=" in pyproject
    assert lowest_venv_stamp(pyproject.replace("--durations=", "--durations=1")) == stamp
    assert lowest_venv_stamp(pyproject.replace('"torch', '"torch>=9.9,<10; torch', 1)) != stamp
