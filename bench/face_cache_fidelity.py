"""Whether training from the face cache sees the faces training from the photos sees: the same
faces cropped by the pipeline (no augmentation) from the originals and from the cache (JPEG
quality 95, resampled twice), their pixel difference, and a trained model's age MAE and gender
accuracy on each.

    python cache_faces.py --csv faces.csv --root photos --output_dir cache model.img_size=150
    python bench/face_cache_fidelity.py --csv faces.csv --root photos \
        --cached_csv cache/faces.csv --cache_root cache --weight_file model.keras --margin 0.4

`--margin` is the one the cache was cut with (cache_faces.py prints it) or a smaller one: the
cached faces crop as the photos there. Last line: cache_mae_change (cache minus originals, years).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from age_gender.data import dataset, labels
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error
from age_gender.estimators.presets import load_estimator
from age_gender.faces.crops import CropSpec, is_box


def pipeline_crops(frame: pd.DataFrame, root: Path, crop: CropSpec) -> np.ndarray:
    return np.concatenate([images for images, _ in dataset.make_dataset(frame, root, crop, 64)])


@exit_on_user_error
def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True, help="faces with boxes")
    parser.add_argument("--root", type=Path, required=True, help="their images")
    parser.add_argument("--cached_csv", type=Path, required=True, help="cache_faces.py's CSV")
    parser.add_argument("--cache_root", type=Path, required=True, help="its --output_dir")
    parser.add_argument("--weight_file", type=Path, required=True, help="a model from train.py")
    parser.add_argument("--margin", type=float, default=0.4, help="the cache's data.margin")
    args = parser.parse_args()
    if not args.margin >= 0:
        raise UserError(f"--margin must be 0 or more, not {args.margin}")
    truth, cache = labels.read_labels_csv(args.csv), labels.read_labels_csv(args.cached_csv)
    if not is_box(labels.face_boxes(truth)).all():
        raise UserError(f"{args.csv}: every row needs a face box (the cache holds boxed faces)")
    if len(dataset.drop_unreadable(truth, args.root)) != len(truth):
        raise UserError(f"some photos of {args.csv} cannot be read; compare readable faces")
    cache = dataset.drop_unreadable(cache, args.cache_root)
    same = ["ages", "genders"]
    if len(cache) != len(truth) or not cache[same].equals(truth[same]):
        raise UserError(f"{args.cached_csv} does not hold the faces of {args.csv}, in its order: "
                        "make it with cache_faces.py from that CSV")  # fmt: skip
    estimator = load_estimator(args.weight_file)
    crop = CropSpec(estimator.crop_spec.size, args.margin)  # the cache's: centred, unaligned
    originals = pipeline_crops(truth, args.root, crop)
    cached = pipeline_crops(cache, args.cache_root, crop)
    difference = np.abs(originals.astype(np.float32) - cached)
    psnr = 10 * np.log10(255**2 / np.mean(difference**2))
    print(f"{len(truth)} faces, {crop.size} px at margin {crop.margin}: mean |pixel difference| "
          f"{difference.mean():.2f} of 255, PSNR {psnr:.1f} dB")  # fmt: skip
    true_ages, true_genders = truth["ages"].to_numpy(), truth["genders"].to_numpy()
    known = true_genders >= 0
    results = []
    for name, faces in (("originals", originals), ("cache", cached)):
        predictions = estimator.predict_inputs([faces], batch_size=64)
        ages = np.array([prediction.age for prediction in predictions])
        genders = np.array([prediction.male_probability >= 0.5 for prediction in predictions])
        error = np.abs(ages - true_ages).mean()
        accuracy = np.mean(genders[known] == true_genders[known])
        print(f"from the {name}: age MAE {error:.3f}, gender accuracy {accuracy:.4f}")
        results.append((error, ages))
    change = np.abs(results[0][1] - results[1][1]).mean()
    print(f"mean |age from the originals - age from the cache|: {change:.3f} years")
    print(f"cache_mae_change: {results[1][0] - results[0][0]:+.3f}")


if __name__ == "__main__":
    main()
