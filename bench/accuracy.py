"""Accuracy on real faces: the utkface_cpu recipe against dlib-models, on faces training never saw.

python bench/accuracy.py --data data/UTKFace            split, composite, train, evaluate
python bench/accuracy.py --data data/UTKFace --weight_file runs/final/best.keras   no training
python bench/accuracy.py --data data/UTKFace --work output/acc_e12 train.epochs=12   a lever

DIR holds UTKFace's aligned and cropped faces, named as released (licence: non-commercial
research only; nothing of them is written outside --work and --composites). The faces are split
by a hash of their file names (create_db.py --val_fraction 0.1); composite_faces.py pastes both
parts into the backgrounds and finds them with MTCNN (into --composites, where runs that share it
make them once), utkface_cpu, with any train.py overrides given after the options (one lever's
run), trains on the training part's composites and crops (--with_crops) and validates on the
validation part's composites, and both models are measured on the validation faces twice:
- whole crops: each 200x200 crop is the face, as UTKFace's own benchmarks measure it;
- scenes: the same faces pasted into 640x480 photo backgrounds (--scene_backgrounds, by default
  training's; tests/support/scenes.py: 35-230 px, turned up to 25 degrees, varied light),
  through annotate.py with each model's own defaults,
  as a user runs it; MAE and gender over the faces the detector finds (IoU >= 0.3 with the truth).
Prints the minutes of the composites and of training, one table, then scenes by face size and
turn, both by race (UTKFace's label) with the gap between the best and worst group, our gender
accuracy by race and age group, and how often the true age lies within 1 and 2 of our model's
age_std and within its 90 % interval; the last two lines are `utkface_scene_mae: Y` and
`utkface_mae: X`.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from age_gender.apps import evaluation
from age_gender.config import check_ranges, compose_config
from age_gender.data import labels
from age_gender.data.composites import PasteSettings, backgrounds_in
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, given
from age_gender.estimators.base import model_file
from age_gender.estimators.presets import load_estimator
from age_gender.faces import framing
from age_gender.files import check_output_folder
from age_gender.models.card import TTA_MODES

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import scenes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKGROUNDS = REPO / "examples" / "backgrounds"


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=given(Path, "UTKFace's face crops"), required=True,
                        help="UTKFace's face crops")  # fmt: skip
    parser.add_argument("--work", type=given(Path, "a folder"), default=Path("output/accuracy"))
    parser.add_argument("--weight_file", type=given(Path, "a model file"),
                        help="a trained model: skip training")  # fmt: skip
    parser.add_argument("--tta", choices=TTA_MODES, default="flip")
    parser.add_argument("--scenes", type=int, default=120, help="scene frames to build")
    photos = given(Path, "a folder of photos")
    parser.add_argument("--backgrounds", type=photos, default=BACKGROUNDS,
                        help="photos the training composites are made in")  # fmt: skip
    parser.add_argument("--scene_backgrounds", type=photos,
                        help="photos the scenes are built in (default: --backgrounds); others "
                        "than training's measure photos it never saw")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", choices=("dlib-models", "none"), default="dlib-models",
                        help="the model measured beside ours")  # fmt: skip
    parser.add_argument("--composites", type=given(Path, "a folder"),
                        help="the composites' folder (default: WORK/composites); runs that share "
                        "it make them once")  # fmt: skip
    parser.add_argument("overrides", nargs="*",
                        help="train.py overrides after the recipe's: one lever's run")  # fmt: skip
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder: pass UTKFace's face crops (the "
                     "folder UTKFace.tar.gz extracts to)")  # fmt: skip
    try:
        labels.read_utkface(args.data)
    except UserError:
        parser.error(f"--data {args.data}: no image there is named as UTKFace's are "
                     "(AGE_GENDER_RACE_DATE.jpg): pass the folder UTKFace.tar.gz extracts "
                     "to")  # fmt: skip
    for option in ("backgrounds", "scene_backgrounds"):  # before the training, not after it
        if getattr(args, option) is not None:
            try:
                backgrounds_in(getattr(args, option))
            except UserError as error:
                parser.error(f"--{option}: {error}")
    for option in ("work", "composites"):
        if getattr(args, option) is not None:
            try:
                check_output_folder(getattr(args, option))
            except UserError as error:
                parser.error(f"--{option}: {error}")
    if args.weight_file is not None and not args.weight_file.is_dir():  # a SavedModel's folder
        try:
            model_file(args.weight_file)  # not found, or not a file (a device, a FIFO)
        except UserError as error:
            parser.error(f"--weight_file: {error}")
    if args.scenes < 1:
        parser.error(f"--scenes {args.scenes}: build at least one scene")
    if args.weight_file and (args.overrides or args.composites):
        parser.error("overrides and --composites are for training, which --weight_file skips")
    return args


def run(*command: str) -> None:
    """Runs a script of this project; its own line says what went wrong, and this one stops
    with its exit status."""
    returncode = subprocess.run([sys.executable, *command], cwd=REPO).returncode
    if returncode < 0:  # killed (out of memory, a crash): it wrote no line of its own
        sys.exit(f"error: {command[0]} was killed by signal {-returncode}")
    if returncode:
        sys.exit(returncode)


def train(args: argparse.Namespace, meta: Path) -> tuple[Path, dict[str, float]]:
    """utkface_cpu on the training split's composites (made first, with the validation
    split's); the best model and the wall-clock minutes of each step (composites made by an
    earlier run sharing --composites cost only their check)."""
    output_dir = (args.work / "train").resolve()
    composites = (args.composites or args.work / "composites").resolve()
    started = time.perf_counter()
    for split in ("train", "val"):
        crops_too = ["--with_crops"] if split == "train" else []  # the recipe learns both
        run("composite_faces.py", "--csv", str(meta / f"utkface_{split}.csv"), "--root",
            str(args.data.resolve()), "--backgrounds", str(args.backgrounds.resolve()),
            "--output_dir", str(composites), "--overwrite", *crops_too)  # fmt: skip
    made = time.perf_counter()
    run(
        "train.py", "+experiment=utkface_cpu", f"data.root={composites}",
        f"data.csv={composites / 'utkface_train.csv'}",
        f"data.val_csv={composites / 'utkface_val.csv'}", f"train.output_dir={output_dir}",
        *args.overrides,
    )  # fmt: skip
    minutes = {"composites": (made - started) / 60, "training": (time.perf_counter() - made) / 60}
    return output_dir / "best.keras", minutes


def whole_crops(args, model_path: Path, validation: pd.DataFrame) -> dict[str, dict]:
    """evaluate.py's summaries of both models on the validation crops (each crop is the face)."""
    estimators = [load_estimator(model_path), *map(load_estimator, compared(args)[1:])]
    estimators[0].set_options(tta=args.tta)
    truth = validation.rename(columns={"ages": "true_age", "genders": "true_gender"})
    summaries = evaluation.evaluate(estimators, truth, args.data, args.work / "crops",
                                    group_by="race")  # fmt: skip
    ours = evaluation.report_folder(args.work / "crops", estimators[0]) / "predictions.csv"
    summaries[estimators[0].name]["gender_by_race_and_age"] = gender_by_race_and_age(ours)
    return dict(zip(compared(args), summaries.values(), strict=True))


def gender_by_race_and_age(predictions: Path) -> dict[str, dict[str, float]]:
    """Gender accuracy on the validation crops by race and age group: whether a gap between
    races is the races or their shares of children."""
    table = pd.read_csv(predictions)
    groups = [table["race"], labels.group_column(table, labels.AGE_GROUP, "true_age")]
    accuracy = table.groupby(groups).apply(
        lambda faces: evaluation.gender_accuracy(faces["gender"], faces["true_gender"])
    )
    return {race: dict(by_age) for race, by_age in accuracy.unstack().iterrows()}


def compared(args) -> tuple[str, ...]:
    """Our model, and the peer measured beside it (--peer)."""
    return ("ours",) if args.peer == "none" else ("ours", args.peer)


def scene_figures(args, model_path: Path, validation: pd.DataFrame) -> dict[str, dict]:
    """Scenes of the validation faces through annotate.py, for both models."""
    folder = args.work / "scenes"
    backgrounds = backgrounds_in(args.scene_backgrounds or args.backgrounds)
    # The true boxes sit where the detector boxes these crops: measured on them, not assumed.
    measured = framing.framing_of_crops(validation, args.data, 300, args.seed)
    if measured is None:
        raise UserError(f"the detector finds too few faces in {args.data}'s validation crops "
                        "to measure their framing: are they UTKFace's aligned and cropped "
                        "faces?")  # fmt: skip
    paste = PasteSettings(margin=measured.margin, offset=measured.offset)
    settings = scenes.SceneSettings(paste=paste)
    made = scenes.build_scenes(validation, args.data, backgrounds, args.scenes, args.seed, settings)
    truth = scenes.write_scenes(made, folder / "frames")
    figures = {}
    options = {"ours": ["--weight_file", str(model_path.resolve()), "--tta", args.tta],
               args.peer: ["--model", args.peer]}  # fmt: skip
    for name in compared(args):
        model = options[name]
        table = folder / f"{name}.csv"
        run("annotate.py", str((folder / "frames").resolve()), "--output", str(table.resolve()),
            "--overwrite", *model)  # fmt: skip
        found = pd.read_csv(table)
        found = found[found["status"] == "ok"]
        matched = scenes.match_faces(truth, found)
        races = matched["source"].map(validation.set_index("img_paths")["race"]).fillna("(none)")
        figures[name] = {
            "faces": len(truth), "false_positives": matched.attrs["false_positives"],
            **scene_errors(matched),
            "by_face": {band: scene_errors(matched[inside])
                        for band, inside in face_bands(matched).items()},
            "by_race": {race: scene_errors(matched[races == race]) for race in sorted(set(races))},
        }  # fmt: skip
    return figures


SIZE_BANDS = [(30, 45), (45, 90), (90, 240)]  # face box sides in pixels
TURNED = 15.0  # degrees: a face turned at least this much in the picture's plane


def face_bands(matched: pd.DataFrame) -> dict[str, pd.Series]:
    """Which true faces are in each size band, and which are turned."""
    side = matched["x_max"] - matched["x_min"]
    bands = {f"{low}-{high} px": side.between(low, high, "left") for low, high in SIZE_BANDS}
    bands[f"turned >= {TURNED:.0f} deg"] = matched["angle"].abs() >= TURNED
    return bands


def scene_errors(matched: pd.DataFrame) -> dict:
    """Faces found, MAE, MAE of 60+ and gender accuracy over the true faces of `matched`."""
    hit = matched["found_age"].notna()
    errors = (matched.loc[hit, "found_age"] - matched.loc[hit, "ages"]).abs()
    genders = (matched.loc[hit, "found_gender"] == "M").astype(int)
    old = matched.loc[hit, "ages"] >= 60
    figures = {
        "true_faces": len(matched), "found": int(hit.sum()), "mae": float(errors.mean()),
        "mae_60_plus": float(errors[old].mean()),
        "gender_accuracy": float((genders == matched.loc[hit, "genders"]).mean()),
    }  # fmt: skip
    if hit.any() and matched.loc[hit, "found_age_std"].notna().all():  # dlib-models: no spread
        spread = matched.loc[hit].rename(columns={"found_age": "age", "ages": "true_age",
                                                  "found_age_std": "age_std",
                                                  "found_age_low": "age_low",
                                                  "found_age_high": "age_high"})  # fmt: skip
        figures.update(evaluation.spread_coverage(spread))
    return figures


@exit_on_user_error
def main() -> None:
    args = parse_args()
    # A mistyped override stops here, in one line, not after the composites.
    check_ranges(compose_config(["+experiment=utkface_cpu", *args.overrides]))
    meta = (args.work / "meta").resolve()
    meta.mkdir(parents=True, exist_ok=True)
    run("create_db.py", "--db", "utkface", "--data_dir", str(args.data.resolve()),
        "--val_fraction", "0.1", "--output", str(meta / "utkface.csv"), "--overwrite")  # fmt: skip
    minutes = None
    model_path = args.weight_file
    if model_path is None:
        model_path, minutes = train(args, meta)
    validation = labels.read_labels_csv(meta / "utkface_val.csv")
    crops = whole_crops(args, model_path, validation)
    found = scene_figures(args, model_path, validation)
    places = args.scene_backgrounds or args.backgrounds
    figures = {"crops": crops, "scenes": found, "minutes": minutes, "overrides": args.overrides,
               "backgrounds": str(args.backgrounds), "scene_backgrounds": str(places)}  # fmt: skip
    (args.work / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    spent = "-" if minutes is None else ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
    print(f"\nvalidation faces: {len(validation)}; tta: {args.tta}; minutes: {spent}; overrides: "
          f"{' '.join(args.overrides) or 'none'}; scenes in {places}")  # fmt: skip
    print("| model | MAE | CS@5 | gender | 60+ MAE | scenes: found | MAE | gender | 60+ MAE |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    models = compared(args)
    for name in models:
        crop, scene = crops[name], found[name]
        print(
            f"| {name} | {crop['mae']:.2f} | {crop['cs5']:.1%} | {crop['gender_accuracy']:.1%} | "
            f"{crop.get('mae_60_plus', np.nan):.2f} | {scene['found']}/{scene['faces']} "
            f"({scene['false_positives']} false) | {scene['mae']:.2f} | "
            f"{scene['gender_accuracy']:.1%} | {scene['mae_60_plus']:.2f} |"
        )
    print("\n| scenes: faces | " + " | ".join(f"{m}: found, MAE, gender" for m in models) + " |")
    for band in found["ours"]["by_face"]:
        cells = [found[m]["by_face"][band] for m in models]
        print(f"| {band} | " + " | ".join(
            f"{c['found']}/{c['true_faces']}, {c['mae']:.2f}, {c['gender_accuracy']:.1%}"
            for c in cells) + " |")  # fmt: skip
    print("\n| race | " + " | ".join(f"{m}: crops MAE, gender; scenes MAE, gender"
                                     for m in models) + " |")  # fmt: skip
    for race in crops["ours"]["mae_by_group"]:
        cells = []
        for m in models:
            crop, scene = crops[m]["mae_by_group"][race], found[m]["by_race"].get(race, {})
            cells.append(f"{crop['mae']:.2f}, {crop['gender_accuracy']:.1%}; "
                         f"{scene.get('mae', np.nan):.2f}, "
                         f"{scene.get('gender_accuracy', np.nan):.1%}")  # fmt: skip
        print(f"| {race} (n={crops['ours']['mae_by_group'][race]['n']}) | " + " | ".join(cells)
              + " |")  # fmt: skip
    cells = []
    for m in models:
        scene_gender = [v["gender_accuracy"] for k, v in found[m]["by_race"].items()
                        if k != "(none)"]  # fmt: skip
        gap = crops[m]["group_gap"]
        cells.append(f"{gap['mae']:.2f}, {gap['gender_accuracy']:.1%}; -, "
                     f"{max(scene_gender) - min(scene_gender):.1%}")  # fmt: skip
    print("| gap, worst - best | " + " | ".join(cells) + " |")
    by_age = pd.DataFrame(crops["ours"]["gender_by_race_and_age"]).T[list(labels.AGE_GROUP_NAMES)]
    print("\nours: gender accuracy on crops by race and age group\n"
          + by_age.to_string(float_format=lambda v: f"{v:.1%}"))  # fmt: skip
    for where, ours in (("crops", crops["ours"]), ("scenes", found["ours"])):
        print(f"\nage_std of ours on {where}: true age within 1 std {ours['within_1_std']:.1%} "
              f"(a Gaussian: 68.3 %), within 2 std {ours['within_2_std']:.1%} (95.4 %), "
              f"within the 90 % interval {ours.get('within_interval', np.nan):.1%}")  # fmt: skip
    print(f"utkface_scene_mae: {found['ours']['mae']:.2f}")
    print(f"utkface_mae: {crops['ours']['mae']:.2f}")


if __name__ == "__main__":
    main()
