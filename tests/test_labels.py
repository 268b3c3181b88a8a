"""IMDB-WIKI, UTKFace, IMDB-Clean and APPA-REAL readers against fixtures in the real formats."""

import datetime
import math
import os

import numpy as np
import pandas as pd
import pytest
import scipy.io
from conftest import REPO
from omegaconf import OmegaConf
from support import synthetic

from age_gender import images
from age_gender.apps import annotation
from age_gender.data import labels
from age_gender.errors import UserError


def original_rules(columns: dict, min_score: float = 1.0) -> pd.DataFrame:
    """The original project's create_db.py loop, row by row, as the oracle."""

    def calc_age(taken, dob):
        birth = datetime.datetime.fromordinal(max(int(dob) - 366, 1))
        return taken - birth.year if birth.month < 7 else taken - birth.year - 1

    rows = []
    for index in range(len(columns["dob"])):
        second = columns["second_face_score"][index]
        gender = columns["gender"][index]
        if columns["face_score"][index] < min_score:
            continue
        if not np.isnan(second) and second > 0.0:
            continue
        age = calc_age(columns["photo_taken"][index], columns["dob"][index])
        if not 0 <= age <= 100:
            continue
        if np.isnan(gender):
            continue
        rows.append((int(gender), int(age), columns["full_path"][index]))
    return pd.DataFrame(rows, columns=["genders", "ages", "img_paths"])


def row(dob, taken=2010, gender=1.0, score=3.0, second=np.nan, path="00/a.jpg"):
    return {
        "dob": dob,
        "photo_taken": taken,
        "gender": gender,
        "face_score": score,
        "second_face_score": second,
        "full_path": path,
    }


def write_rows(path, rows, db="imdb"):
    columns = {key: [r[key] for r in rows] for key in rows[0]}
    synthetic.write_imdb_wiki_mat(path, db, columns)
    return columns


def test_every_filter_rule_drops_its_rows(tmp_path):
    born = synthetic.matlab_datenum(datetime.date(1980, 3, 1))
    rows = [
        row(born, path="00/kept.jpg"),
        row(born, score=-np.inf, path="00/no_face.jpg"),
        row(born, score=0.5, path="00/low_score.jpg"),
        row(born, second=2.0, path="00/second_face.jpg"),
        row(born, second=-0.5, path="00/weak_second.jpg"),
        row(5.0, path="00/broken_dob.jpg"),
        row(born, taken=1970, path="00/before_birth.jpg"),
        row(born, gender=np.nan, path="00/no_gender.jpg"),
        row(born, gender=0.0, path="00/female.jpg"),
    ]
    write_rows(tmp_path / "imdb.mat", rows)
    table = labels.read_imdb_wiki(tmp_path / "imdb.mat", "imdb", min_score=1.0)
    assert table.rows["img_paths"].tolist() == [
        "00/kept.jpg",
        "00/weak_second.jpg",
        "00/female.jpg",
    ]
    assert table.rows["genders"].tolist() == [1, 1, 0]
    assert table.rows["ages"].tolist() == [30, 30, 30]
    assert list(table.dropped.values()) == [2, 1, 2, 1]


def test_age_changes_at_the_july_boundary(tmp_path):
    june = synthetic.matlab_datenum(datetime.date(1980, 6, 30))
    july = synthetic.matlab_datenum(datetime.date(1980, 7, 1))
    write_rows(
        tmp_path / "wiki.mat", [row(june, path="j.jpg"), row(july + 0.75, path="k.jpg")], "wiki"
    )
    table = labels.read_imdb_wiki(tmp_path / "wiki.mat", "wiki")
    assert table.rows["ages"].tolist() == [30, 29]


def test_matches_the_original_rules_on_random_data(tmp_path):
    columns = synthetic.random_imdb_wiki_columns(3000, seed=3)
    synthetic.write_imdb_wiki_mat(tmp_path / "imdb.mat", "imdb", columns)
    for min_score in (1.0, 2.5):
        expected = original_rules(columns, min_score)
        table = labels.read_imdb_wiki(tmp_path / "imdb.mat", "imdb", min_score)
        pd.testing.assert_frame_equal(table.rows, expected, check_dtype=False)
        assert len(table.rows) + sum(table.dropped.values()) == 3000


def test_nan_and_huge_dates_are_dropped_not_crashed():
    ages = labels.matlab_datenum_ages(np.array([np.nan, 1e9, 700000.0]), np.array([2000.0] * 3))
    assert math.isnan(ages[0]) and math.isnan(ages[1])
    assert ages[2] == 2000 - datetime.date.fromordinal(700000 - 366).year - 1


def test_missing_and_foreign_mat_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="download.sh"):
        labels.read_imdb_wiki(tmp_path / "imdb.mat", "imdb")
    scipy.io.savemat(tmp_path / "other.mat", {"wiki": {"dob": np.ones((1, 2))}})
    with pytest.raises(UserError, match="no struct 'imdb'"):
        labels.read_imdb_wiki(tmp_path / "other.mat", "imdb")
    with pytest.raises(UserError, match="lacks the fields full_path"):
        labels.read_imdb_wiki(tmp_path / "other.mat", "wiki")
    good = tmp_path / "good.mat"
    write_rows(good, [row(700000.0)] * 50)
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(good.read_bytes()[:600])
    with pytest.raises(UserError, match="cannot read"):
        labels.read_imdb_wiki(truncated, "imdb")


def test_empty_result_is_an_error(tmp_path):
    write_rows(tmp_path / "imdb.mat", [row(700000.0, score=-np.inf)])
    with pytest.raises(UserError, match="no rows"):
        labels.read_imdb_wiki(tmp_path / "imdb.mat", "imdb")


def test_utkface_flips_gender_keeps_race_and_skips_malformed_names(tmp_path):
    root = tmp_path / "UTKFace"
    root.mkdir()
    names = [
        "25_0_1_20170116174525125.jpg.chip.jpg",
        "3_1_2_20161219140623097.jpg.chip.jpg",
        "39_1_20170116174525125.jpg.chip.jpg",  # three of the release's names lack the race
        "110_1_0_20170112213001988.jpg.chip.jpg",
        "x_1_0_20170112213001988.jpg.chip.jpg",
        "notes.txt",
    ]
    for name in names:
        (root / name).write_bytes(b"")
    table = labels.read_utkface(root)
    rows = table.rows.set_index("img_paths").loc[names[:3]].to_dict("list")
    assert rows["genders"] == [1, 0, 0] and rows["ages"] == [25, 3, 39]
    assert rows["race"][:2] == ["Black", "Asian"] and pd.isna(rows["race"][2])
    assert table.dropped == {"malformed file name": 1, "age outside 0..100": 1}


def test_imdb_clean_accepts_letters_digits_and_extra_columns(tmp_path):
    path = tmp_path / "imdb_train_new.csv"
    pd.DataFrame(
        {
            "filename": ["01/a.jpg", "02/b.jpg", "03/c.jpg", "04/d.jpg"],
            "age": [30, 41, 120, 7],
            "gender": ["M", "F", "M", "1"],
            "x_min": [10.0, 20, 30, 40],
            "y_min": [11.0, 21, 31, 41],
            "x_max": [50.0, 60, 70, 80],
            "y_max": [51.0, 61, 71, 81],
            "head_roll": [0.1, 0.2, 0.3, 0.4],
        }
    ).to_csv(path, index=False)
    table = labels.read_imdb_clean(path)
    assert table.rows["genders"].tolist() == [1, 0, 1]
    assert table.rows["ages"].tolist() == [30, 41, 7]
    assert table.rows["x_max"].tolist() == [50, 60, 80]
    assert "head_roll" not in table.rows.columns
    assert table.dropped["age unknown or outside 0..100"] == 1


def test_appa_real_joins_gender_and_keeps_both_ages(tmp_path):
    written = synthetic.write_appa_real(tmp_path, "valid", 6)
    table = labels.read_appa_real(tmp_path, "valid")
    assert table.rows["img_paths"].tolist() == [f"valid/{n}_face.jpg" for n in written["file_name"]]
    assert table.rows["genders"].tolist() == written["male"].tolist()
    assert table.rows["real_age"].tolist() == written["real_age"].tolist()
    np.testing.assert_allclose(table.rows["ages"], written["apparent_age_avg"].round())
    with pytest.raises(UserError, match="download.sh --appa"):
        labels.read_appa_real(tmp_path, "test")


def test_label_csv_checks_columns_and_ranges(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"genders": [0, 1], "ages": [20.0, 30.0], "img_paths": ["a", "b"]}).to_csv(path)
    assert labels.read_labels_csv(path)["ages"].tolist() == [20, 30]
    pd.DataFrame({"genders": [0, 2], "ages": [20, 30], "img_paths": ["a", "b"]}).to_csv(path)
    with pytest.raises(UserError, match="genders"):
        labels.read_labels_csv(path)
    pd.DataFrame({"gender": [0], "ages": [20], "img_paths": ["a"]}).to_csv(path)
    with pytest.raises(UserError, match="lacks the columns genders"):
        labels.read_labels_csv(path)


def test_a_label_csv_names_files_by_their_bytes(tmp_path):
    """A name that is not UTF-8 is read as its bytes, by the reader train.py, landmarks.py and
    evaluate.py use and by annotate.py's: the row opens the very file."""
    astronaut = (REPO / "examples" / "astronaut.png").read_bytes()
    (tmp_path / os.fsdecode(b"ph\xffoto.png")).write_bytes(astronaut)
    (tmp_path / "plain.png").write_bytes(astronaut)
    path = tmp_path / "labels.csv"
    path.write_bytes(b"genders,ages,img_paths\n0,30,ph\xffoto.png\n1,40,plain.png\n")
    names = labels.read_labels_csv(path)["img_paths"].tolist()
    assert names == [os.fsdecode(b"ph\xffoto.png"), "plain.png"]
    assert all(images.read_image(tmp_path / name) is not None for name in names)
    assert annotation.list_images(str(path), tmp_path) == (tmp_path, names)
    with pytest.raises(UserError, match=r"1 img_paths are not UTF-8 \(e.g. row 2, ph\ufffdoto"):
        labels.utf8_only(labels.read_labels_csv(path), path)  # TensorFlow's names are UTF-8

    path.write_bytes(b"genders,ages,img_paths,note\n0,30,a.png,caf\xe9\n")
    with pytest.raises(UserError, match="holds text that is not UTF-8 outside img_paths"):
        labels.read_labels_csv(path)
    path.write_bytes(astronaut)  # an image named as the CSV is still no CSV
    with pytest.raises(UserError, match=r"is not a CSV file \(not text: an image\?\)"):
        labels.read_labels_csv(path)
    with pytest.raises(UserError, match=r"is not a CSV file \(not text: an image\?\)"):
        annotation.list_images(str(path), tmp_path)


def test_age_groups_are_decades_up_to_70_plus():
    ages = pd.Series([0, 9, 10, 35, 69, 70, 100])
    assert list(labels.age_groups(ages)) == ["0-9", "0-9", "10-19", "30-39", "60-69", "70+", "70+"]
    # train.group_balance=age_group: each decade weighs alike in the gender loss.
    from age_gender.training import fit

    settings = OmegaConf.create({"train": {"group_balance": "age_group",
                                           "group_balance_power": 1.0}})  # fmt: skip
    weights = fit.gender_weights(settings, pd.DataFrame({"ages": ages}))
    assert weights[:2].sum() == pytest.approx(weights[5:].sum()) == pytest.approx(weights[2])


def test_eye_positions_that_are_not_numbers_are_one_line(tmp_path):
    """Read as eyes not found, they would leave faces unturned without a word."""
    header = "genders,ages,img_paths,eye_left_x,eye_left_y,eye_right_x,eye_right_y\n"
    (tmp_path / "found.csv").write_text(header + "1,30,a.jpg,1,2,3,4\n0,20,b.jpg,,,,\n")
    found = labels.read_labels_csv(tmp_path / "found.csv")
    assert labels.row_eyes(found) == [(1, 2, 3, 4), None]  # the second: none found
    for values, message in [
        ("1,2,x,4", "1 rows have eye positions that are not numbers (e.g. row 2, a.jpg)"),
        ("1,2,inf,4", "run landmarks.py on it again"),
    ]:
        (tmp_path / "eyes.csv").write_text(header + f"1,30,a.jpg,{values}\n")
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            labels.read_labels_csv(tmp_path / "eyes.csv")
    (tmp_path / "half.csv").write_text("genders,ages,img_paths,eye_left_x\n1,30,a.jpg,1\n")
    with pytest.raises(UserError, match="eye positions need all of eye_left_x, eye_left_y"):
        labels.read_labels_csv(tmp_path / "half.csv")
