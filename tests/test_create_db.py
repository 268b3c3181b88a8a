"""create_db.py end to end: outputs, counts printed, and user mistakes as one line."""

import datetime

import cv2
import numpy as np
import pandas as pd
import scipy.io
from conftest import refusal, user_error
from support import synthetic

from age_gender.cli import create_db as create_db_cli
from age_gender.data import labels


def write_imdb(data_dir, count=200):
    (data_dir / "imdb_crop").mkdir(parents=True)
    columns = synthetic.random_imdb_wiki_columns(count, seed=1)
    synthetic.write_imdb_wiki_mat(data_dir / "imdb_crop" / "imdb.mat", "imdb", columns)


def test_imdb_writes_the_original_csv_layout(tmp_path, run_script):
    write_imdb(tmp_path / "data")
    result = run_script("create_db.py", "--db", "imdb", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(tmp_path / "meta" / "imdb.csv")
    assert list(written.columns) == ["genders", "ages", "img_paths"]
    assert written["ages"].between(0, 100).all() and set(written["genders"]) <= {0, 1}
    assert "dropped" in result.stdout and f"kept    {len(written):>8}" in result.stdout


def test_existing_output_needs_overwrite_and_stays_intact(tmp_path, run_script):
    write_imdb(tmp_path / "data")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "imdb.csv").write_text("precious\n")
    result = run_script("create_db.py", "--db", "imdb", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: meta/imdb.csv exists; pass --overwrite to replace it"
    ]
    assert (tmp_path / "meta" / "imdb.csv").read_text() == "precious\n"
    assert run_script("create_db.py", "--overwrite", cwd=tmp_path).returncode == 0
    assert (tmp_path / "meta" / "imdb.csv").read_text().startswith("genders,ages,img_paths")


def test_user_mistakes_are_one_line(tmp_path, run_script):
    missing = run_script("create_db.py", "--db", "wiki", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "data/wiki_crop/wiki.mat not found" in missing.stderr
    write_imdb(tmp_path / "data")
    no_folder = run_script("create_db.py", "--output", "nowhere/x.csv", cwd=tmp_path)
    assert no_folder.returncode == 2 and "output folder nowhere does not exist" in no_folder.stderr
    empty = run_script("create_db.py", "--min_score", "100", cwd=tmp_path)
    assert empty.returncode == 2 and "no rows" in empty.stderr
    assert not (tmp_path / "meta" / "imdb.csv").exists()
    assert list((tmp_path / "meta").iterdir()) == []


def test_split_data_sets_write_one_csv_per_split(tmp_path, run_script):
    appa = tmp_path / "appa"
    for split in ("train", "valid", "test"):
        synthetic.write_appa_real(appa, split, 3)
    result = run_script(
        "create_db.py", "--db", "appa_real", "--data_dir", appa, "--output", "out.csv", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    valid = pd.read_csv(tmp_path / "out_valid.csv")
    assert valid.columns[:3].tolist() == ["genders", "ages", "img_paths"]
    assert {"apparent_age_avg", "apparent_age_std", "real_age"} <= set(valid.columns)

    clean = tmp_path / "clean"
    clean.mkdir()
    for split in ("train", "valid", "test"):
        pd.DataFrame(
            {
                "filename": ["a.jpg"],
                "age": [33],
                "gender": ["F"],
                "x_min": [1],
                "y_min": [2],
                "x_max": [30],
                "y_max": [40],
            }
        ).to_csv(clean / f"imdb_{split}_new_1024.csv", index=False)
    result = run_script(
        "create_db.py",
        "--db",
        "imdb_clean",
        "--data_dir",
        clean,
        "--imdb_clean_variant",
        "1024",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    test_split = pd.read_csv(tmp_path / "meta" / "imdb_clean_test.csv")
    assert test_split.to_dict("list") == {
        "genders": [0],
        "ages": [33],
        "img_paths": ["a.jpg"],
        "x_min": [1],
        "y_min": [2],
        "x_max": [30],
        "y_max": [40],
    }


def test_utkface_through_the_script(tmp_path, run_script):
    root = tmp_path / "UTKFace"
    root.mkdir()
    born = datetime.date(2000, 1, 1)
    for age in (1, 50, 99):
        (root / f"{age}_0_0_{born:%Y%m%d}.jpg.chip.jpg").write_bytes(b"")
    (root / "broken_name.jpg").write_bytes(b"")
    result = run_script("create_db.py", "--db", "utkface", "--data_dir", root, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 (malformed file name)" in result.stdout
    written = pd.read_csv(tmp_path / "meta" / "utkface.csv")
    assert sorted(written["ages"]) == [1, 50, 99] and np.all(written["genders"] == 1)


def write_struct(path, db, fields, shape=(1, 1)):
    """Saves `fields` (each 1xN) as a MATLAB struct array of `shape`, every element alike."""
    struct = np.empty(shape, dtype=[(name, object) for name in fields])
    for index in np.ndindex(shape):
        struct[index] = tuple(fields.values())
    scipy.io.savemat(path, {db: struct})


def cells(values):
    cell = np.empty((1, len(values)), dtype=object)
    cell[0, :] = list(values)
    return cell


def test_malformed_mat_files_and_options_are_one_line(tmp_path, run_script, capsys):
    columns = synthetic.random_imdb_wiki_columns(20, seed=2)
    fields = {name: np.asarray(values, float).reshape(1, -1) for name, values in columns.items()
              if name != "full_path"}  # fmt: skip
    fields["full_path"] = cells(columns["full_path"])
    mat = tmp_path / "wiki.mat"

    def error(*args, **changes):
        write_struct(mat, "wiki", {**fields, **changes.pop("fields", {})}, **changes)
        return refusal(capsys, create_db_cli.main, "--db", "wiki", "--data_dir", tmp_path,
                       "--output", tmp_path / "wiki.csv", *args)  # fmt: skip

    assert "field dob of 'wiki' must hold numbers" in error(
        fields={"dob": cells(["1980-01-01"] * 20)}
    )
    assert "full_path must be a cell array of one path string each" in error(
        fields={"full_path": np.arange(20.0).reshape(1, -1)}
    )
    assert "'wiki' is a 1x2 struct array" in error(shape=(1, 2))
    (tmp_path / "folder.csv").mkdir()
    assert "folder.csv is a folder; name a file" in error("--output", tmp_path / "folder.csv")
    assert "argument --min_score: 'nan' is not a number" in error("--min_score", "nan")
    write_struct(mat, "wiki", fields)
    assert (
        run_script("create_db.py", "--db", "wiki", "--data_dir", tmp_path, cwd=tmp_path).returncode
        == 0
    )


def test_fgnet_names_give_subject_and_age_and_unknown_gender(tmp_path, run_script):
    root = tmp_path / "FGNET" / "images"
    root.mkdir(parents=True)
    for name in ("001A02.JPG", "001A43a.JPG", "002a05.jpg", "082A61B.JPG", "notes.JPG"):
        (root / name).write_bytes(b"")
    result = run_script("create_db.py", "--db", "fgnet", "--data_dir", root, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 (malformed file name)" in result.stdout
    written = pd.read_csv(tmp_path / "meta" / "fgnet.csv", dtype={"subject": str})
    assert written["img_paths"].tolist() == [
        "001A02.JPG",
        "001A43a.JPG",
        "002a05.jpg",
        "082A61B.JPG",
    ]
    assert written["ages"].tolist() == [2, 43, 5, 61]
    assert written["subject"].tolist() == ["001", "001", "002", "082"]
    assert (written["genders"] == -1).all()


def test_the_hash_split_is_stable_and_each_file_keeps_its_side():
    names = [f"{age}_{age % 2}_0_2017{age:04d}.jpg.chip.jpg" for age in range(90)] * 20
    names = [f"{index}_{name}" for index, name in enumerate(names)]
    rows = pd.DataFrame({"genders": 0, "ages": 30, "img_paths": names})
    split = labels.hash_split(labels.LabelTable(rows, {}), 0.1)
    validation = set(split["val"].rows["img_paths"])
    assert 0.07 < len(validation) / len(rows) < 0.13
    assert validation.isdisjoint(split["train"].rows["img_paths"])
    # Half of the files, in another order and folder: each keeps the side it had.
    fewer = rows.sample(frac=0.5, random_state=1).assign(img_paths=lambda f: "sub/" + f.img_paths)
    again = labels.hash_split(labels.LabelTable(fewer, {}), 0.1)
    assert {name[4:] for name in again["val"].rows["img_paths"]} == validation & set(
        fewer["img_paths"].str[4:]
    )


def test_create_db_writes_the_split_and_refuses_a_bad_fraction(tmp_path, run_script):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    for index in range(40):
        cv2.imwrite(str(folder / f"{index + 1}_{index % 2}_0_2017{index:04d}.jpg.chip.jpg"),
                    np.zeros((8, 8, 3), np.uint8))  # fmt: skip
    output = tmp_path / "utk.csv"
    result = run_script("create_db.py", "--db", "utkface", "--data_dir", folder,
                        "--val_fraction", "0.25", "--output", output)  # fmt: skip
    assert result.returncode == 0, result.stderr
    train, val = (pd.read_csv(tmp_path / f"utk_{split}.csv") for split in ("train", "val"))
    assert len(train) + len(val) == 40 and 3 <= len(val) <= 18
    refused = run_script("create_db.py", "--db", "utkface", "--data_dir", folder,
                         "--val_fraction", "1.5", "--output", tmp_path / "x.csv")  # fmt: skip
    assert "--val_fraction must be in [0, 1)" in user_error(refused)
