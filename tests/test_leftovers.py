"""What a killed writer leaves (`files.atomic_output`'s temporaries) is cleared by the next run
over the same output: each writer that resumes or redoes its output asks `files` for them.

Each leftover here is made by the writer's own code in a process that then dies at a chosen
point, so no test depends on when a kill lands."""

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from age_gender import jobs
from age_gender.apps import demo, evaluation
from age_gender.data import face_cache
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.files import check_output_path, leftovers, remove_leftovers, temporary_path
from age_gender.training import checkpoints

# Enters `atomic_output(argv[1])`, writes a file (or a folder, if argv[2] is "folder") there,
# and dies at os.replace call number argv[3] (0: before any), as a kill at that point would.
STRANDED = """
import os, sys
from pathlib import Path
from age_gender.files import atomic_output
replace, calls, die_at = os.replace, [], int(sys.argv[3])
def dying_replace(source, target):
    calls.append(source)
    if len(calls) == die_at:
        os._exit(9)
    replace(source, target)
os.replace = dying_replace
with atomic_output(Path(sys.argv[1])) as temporary:
    if sys.argv[2] == "folder":
        temporary.mkdir()
        (temporary / "table.csv").write_text("new")
    else:
        temporary.write_bytes(b"partial")
    if die_at == 0:
        os._exit(9)
"""


@dataclasses.dataclass
class Named:
    """What evaluation asks of an estimator to name its report."""

    name: str


def strand(path: Path, folder: bool = False, die_at: int = 0) -> list[Path]:
    """Writes `path` in a process killed mid-write; what it left beside `path`."""
    kind = "folder" if folder else "file"
    died = subprocess.run([sys.executable, "-c", STRANDED, str(path), kind, str(die_at)])
    assert died.returncode == 9
    left = leftovers(path.parent, [path.name])
    assert left, "the killed writer left nothing to clear"
    return left


def test_leftovers_of_dead_writers_go_and_a_live_writers_stay(tmp_path):
    (tmp_path / "a.csv").write_text("earlier")
    dead = strand(tmp_path / "a.csv")
    live = temporary_path(tmp_path / "b.csv")  # this process's, being written
    live.write_text("in progress")
    (tmp_path / ".tmpx.a.csv").write_text("a user's file: not our naming")
    assert remove_leftovers(tmp_path, ["b.csv"]) == 0
    assert remove_leftovers(tmp_path) == len(dead) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [live.name, ".tmpx.a.csv", "a.csv"]
    assert (tmp_path / "a.csv").read_text() == "earlier"


def test_a_killed_writer_not_reaped_yet_left_its_temporary(tmp_path):
    """A writer killed by a signal to its process group stays a zombie until its parent (or a
    container's PID 1, which may never) reaps it: its temporary is a leftover all the same."""
    path = tmp_path / "face.jpg"
    writer = subprocess.Popen([sys.executable, "-c", STRANDED, str(path), "file", "0"])
    stat = Path(f"/proc/{writer.pid}/stat")
    deadline = time.monotonic() + 60
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # dead, and not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert remove_leftovers(tmp_path) == 1 and not list(tmp_path.iterdir())
    writer.wait()


def test_a_users_files_named_like_leftovers_are_kept_where_the_user_writes(tmp_path):
    """Only the outputs a run writes are looked for in a folder the user chose: a file of the
    user's named like a leftover of another output stays, in that folder and below it."""
    (tmp_path / "sub").mkdir()
    for name in (".tmp31999.photo.jpg", "sub/.old31998.notes.txt"):
        (tmp_path / name).write_text("the user's")
    assert remove_leftovers(tmp_path, ["faces.csv"], recursive=True) == 0
    assert len(list(tmp_path.rglob(".*"))) == 2


def test_an_output_named_like_a_temporary_is_refused(tmp_path):
    with pytest.raises(UserError, match="named as this toolkit names its temporary files"):
        check_output_path(tmp_path / ".tmp31102.boxes.csv", overwrite=False)


def test_an_earlier_output_moved_aside_is_there_when_the_output_is_checked(tmp_path):
    (tmp_path / "t.csv").write_text("earlier")
    strand(tmp_path / "t.csv", die_at=0)
    os.replace(tmp_path / "t.csv", temporary_path(tmp_path / "t.csv", "old", pid=dead_pid()))
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        check_output_path(tmp_path / "t.csv", overwrite=False)
    assert (tmp_path / "t.csv").read_text() == "earlier" and not leftovers(tmp_path)


def dead_pid() -> int:
    """A process id that no process has now (a child that ended and was reaped)."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True)  # fmt: skip
    return int(ended.stdout)


def test_a_report_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    report = tmp_path / "reports" / "model"
    report.mkdir(parents=True)
    (report / "table.csv").write_text("earlier")
    strand(report, folder=True, die_at=2)  # killed between moving the old aside and the new in
    assert not report.exists()
    with pytest.raises(UserError, match="holds an earlier report"):  # back, so it counts
        evaluation.check_reports(tmp_path / "reports", [Named("model")], overwrite=False)
    assert (report / "table.csv").read_text() == "earlier"
    assert not leftovers(report.parent) and sorted(report.parent.iterdir()) == [report]


def test_a_report_holding_an_input_is_never_replaced(tmp_path):
    report = tmp_path / "reports" / "model"
    report.mkdir(parents=True)
    labels = report / "labels.csv"
    labels.write_text("img_paths,ages,genders\n")
    with pytest.raises(UserError, match="writing .*model would replace an input file"):
        evaluation.check_reports(tmp_path / "reports", [Named("model")], True, (labels,))
    assert labels.read_text() == "img_paths,ages,genders\n"
    evaluation.check_reports(tmp_path / "reports", [Named("model")], True, (tmp_path,))


def test_a_resumed_face_cache_clears_a_killed_runs_face(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((120, 160, 3), 90, np.uint8))
    frame = pd.DataFrame({"genders": [1], "ages": [30], "img_paths": ["a.jpg"], "x_min": [20],
                          "y_min": [20], "x_max": [80], "y_max": [80]})  # fmt: skip

    def cache():
        return face_cache.cache_faces(frame, tmp_path / "images", tmp_path / "cache",
                                      CropSpec(32), 1.0, 1)  # fmt: skip

    name = cache()["img_paths"][0]
    face = tmp_path / "cache" / name
    face.unlink()  # the face the kill cut short
    strand(face)
    cache()
    assert sorted(path.name for path in face.parent.iterdir()) == [face.name]


def test_resumed_parts_clear_a_killed_part_and_table(tmp_path):
    output = tmp_path / "faces.csv"
    jobs.Parts(output, {"option": 1}, overwrite=False).release()
    folder = output.with_name(".faces.csv.parts")
    strand(folder / "000000.pkl")
    strand(output)
    check_output_path(output, overwrite=False)  # what annotate and landmarks check first
    jobs.Parts(output, {"option": 1}, overwrite=False).release()
    assert not leftovers(folder) and not leftovers(tmp_path)
    assert sorted(path.name for path in folder.iterdir()) == ["lock", "settings.json"]


def test_a_demo_run_again_clears_a_killed_runs_copy(tmp_path):
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photos" / "a.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / "out").mkdir()
    strand(tmp_path / "out" / "a.png")
    demo.check_outputs([photo], ["a.png"], tmp_path / "out", overwrite=False)
    assert not list((tmp_path / "out").iterdir())


def test_a_restored_training_clears_a_killed_backup(tmp_path):
    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    network.compile(optimizer="adam", loss="mse")
    folder = tmp_path / "backup"
    folder.mkdir()
    strand(folder / "epoch-0001.weights.h5")
    assert checkpoints.restore(network, folder) is None
    assert not list(folder.iterdir())


def test_leftovers_are_found_below_a_folder_and_hidden_names_are_kept(tmp_path):
    (tmp_path / "faces" / "ab").mkdir(parents=True)
    strand(tmp_path / "faces" / "ab" / "f.jpg")
    os.mkdir(tmp_path / ".hidden")  # a user's hidden folder: not a leftover
    assert remove_leftovers(tmp_path) == 0
    assert remove_leftovers(tmp_path, recursive=True) == 1
    assert sorted(path.name for path in tmp_path.rglob("*")) == [".hidden", "ab", "faces"]
