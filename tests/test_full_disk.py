"""A full disk: every writer says in one line which file could not be written and how much room
is free, leaves no partial output, and replaces nothing. The disk is a small tmpfs the test
mounts and fills; where mounting is not allowed (not root, no user namespace) the tests skip."""

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SMALL_MODEL, refusal, user_error
from support.synthetic import write_disk_dataset
from test_bad_inputs import photo_folder

from age_gender import files
from age_gender.cli import annotate as annotate_script
from age_gender.cli import cache_faces as cache_script
from age_gender.cli import create_db as create_db_script
from age_gender.cli import demo as demo_script
from age_gender.cli import evaluate as evaluate_script
from age_gender.cli import export as export_script
from age_gender.cli import landmarks as landmarks_script


@pytest.fixture
def small_disk(tmp_path):
    """Mounts a tmpfs of the given size (`small_disk("4m")`) under tmp_path; unmounted after."""
    places = []

    def mount(size: str) -> Path:
        place = tmp_path / f"disk{len(places)}"
        place.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(place)]
        mounted = subprocess.run(command, capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
        places.append(place)
        return place

    yield mount
    for place in places:
        subprocess.run(["umount", "-l", str(place)], check=False)


def write_calls() -> int:
    """Write system calls this process has made (Linux's /proc/self/io)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["syscw"])


def test_room_is_checked_without_writing_where_it_cannot_be_reserved(tmp_path):
    """A ramfs cannot reserve (fallocate: not supported), as some network and FUSE file systems:
    glibc's posix_fallocate would write a byte in each of the 15,000 blocks of 60 MB there."""
    place = tmp_path / "ramfs"
    place.mkdir()
    mounted = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(place)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here ({mounted.stderr.decode().strip()})")
    try:
        before = write_calls()
        files.check_room(place, 60_000_000, "the backup")
        assert write_calls() - before < 100  # a test process's own few, not one per block
        assert not list(place.iterdir())
    finally:
        subprocess.run(["umount", "-l", str(place)], check=False)


@pytest.fixture
def full_disk(small_disk):
    """A 1 MB tmpfs, filled to the last byte: empty files can still be created there (so the
    writability check passes), but no byte can be written."""
    return fill(small_disk("1m"))


def fill(place: Path) -> Path:
    """Fills the file system of `place` to its last byte (with a file named `filler`)."""
    filler = os.open(place / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:
        pass
    os.close(filler)
    return place


def contents(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_every_command_names_the_file_the_full_disk_refused(tmp_path, full_disk, capsys,
                                                             varied_model):  # fmt: skip
    photos = photo_folder(tmp_path / "photos", ["a.png", "b.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths,x_min,y_min,x_max,y_max\n"
                   "0,40,a.png,60,40,200,200\n1,30,b.png,60,40,200,200\n")  # fmt: skip
    photo_folder(tmp_path / "utk", ["30_0_1_20170116174525125.jpg.chip.jpg"])
    model = varied_model / "tiny.keras"
    full = full_disk
    earlier = full / "earlier.csv"  # an earlier output that a failed run must leave as it was
    earlier.write_bytes(b"")
    cases = [
        (demo_script.main,
         ["--image_dir", photos, "--output_dir", full / "demo", "--no-display"]),
        (annotate_script.main,
         [photos, "--output", earlier, "--overwrite", "--model", "dlib-models"]),
        (cache_script.main, ["--csv", csv, "--root", photos, "--output_dir", full / "cache"]),
        (landmarks_script.main, ["--csv", csv, "--root", photos, "--output", full / "eyes.csv"]),
        (create_db_script.main,
         ["--db", "utkface", "--data_dir", tmp_path / "utk", "--output", earlier,
          "--overwrite"]),
        (evaluate_script.main,
         ["--csv", csv, "--root", photos, "--weight_file", model, "--output_dir",
          full / "report"]),
        (export_script.main,
         ["--weight_file", model, "--output_dir", full / "exported", "--format", "onnx"]),
    ]  # fmt: skip
    before = contents(full)
    for main, argv in cases:
        line = refusal(capsys, main, *argv)
        assert os.strerror(errno.ENOSPC) in line and "free there" in line, line
        assert str(full) in line, line
        # What the command made before it failed may stay (empty folders, its lock's place),
        # but no file holds a byte of a partial output, and the earlier output is untouched.
        left = [path for path in full.rglob("*") if path.is_file() and path.name != "filler"]
        assert all(path.stat().st_size == 0 for path in left), (main, left)
        assert earlier.read_bytes() == b""
    assert set(before) <= set(contents(full))


def train_into(folder: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"data.csv={data / 'meta.csv'}",
         f"data.root={data}", *SMALL_MODEL, "train.epochs=1", "train.batch_size=8",
         f"train.output_dir={folder}"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


def test_training_on_a_full_disk_is_refused_before_it_starts(tmp_path, full_disk):
    line = user_error(train_into(full_disk / "run", tmp_path))
    assert f"training needs at least 1.0 MB in {full_disk / 'run'}" in line, line
    assert not (full_disk / "run").exists()


@pytest.mark.slow
def test_a_disk_that_fills_mid_training_is_one_line_not_a_crash(tmp_path, small_disk):
    """Room for Hydra's files and the log, none for the first best model or backup (12 MB and
    more): before, h5py's half-written file ended the run in a segmentation fault."""
    disk = small_disk("4m")
    write_disk_dataset(tmp_path, 32, size=48).to_csv(tmp_path / "meta.csv", index=False)
    line = user_error(train_into(disk / "run", tmp_path))
    # The best model is saved before the backup (an epoch is backed up once saved and logged).
    assert "the best model" in line and "needs at least" in line, line
    assert re.search(r"which has [34]\.\d MB free", line), line  # the 4 MB disk, less the log
    assert not (disk / "run" / "best.keras").exists()
    assert not list((disk / "run").glob("backup/*"))


def test_a_report_replaced_on_a_full_disk_stays_the_earlier_one_whole(tmp_path, small_disk, capsys):
    """Before, predictions.csv and summary.json were the new run's, the plots the old run's."""
    photos = photo_folder(tmp_path / "photos", ["a.png", "b.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n0,40,a.png\n1,30,b.png\n")
    args = ["--csv", csv, "--root", photos, "--model", "dlib-models"]
    evaluate_script.main([str(arg) for arg in [*args, "--output_dir", tmp_path / "first"]])
    disk = small_disk("2m")
    shutil.copytree(tmp_path / "first", disk / "report")
    report = disk / "report" / "dlib-models"
    before = {path.name: path.read_bytes() for path in report.iterdir()}
    csv.write_text("genders,ages,img_paths\n0,41,a.png\n")  # another run's figures
    fill(disk)
    line = refusal(capsys, evaluate_script.main, *args, "--output_dir", disk / "report",
                   "--overwrite")  # fmt: skip
    assert os.strerror(errno.ENOSPC) in line, line
    assert {path.name: path.read_bytes() for path in report.iterdir()} == before
    assert sorted(path.name for path in (disk / "report").iterdir()) == ["dlib-models"]
