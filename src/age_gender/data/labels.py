"""Readers that turn each data set's own label format into the one label schema of DESIGN.md.

Every reader returns a `LabelTable`: the rows kept, with columns `genders` (0 = female,
1 = male, -1 = unknown: FG-NET has no gender labels), `ages` (integer years, 0..100) and
`img_paths` (relative to the data set root), plus how many rows each rule dropped, so
`create_db.py` can say where the data went.
"""

import codecs
import dataclasses
import datetime
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from age_gender.errors import UserError, printable
from age_gender.images import SUFFIXES, has_image_signature
from age_gender.schema import BOX_COLUMNS, EYE_COLUMNS, LABEL_COLUMNS, MAX_AGE, UNKNOWN_GENDER

IMDB_WIKI_FIELDS = ("full_path", "dob", "gender", "photo_taken", "face_score", "second_face_score")
IMDB_CLEAN_SPLITS = ("train", "valid", "test")
APPA_REAL_SPLITS = ("train", "valid", "test")

# MATLAB's day 1 is 0000-01-01, Python's ordinal 1 is 0001-01-01: they differ by 366 days.
MATLAB_TO_PYTHON_ORDINAL = 366
UNIX_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
MAX_ORDINAL = datetime.date.max.toordinal()


@dataclasses.dataclass
class LabelTable:
    """Rows kept in the label schema, and the number of rows each rule dropped, in rule order."""

    rows: pd.DataFrame
    dropped: dict[str, int]


def _apply_rules(frame: pd.DataFrame, rules: dict[str, np.ndarray]) -> LabelTable:
    """Drops rows rule by rule; a row is counted against the first rule it breaks."""
    keep = np.ones(len(frame), dtype=bool)
    dropped = {}
    for name, broken in rules.items():
        newly = keep & broken
        dropped[name] = int(newly.sum())
        keep &= ~broken
    return LabelTable(frame[keep].reset_index(drop=True), dropped)


def _finish(table: LabelTable, source: Path) -> LabelTable:
    """Puts the schema columns first with their types, and refuses an empty result."""
    rows = table.rows
    if rows.empty:
        raise UserError(f"no rows of {source} are left after filtering; check the data or options")
    rows["genders"] = rows["genders"].astype(int)
    rows["ages"] = rows["ages"].astype(int)
    extra = [column for column in rows.columns if column not in LABEL_COLUMNS]
    return LabelTable(rows[LABEL_COLUMNS + extra], table.dropped)


def hash_split(table: LabelTable, val_fraction: float) -> dict[str, LabelTable]:
    """Training and validation rows chosen by a hash of each file's name (of its person, where
    a `subject` column names them), not a random draw: the same file lands on the same side on
    every machine and after the data set grows, so a validation face is never trained on by a
    later run."""
    rows = table.rows
    # A person's photos stay on one side where the data set names its people (FG-NET).
    names = rows["subject"] if "subject" in rows else rows["img_paths"].str.rsplit("/", n=1).str[-1]
    position = names.map(lambda name: int(hashlib.sha256(name.encode()).hexdigest()[:12], 16))
    validation = (position / 16**12 < val_fraction).to_numpy()
    return {
        "train": LabelTable(table.rows[~validation].reset_index(drop=True), table.dropped),
        "val": LabelTable(table.rows[validation].reset_index(drop=True), {}),
    }


# IMDB-WIKI ------------------------------------------------------------------------------------


def matlab_datenum_ages(dob: np.ndarray, photo_taken: np.ndarray) -> np.ndarray:
    """Age when the photo was taken, assuming mid-year photos; NaN where the dates make no sense.

    Same rule as the original project: `photo_taken - birth.year`, minus one for births from July
    on, with the birth ordinal clipped to 1 as `datetime.fromordinal(max(int(dob) - 366, 1))` does.
    """
    with np.errstate(invalid="ignore"):
        ordinal = np.maximum(np.trunc(dob) - MATLAB_TO_PYTHON_ORDINAL, 1)
        valid = np.isfinite(ordinal) & (ordinal <= MAX_ORDINAL) & np.isfinite(photo_taken)
    days = np.where(valid, ordinal - UNIX_EPOCH_ORDINAL, 0).astype("datetime64[D]")
    birth_year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    birth_month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    ages = photo_taken - birth_year - (birth_month >= 7)
    return np.where(valid, ages, np.nan)


def load_imdb_wiki_mat(mat_path: Path, db: str) -> dict[str, np.ndarray]:
    """Reads the fields the labels need from `{db}.mat`, as flat arrays of length N."""
    if not mat_path.is_file():
        raise UserError(f"{mat_path} not found; run ./download.sh to fetch the IMDB-WIKI crops")
    try:
        mat = scipy.io.loadmat(mat_path)
    except Exception as error:  # scipy raises many types for truncated or foreign files
        raise UserError(
            f"cannot read {mat_path} as a MATLAB file ({error}); delete it and download again"
        ) from error
    if db not in mat:
        found = ", ".join(key for key in mat if not key.startswith("__")) or "none"
        raise UserError(f"{mat_path} has no struct '{db}' (found: {found}); is --db right?")
    struct = mat[db]
    names = struct.dtype.names or ()
    missing = [field for field in IMDB_WIKI_FIELDS if field not in names]
    if missing:
        raise UserError(f"{mat_path}: struct '{db}' lacks the fields {', '.join(missing)}")
    if struct.shape != (1, 1):
        shape = "x".join(map(str, struct.shape))
        raise UserError(
            f"{mat_path}: '{db}' is a {shape} struct array, not the one struct of 1xN fields"
        )
    record = struct[0, 0]
    fields = {field: np.asarray(record[field]).ravel() for field in IMDB_WIKI_FIELDS}
    for field in IMDB_WIKI_FIELDS[1:]:  # all but full_path are numbers
        try:
            fields[field] = fields[field].astype(float)
        except (TypeError, ValueError) as error:
            raise UserError(f"{mat_path}: field {field} of '{db}' must hold numbers") from error
    lengths = {len(values) for values in fields.values()}
    if len(lengths) != 1:
        raise UserError(f"{mat_path}: fields of '{db}' differ in length {sorted(lengths)}")
    return fields


def read_imdb_wiki(mat_path: Path, db: str, min_score: float = 1.0) -> LabelTable:
    """Labels of the IMDB or WIKI crops, filtered by the original project's four rules."""
    fields = load_imdb_wiki_mat(mat_path, db)
    gender = fields["gender"]
    ages = matlab_datenum_ages(fields["dob"], fields["photo_taken"])
    with np.errstate(invalid="ignore"):
        rules = {
            f"face_score < {min_score}": fields["face_score"] < min_score,
            "second face present": fields["second_face_score"] > 0,
            f"age unknown or outside 0..{MAX_AGE}": ~((ages >= 0) & (ages <= MAX_AGE)),
            "gender unknown": np.isnan(gender),
        }
    positions = pd.DataFrame({"genders": gender, "ages": ages, "row": np.arange(len(ages))})
    table = _apply_rules(positions, rules)
    kept_paths = fields["full_path"][table.rows.pop("row").to_numpy()]
    table.rows["img_paths"] = _unwrap_cells(kept_paths, mat_path)
    return _finish(table, mat_path)


def _unwrap_cells(cells: np.ndarray, source: Path) -> np.ndarray:
    """Turns a MATLAB cell array of strings (each a 1-element array) into one string array."""
    if len(cells) == 0:
        return np.array([], dtype=str)
    try:
        strings = np.concatenate(cells)
    except ValueError:  # numbers, not cells
        strings = np.array([])
    if strings.dtype.kind != "U" or len(strings) != len(cells):
        raise UserError(f"{source}: full_path must be a cell array of one path string each")
    return strings


# Data sets labelled by file name --------------------------------------------------------------


def image_paths(root: Path, what: str) -> list[str]:
    """The images under `root` (recursively), relative to it; refuses a missing or empty folder."""
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "not found"
        raise UserError(f"{what} {root} {problem}; pass --data_dir with the images")
    paths = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in SUFFIXES
    )
    if not paths:
        raise UserError(f"no images in {root}; is it the {what}?")
    return paths


def utf8_names(paths: pd.Series) -> np.ndarray:
    """Which file names are valid UTF-8 (create_db.py writes its CSV as UTF-8 text, so the rest
    of a data set's names count as malformed). Labels are read from names with ASCII digits
    only: `[0-9]`, since a regular expression's `\\d` also takes a full-width `２`."""
    return paths.map(lambda path: printable(path) == path).to_numpy(bool)


# UTKFace --------------------------------------------------------------------------------------

UTKFACE_NAME = r"^(?P<age>[0-9]+)_(?P<gender>[0-9]+)_(?:(?P<race>[0-9]+)_)?(?P<date>[0-9]+)"
# Each data set's terms, as the model card records them for a model trained on it.
LICENCES = {
    "imdb": "IMDB-WIKI: non-commercial research purposes only",
    "wiki": "IMDB-WIKI: non-commercial research purposes only",
    "imdb_clean": "IMDB-Clean (of IMDB-WIKI): non-commercial research purposes only",
    "utkface": "UTKFace: non-commercial research purposes only",
    "appa_real": "APPA-REAL: see its terms (ChaLearn LAP)",
    "fgnet": "FG-NET: research use; see its terms",
}


def licence(db: str) -> str:
    """The terms of the data set `db` (create_db.py's names), as a model card records them."""
    return LICENCES.get(db, f"{db}: unknown; see the data set's own terms")


UTKFACE_RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


def read_utkface(root: Path) -> LabelTable:
    """Labels from UTKFace file names `[age]_[gender]_[race]_[date&time].jpg`, gender flipped;
    the race label kept as a `race` column (empty where a name lacks it), for
    `evaluate.py --group_by race`."""
    frame = pd.DataFrame(
        {"img_paths": pd.Series(image_paths(root, "UTKFace folder"), dtype=object)}
    )
    fields = frame["img_paths"].str.rsplit("/", n=1).str[-1].str.extract(UTKFACE_NAME)
    malformed = fields["age"].isna().to_numpy() | ~fields["gender"].isin(["0", "1"]).to_numpy()
    malformed |= ~utf8_names(frame["img_paths"])
    frame["ages"] = pd.to_numeric(fields["age"])
    # UTKFace: 0 = male, 1 = female; the schema: 0 = female, 1 = male.
    frame["genders"] = 1 - pd.to_numeric(fields["gender"]).fillna(0)
    frame["race"] = fields["race"].map(UTKFACE_RACES)
    rules = {
        "malformed file name": malformed,
        f"age outside 0..{MAX_AGE}": ~malformed & (frame["ages"] > MAX_AGE).to_numpy(),
    }
    return _finish(_apply_rules(frame, rules), root)


# FG-NET ---------------------------------------------------------------------------------------

FGNET_NAME = r"^(?P<subject>[0-9]{3})a(?P<age>[0-9]{2})[a-z]?\.(jpe?g|png)$"  # lower-cased


def read_fgnet(root: Path) -> LabelTable:
    """Labels from FG-NET file names `001A02.JPG` (subject 001, age 2; a letter may follow the
    age, `001A43a.JPG`; any case). FG-NET has no gender labels: `genders` is -1 (unknown), and
    `subject` is kept for leave-one-person-out studies."""
    frame = pd.DataFrame(
        {"img_paths": pd.Series(image_paths(root, "FG-NET images folder"), dtype=object)}
    )
    names = frame["img_paths"].str.rsplit("/", n=1).str[-1].str.lower()
    fields = names.str.extract(FGNET_NAME)
    frame["ages"] = pd.to_numeric(fields["age"])
    frame["genders"] = UNKNOWN_GENDER
    frame["subject"] = fields["subject"]
    rules = {"malformed file name": fields["age"].isna().to_numpy() | ~utf8_names(names)}
    return _finish(_apply_rules(frame, rules), root)


# IMDB-Clean -----------------------------------------------------------------------------------

GENDER_CODES = {"M": 1, "MALE": 1, "1": 1, "1.0": 1, "F": 0, "FEMALE": 0, "0": 0, "0.0": 0}
TEXT_PROBE = 65536  # bytes looked at to tell text from an image or other binary file


def is_text(path: Path) -> bool:
    """Whether a file can be a CSV: not an image's first bytes, nor bytes that are neither UTF-8
    nor free of NUL (binary files hold both early). Bytes that are not UTF-8 alone are no sign
    (file names are bytes), nor is a NUL in UTF-8 text (`read_labels_csv` names its row)."""
    with open(path, "rb") as file:
        head = file.read(TEXT_PROBE)
    if has_image_signature(head):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return b"\x00" not in head
    return True


def _read_csv(path: Path, required: list[str], how_to_get: str) -> pd.DataFrame:
    """Reads a label CSV, failing with one line when it is missing or lacks columns."""
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV file; {how_to_get}")
    if not path.exists():
        raise UserError(f"{path} not found; {how_to_get}")
    if not path.is_file():
        raise UserError(f"{path} is not a regular file (a device or a pipe); name a CSV file")
    if not is_text(path):
        raise UserError(f"{path} is not a CSV file (not text: an image?); {how_to_get}")
    # Text columns stay text: FG-NET's subject 001 is not the number 1. File names are bytes:
    # img_paths are Python strings, where a name that is not UTF-8 keeps its bytes (as
    # surrogates) and opens its file; pandas' own text type (Arrow) holds UTF-8 only.
    types = {"img_paths": object, "subject": str}
    try:
        frame = pd.read_csv(
            path, skipinitialspace=True, dtype=types, encoding_errors="surrogateescape"
        )
    except UnicodeEncodeError as error:
        raise UserError(f"{path} holds text that is not UTF-8 outside img_paths (file names, "
                        "read as bytes); save it as UTF-8") from error  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"cannot parse {path} as CSV: {error}") from error
    frame.columns = frame.columns.str.strip()
    missing = [column for column in required if column not in frame.columns]
    if missing:
        found = ", ".join(frame.columns)
        raise UserError(f"{path} lacks the columns {', '.join(missing)} (found: {found})")
    return frame


def gender_codes(values: pd.Series) -> pd.Series:
    """Maps M/F, male/female or 0/1 to the schema's 0 = female, 1 = male; NaN when unknown."""
    return values.astype(str).str.strip().str.upper().map(GENDER_CODES)


def read_imdb_clean(csv_path: Path) -> LabelTable:
    """One IMDB-Clean split CSV: `filename, age, gender, x_min, y_min, x_max, y_max, ...`."""
    source = _read_csv(
        csv_path,
        ["filename", "age", "gender", *BOX_COLUMNS],
        "run ./download.sh --imdb-clean to fetch the IMDB-Clean label CSVs",
    )
    frame = pd.DataFrame(
        {
            "genders": gender_codes(source["gender"]),
            "ages": pd.to_numeric(source["age"], errors="coerce"),
            "img_paths": source["filename"].astype(str),
        }
    )
    for column in BOX_COLUMNS:
        frame[column] = pd.to_numeric(source[column], errors="coerce")
    rules = {
        "gender unknown": frame["genders"].isna().to_numpy(),
        f"age unknown or outside 0..{MAX_AGE}": ~frame["ages"].between(0, MAX_AGE).to_numpy(),
        "face box missing": frame[BOX_COLUMNS].isna().any(axis=1).to_numpy(),
    }
    table = _apply_rules(frame, rules)
    table.rows["ages"] = table.rows["ages"].round()
    return _finish(table, csv_path)


# APPA-REAL ------------------------------------------------------------------------------------


def read_appa_real(root: Path, split: str, folder_option: str = "--data_dir") -> LabelTable:
    """One APPA-REAL split: the aligned `_face.jpg` crops, apparent age as `ages`, real age kept.

    `ages` is the apparent age (rounded, capped at 100), as the original project fine-tuned on it;
    `apparent_age_avg`, `apparent_age_std` and `real_age` are kept for evaluation.
    """
    how_to_get = f"run ./download.sh --appa to fetch APPA-REAL, or pass {folder_option}"
    ground_truth = _read_csv(
        root / f"gt_avg_{split}.csv",
        ["file_name", "apparent_age_avg", "apparent_age_std", "real_age"],
        how_to_get,
    )
    categories = _read_csv(root / f"allcategories_{split}.csv", ["file", "gender"], how_to_get)
    merged = ground_truth.merge(
        categories[["file", "gender"]], left_on="file_name", right_on="file", how="left"
    )
    frame = pd.DataFrame(
        {
            "genders": gender_codes(merged["gender"]),
            "ages": merged["apparent_age_avg"].round().clip(upper=MAX_AGE),
            "img_paths": split + "/" + merged["file_name"].astype(str) + "_face.jpg",
            "apparent_age_avg": merged["apparent_age_avg"],
            "apparent_age_std": merged["apparent_age_std"],
            "real_age": merged["real_age"],
        }
    )
    rules = {
        "gender unknown": frame["genders"].isna().to_numpy(),
        "age unknown": frame[["ages", "real_age"]].isna().any(axis=1).to_numpy(),
    }
    return _finish(_apply_rules(frame, rules), root / f"gt_avg_{split}.csv")


# Not a label column: each face's decade of true age, for `train.group_balance` and
# `evaluate.py --group_by` (UTKFace's gender gap between races follows their shares of children).
AGE_GROUP = "age_group"
AGE_GROUP_EDGES = (0, 10, 20, 30, 40, 50, 60, 70)
AGE_GROUP_NAMES = (*(f"{low}-{high - 1}" for low, high in itertools.pairwise(AGE_GROUP_EDGES)),
                   f"{AGE_GROUP_EDGES[-1]}+")  # fmt: skip


def age_groups(ages: pd.Series) -> pd.Series:
    """Each age's decade (0-9 ... 70+); an unknown age has none."""
    bins = [*AGE_GROUP_EDGES, np.inf]
    return pd.cut(ages, bins, right=False, labels=AGE_GROUP_NAMES).astype(object)


def group_column(frame: pd.DataFrame, column: str, ages: str = "ages") -> pd.Series:
    """The values that group `frame`'s faces: its `column`, or for `age_group` where it has
    none, the decade of each face's age (the column `ages`)."""
    if column == AGE_GROUP and column not in frame.columns:
        return age_groups(frame[ages])
    return frame[column]


def read_labels_csv(path: Path) -> pd.DataFrame:
    """Reads a CSV in the label schema (as written by create_db.py), checking columns, ranges and
    face boxes; ages are rounded to whole years, as every reader rounds them."""
    frame = _read_csv(path, LABEL_COLUMNS, "run create_db.py first, or check the path")
    if frame.empty:
        raise UserError(f"{path} has no rows")
    genders = pd.to_numeric(frame["genders"], errors="coerce")
    ages = pd.to_numeric(frame["ages"], errors="coerce")
    if not genders.isin([0, 1, UNKNOWN_GENDER]).all():
        raise UserError(
            f"{path}: column genders must hold only 0 (female), 1 (male) and -1 (unknown)"
        )
    if not ages.between(0, MAX_AGE).all():
        raise UserError(f"{path}: column ages must hold years in 0..{MAX_AGE}")
    has_boxes = [column in frame.columns for column in BOX_COLUMNS]
    if any(has_boxes) and not all(has_boxes):
        raise UserError(f"{path}: a face box needs all of {', '.join(BOX_COLUMNS)}")
    if all(has_boxes):
        check_boxes(frame, path)
    if set(EYE_COLUMNS) & set(frame.columns):
        check_eyes(frame, path)
    no_path = frame["img_paths"].isna() | (frame["img_paths"].str.strip() == "")
    if no_path.any():
        row = int(np.flatnonzero(no_path.to_numpy())[0])
        raise UserError(f"{path}: {int(no_path.sum())} rows have no img_paths (e.g. row {row + 2})")
    frame["genders"] = genders.astype(int)
    frame["ages"] = ages.round().astype(int)
    nul = frame["img_paths"].str.contains("\x00", regex=False)
    if nul.any():  # no file system names a file so
        row = int(np.flatnonzero(nul.to_numpy())[0])
        raise UserError(f"{path}: {int(nul.sum())} img_paths hold a NUL byte (e.g. row {row + 2})")
    return frame


def utf8_only(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The labels of `path` (`read_labels_csv`), refused in one line where a name is not UTF-8:
    training's input pipeline (TensorFlow) takes only UTF-8 file names."""
    other = ~utf8_names(frame["img_paths"])
    if other.any():
        row = int(np.flatnonzero(other)[0])
        raise UserError(
            f"{path}: {int(other.sum())} img_paths are not UTF-8 (e.g. row {row + 2}, "
            f"{printable(frame['img_paths'].iloc[row])}); training reads UTF-8 names only: "
            "rename those files (annotate.py, landmarks.py and cache_faces.py read any name)"
        )
    return frame


def face_boxes(frame: pd.DataFrame) -> np.ndarray:
    """Each row's face box (x_min, y_min, x_max, y_max) as floats, (0, 0, 0, 0) for a row
    without one (no box columns, or all four empty): `crops.crop_box` then takes the whole
    image as the face, and `crops.is_box` says which rows have one."""
    if not set(BOX_COLUMNS) <= set(frame.columns):
        return np.zeros((len(frame), 4), np.float32)
    return np.nan_to_num(frame[BOX_COLUMNS].to_numpy(np.float32))


def eye_values(frame: pd.DataFrame) -> np.ndarray:
    """Each row's eyes (left x, y, right x, y; landmarks.py, composite_faces.py) as an (n, 4)
    array, NaN where the frame has no eye columns or a row lacks a value: the one reading of the
    eyes that turn a face upright, in training and evaluation alike."""
    if not set(EYE_COLUMNS) <= set(frame.columns):
        return np.full((len(frame), len(EYE_COLUMNS)), np.nan, np.float32)
    return frame[EYE_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)


def row_eyes(frame: pd.DataFrame) -> list[tuple | None]:
    """Each row's eyes (`eye_values`) where all four are given, else None."""
    return [tuple(row) if np.isfinite(row).all() else None for row in eye_values(frame)]


def check_eyes(frame: pd.DataFrame, path: Path) -> None:
    """Refuses eye positions that are not numbers (an edited or cut CSV), which would otherwise
    read as eyes not found; a row whose four values are empty has none (landmarks.py)."""
    if not set(EYE_COLUMNS) <= set(frame.columns):
        raise UserError(f"{path}: eye positions need all of {', '.join(EYE_COLUMNS)}")
    broken = (frame[EYE_COLUMNS].notna().to_numpy() & ~np.isfinite(eye_values(frame))).any(axis=1)
    if broken.any():
        row = int(np.flatnonzero(broken)[0])
        raise UserError(
            f"{path}: {int(broken.sum())} rows have eye positions that are not numbers (e.g. "
            f"row {row + 2}, {frame['img_paths'].iloc[row]}); run landmarks.py on it again"
        )


def check_boxes(frame: pd.DataFrame, path: Path) -> None:
    """Refuses face boxes that are no boxes: not numbers, partly NaN, infinite, inverted, empty
    or before the image's corner (one line naming the first such row). A row whose four values
    are all empty has no box: the whole image is its face."""
    boxes = frame[BOX_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    given = frame[BOX_COLUMNS].notna().any(axis=1).to_numpy()  # any of the four values
    broken = given & (
        ~np.isfinite(boxes).all(axis=1)
        | (boxes[:, 2] <= boxes[:, 0])
        | (boxes[:, 3] <= boxes[:, 1])
        | (boxes[:, :2] < 0).any(axis=1)
    )
    if broken.any():
        row = int(np.flatnonzero(broken)[0])
        values = ",".join(str(frame[column].iloc[row]) for column in BOX_COLUMNS)
        raise UserError(
            f"{path}: {int(broken.sum())} rows have a face box that is not a box (e.g. row "
            f"{row + 2}, {frame['img_paths'].iloc[row]}: {values}); boxes need numbers with "
            "0 <= x_min < x_max and 0 <= y_min < y_max"
        )
