"""The levers of the UTKFace recipe, each measured alone: short training runs of equal length from
one baseline, each changing one setting, evaluated on the validation faces.

python bench/levers.py --data data/UTKFace [--epochs 4] [--only dldl,lds]

DIR holds UTKFace's crops (licence: non-commercial research only; nothing of them is written
outside --work). The baseline is MobileNetV3Small at 64 px from scratch, cross-entropy, no
balancing, the default (IMDB-WIKI) augmentation. Each row: validation MAE, CS@5, gender accuracy,
MAE of ages 60+ and the minutes the run took; flip averaging (tta) is measured on the baseline's
model without training again. The rows of the face networks (DlibFaceResNet, CydralAge) take
utkface_cpu's settings instead of the baseline's, and differ in what trains: the heads on the
frozen network, its last stage, or all of it. Runs of one machine compare with each other only
when nothing else ran beside them. The last line is `best_lever_mae: X` (the lowest validation MAE).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from age_gender.apps import evaluation
from age_gender.data import labels
from age_gender.errors import ArgumentParser
from age_gender.estimators.presets import load_estimator

REPO = Path(__file__).resolve().parents[1]
BASELINE = [
    "model.model_name=MobileNetV3Small", "model.img_size=64", "model.weights=null",
    "model.batchnorm_momentum=0.9", "train.batch_size=64", "train.lr=0.002",
]  # fmt: skip
PRESET_AUGMENTATION = [
    "train.augment.shift=0.05", "train.augment.scale=0.12", "train.augment.rotation=15",
    "train.augment.brightness=0.2", "train.augment.contrast=0.2",
]  # fmt: skip
FACE = [  # utkface_cpu's settings for the networks trained on faces
    "model.weights=packaged", "model.batchnorm_momentum=0.9", "model.feature_norm=true",
    "model.dropout=0.2", "train.age_loss=dldl", "train.age_balance=lds", "train.lr=0.001",
    *PRESET_AUGMENTATION,
]  # fmt: skip
LAST_STAGE = ["train.freeze_epochs=1", "train.trainable_from=block11", "train.finetune_lr=0.00002"]
LEVERS = {
    "baseline": [],
    "dldl": ["train.age_loss=dldl"],
    "mean_variance": ["train.age_loss=mean_variance"],
    "lds": ["train.age_balance=lds"],
    "preset_augmentation": PRESET_AUGMENTATION,
    "mixup": ["train.mixup_alpha=0.2"],
    "random_erasing": ["train.random_erasing.probability=0.5"],
    "img_size_96": ["model.img_size=96"],
    "img_size_128": ["model.img_size=128"],
    "MobileNetV3Large": ["model.model_name=MobileNetV3Large"],
    "EfficientNetB0": ["model.model_name=EfficientNetB0"],
    "WideResNet16_4": ["model.model_name=WideResNet16_4"],
    # The face networks (docs/training.md, "Backbones trained on faces"): frozen with heads,
    # the last stage fine-tuned, or the whole network, each after one epoch of heads.
    "DlibFaceResNet_frozen_150": [*FACE, "model.model_name=DlibFaceResNet", "model.img_size=150",
                                  "train.freeze_epochs=1000"],
    "DlibFaceResNet_last_stage_150": [*FACE, *LAST_STAGE, "model.model_name=DlibFaceResNet",
                                      "model.img_size=150"],
    "DlibFaceResNet_last_stage_112": [*FACE, *LAST_STAGE, "model.model_name=DlibFaceResNet",
                                      "model.img_size=112"],
    "DlibFaceResNet_whole_112": [*FACE, "model.model_name=DlibFaceResNet", "model.img_size=112",
                                 "train.freeze_epochs=1", "train.finetune_lr=0.00001"],
    "DlibFaceResNet_small_faces_150": [
        *FACE, *LAST_STAGE, "model.model_name=DlibFaceResNet", "model.img_size=150",
        "train.augment.low_resolution=0.3", "train.augment.blur=0.2", "train.augment.jpeg=0.3",
    ],
    "CydralAge_frozen_64": [*FACE, "model.model_name=CydralAge", "model.img_size=64",
                            "train.freeze_epochs=1000"],
    "CydralAge_whole_64": [*FACE, "model.model_name=CydralAge", "model.img_size=64",
                           "train.freeze_epochs=1", "train.finetune_lr=0.00002"],
    "CydralAge_whole_96": [*FACE, "model.model_name=CydralAge", "model.img_size=96",
                           "train.freeze_epochs=1", "train.finetune_lr=0.00002"],
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="UTKFace's face crops")
    parser.add_argument("--work", type=Path, default=Path("output/levers"))
    parser.add_argument("--epochs", type=int, default=4, help="epochs of every run")
    parser.add_argument("--only", help="comma-separated levers (default: all)")
    return parser.parse_args()


def train(args, name: str, overrides: list[str], meta: Path) -> tuple[Path, float]:
    """One run of train.py; the best model and its minutes."""
    output_dir = (args.work / name).resolve()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", *BASELINE, *overrides, f"train.epochs={args.epochs}",
         f"data.csv={meta / 'utkface_train.csv'}", f"data.val_csv={meta / 'utkface_val.csv'}",
         f"data.root={args.data.resolve()}", f"train.output_dir={output_dir}"],
        cwd=REPO, check=True,
    )  # fmt: skip
    return output_dir / "best.keras", (time.perf_counter() - started) / 60


def measure(model_path: Path, validation, data: Path, report: Path, tta: str = "none") -> dict:
    estimator = load_estimator(model_path)
    estimator.set_options(tta=tta)
    truth = validation.rename(columns={"ages": "true_age", "genders": "true_gender"})
    return next(iter(evaluation.evaluate([estimator], truth, data, report).values()))


def main() -> None:
    args = parse_args()
    meta = (args.work / "meta").resolve()
    meta.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "create_db.py", "--db", "utkface", "--data_dir", str(args.data.resolve()),
         "--val_fraction", "0.1", "--output", str(meta / "utkface.csv"), "--overwrite"],
        cwd=REPO, check=True,
    )  # fmt: skip
    validation = labels.read_labels_csv(meta / "utkface_val.csv")
    chosen = args.only.split(",") if args.only else list(LEVERS)
    rows = []
    for name in chosen:
        model_path, minutes = train(args, name, LEVERS[name], meta)
        summary = measure(model_path, validation, args.data, args.work / name / "report")
        rows.append((name, summary, minutes))
        if name == "baseline":
            flipped = measure(model_path, validation, args.data, args.work / name / "tta", "flip")
            rows.append(("tta_flip (baseline's model)", flipped, 0.0))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    print(f"\n{args.epochs} epochs each from {' '.join(BASELINE)}; commit {commit}")
    print("| lever | val MAE | CS@5 | gender | 60+ MAE | minutes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, summary, minutes in rows:
        print(f"| {name} | {summary['mae']:.2f} | {summary['cs5']:.1%} | "
              f"{summary['gender_accuracy']:.1%} | {summary['mae_60_plus']:.2f} | "
              f"{minutes:.1f} |")  # fmt: skip
    print(f"best_lever_mae: {min(summary['mae'] for _, summary, _ in rows):.2f}")


if __name__ == "__main__":
    main()
