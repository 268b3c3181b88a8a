"""cache_faces.py: the cache gives training the crops of the originals, and resumes after a kill."""

import re

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, kill_when, user_error

from age_gender.config import ErasingConfig, TrainConfig
from age_gender.data import dataset, face_cache
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec


def photo(path, width=400, height=300, seed=0):
    """A smooth random photo (JPEG): details of about 30 px, as a face has at the sizes here,
    so resampling twice (through the cache) stays close to resampling once."""
    noise = np.random.default_rng(seed).integers(0, 256, (height // 30, width // 30, 3), np.uint8)
    cv2.imwrite(str(path), cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC))


def test_training_on_the_cache_gives_the_crops_of_the_originals(tmp_path, run_script):
    (tmp_path / "images").mkdir()
    boxes = [(150, 100, 250, 200), (0, 0, 80, 90), (330, 220, 400, 300), (120, 60, 200, 180)]
    for index in range(len(boxes)):
        photo(tmp_path / "images" / f"{index}.jpg", seed=index)
        # Face crops without a box (the whole image is the face), as IMDB-WIKI's.
        photo(tmp_path / "images" / f"crop{index}.jpg", 100, 120, seed=index)
    frame = pd.DataFrame(boxes, columns=["x_min", "y_min", "x_max", "y_max"])
    frame.insert(0, "img_paths", [f"{index}.jpg" for index in range(len(boxes))])
    frame.insert(0, "ages", [20, 30, 40, 50])
    frame.insert(0, "genders", [0, 1, 0, 1])
    crops = frame.assign(img_paths=[f"crop{index}.jpg" for index in range(len(boxes))])
    crops[["x_min", "y_min", "x_max", "y_max"]] = None
    frame = pd.concat([frame, crops])  # faces near the borders too
    frame.to_csv(tmp_path / "labels.csv", index=False)

    result = run_script(
        "cache_faces.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--output_dir", tmp_path / "cache", "model.img_size=48", "--workers", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cache: 8 faces" in result.stdout and "MiB on disk" in result.stdout
    cached = pd.read_csv(tmp_path / "cache" / "labels.csv")
    assert cached[["genders", "ages"]].equals(frame[["genders", "ages"]].reset_index(drop=True))
    sides = {cv2.imread(str(tmp_path / "cache" / path)).shape for path in cached["img_paths"]}
    assert sides == {(100, 100, 3)}  # 1.25 x 48 for the crop, room for augmentation around it

    def batch(rows, root, augmentation=None):
        data = dataset.make_dataset(rows, root, CropSpec(48), 8, augmentation, seed=5)
        return next(iter(data))[0].numpy().astype(float)

    frame = frame.reset_index(drop=True)
    plain = np.abs(batch(frame, tmp_path / "images") - batch(cached, tmp_path / "cache"))
    # Resampling twice: a crop one pixel off would differ by 20 on average. On the image's own
    # border the cache blends its last pixel with the black beyond, as augmentation does.
    assert plain.mean() < 3 and np.percentile(plain[:, 1:-1, 1:-1], 99) < 15, plain.mean()
    augmentation = TrainConfig(random_erasing=ErasingConfig(0.5))
    augmented = np.abs(
        batch(frame, tmp_path / "images", augmentation)
        - batch(cached, tmp_path / "cache", augmentation)
    )
    assert augmented.mean() < 3.5, augmented.mean()

    # A narrower margin crops the cached faces as the photos, even where the cached margin's
    # crop was clipped by the photo's border; a wider one is refused in one line.
    narrower = CropSpec(48, 0.1)
    data = dataset.make_dataset(frame, tmp_path / "images", narrower, 8)
    from_photos = next(iter(data))[0].numpy().astype(float)
    from_cache = next(iter(dataset.make_dataset(cached, tmp_path / "cache", narrower, 8)))[0]
    difference = np.abs(from_photos - from_cache.numpy())
    assert difference.mean() < 3 and np.percentile(difference[:, 1:-1, 1:-1], 99) < 15
    with pytest.raises(UserError, match="holds crops of margin 0.4, narrower than data.margin=0.6"):
        dataset.make_dataset(cached, tmp_path / "cache", CropSpec(48, 0.6), 8)


@pytest.mark.slow
def test_a_killed_cache_resumes(tmp_path, run_script):
    (tmp_path / "images").mkdir()
    photo(tmp_path / "images" / "big.jpg", 1200, 900)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 800, (300, 2))
    sides = rng.integers(60, 300, (300, 1))
    frame = pd.DataFrame(np.hstack([corners, corners + sides]), columns=["x_min", "y_min",
                         "x_max", "y_max"])  # fmt: skip
    frame.insert(0, "img_paths", "big.jpg")  # several faces in one photo, as in IMDB-Clean
    frame.insert(0, "ages", 30)
    frame.insert(0, "genders", 1)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    arguments = ["--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
                 "--output_dir", tmp_path / "cache", "--workers", "1"]  # fmt: skip

    def cached() -> bool:
        return len(list((tmp_path / "cache").glob("faces/*/[!.]*.jpg"))) >= 20

    kill_when([REPO / "cache_faces.py", *arguments], cached, "nothing was cached", timeout=120)
    assert not (tmp_path / "cache" / "labels.csv").exists()
    for path in (tmp_path / "cache").glob("faces/*/[!.]*.jpg"):  # complete or absent
        assert cv2.imread(str(path)) is not None, path

    resumed = run_script("cache_faces.py", *arguments)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = int(resumed.stdout.split("resuming: ")[1].split()[0])
    assert 20 <= done < 300
    cached = pd.read_csv(tmp_path / "cache" / "labels.csv")
    files = sorted((tmp_path / "cache").glob("faces/*/*.jpg"))
    assert len(cached) == 300 == len(files) == cached["img_paths"].nunique()
    assert not list((tmp_path / "cache").glob("faces/*/.*"))  # no temporary file left
    again = run_script("cache_faces.py", *arguments)
    assert "exists; pass --overwrite" in user_error(again)
    beside = run_script("cache_faces.py", *arguments[:4], "--output_dir", tmp_path, "--overwrite")
    assert "would replace an input file" in user_error(beside)  # the CSV keeps its name
    assert (tmp_path / "labels.csv").read_text().startswith("genders,ages,img_paths")


def test_cut_cached_faces_are_redone_and_an_empty_cache_is_refused(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    photo(tmp_path / "images" / "a.jpg")
    frame = pd.DataFrame({"genders": [1, 0], "ages": [30, 40], "img_paths": ["a.jpg", "a.jpg"],
                          "x_min": [10, 200], "y_min": [10, 100], "x_max": [110, 300],
                          "y_max": [110, 200]})  # fmt: skip

    def cache(**options):
        return face_cache.cache_faces(frame, tmp_path / "images", tmp_path / "cache",
                                      CropSpec(32), 1.0, 1, **options)  # fmt: skip

    cached = cache()
    first = tmp_path / "cache" / cached["img_paths"][0]
    first.write_bytes(first.read_bytes()[:200])  # cut, as a full disk leaves it
    capsys.readouterr()
    cache()
    assert "resuming: 1 of 2 faces are cached already" in capsys.readouterr().out
    assert cv2.imread(str(first)) is not None and first.stat().st_size > 200
    cache(overwrite=True)
    assert "resuming" not in capsys.readouterr().out
    with pytest.raises(UserError, match="no face of the 2 rows could be cached .2 cannot be read"):
        face_cache.cache_faces(frame, tmp_path, tmp_path / "other", CropSpec(32), 1.0, 1)


def test_a_cache_folder_it_cannot_write_is_one_line(tmp_path):
    photo(tmp_path / "0.jpg")
    frame = pd.DataFrame({"genders": [0], "ages": [30], "img_paths": ["0.jpg"], "x_min": [150],
                          "y_min": [100], "x_max": [250], "y_max": [200]})  # fmt: skip
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "faces").write_text("a file where the faces' folder goes")
    with pytest.raises(UserError, match="cannot write the face cache in .*choose another"):
        face_cache.cache_faces(frame, tmp_path, tmp_path / "cache", CropSpec(32), 1.0, 1)


def test_an_edited_or_cut_cache_csv_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    photo(tmp_path / "images" / "a.jpg")
    frame = pd.DataFrame({"genders": [1, 0], "ages": [30, 40], "img_paths": ["a.jpg", "a.jpg"],
                          "x_min": [0, 200], "y_min": [0, 100], "x_max": [100, 300],
                          "y_max": [110, 200]})  # fmt: skip
    cached = face_cache.cache_faces(frame, tmp_path / "images", tmp_path / "cache", CropSpec(32),
                                    1.0, 1)  # fmt: skip
    cases = {
        "lacks cache_margin": cached.drop(columns="cache_margin"),
        "not numbers": cached.assign(cache_margin=["abc", "0.4"]),
        "(e.g. row 2)": cached.assign(bounds_x_max=-5.0),
        "(e.g. row 3)": cached.assign(cache_margin=[0.4, np.nan]),  # a cut last row
    }
    for words, rows in cases.items():
        with pytest.raises(UserError, match=re.escape(words)):
            dataset.make_dataset(rows, tmp_path / "cache", CropSpec(32), 2)
    with pytest.raises(UserError, match="a face cache's already"):  # bounds without the margin
        face_cache.cache_faces(cases["lacks cache_margin"], tmp_path / "cache", tmp_path / "c2",
                               CropSpec(32), 1.0, 1)  # fmt: skip
