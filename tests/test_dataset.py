"""The tf.data pipeline: shapes, crops, augmentation, mixup, random erasing, seeds, bad files."""

import concurrent.futures
import os
import sys
import threading

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from support import synthetic

from age_gender.config import AugmentConfig, ErasingConfig, TrainConfig
from age_gender.data import dataset
from age_gender.faces.crops import CropSpec
from age_gender.models import model

CROP = CropSpec(32)


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    root = tmp_path_factory.mktemp("disks")
    return root, synthetic.write_disk_dataset(root, 40, size=48, seed=0)


def first_batch(data):
    images, labels = next(iter(data))
    return images.numpy(), {name: values.numpy() for name, values in labels.items()}


def test_batches_have_the_model_shapes(disks):
    root, frame = disks
    images, labels = first_batch(dataset.make_dataset(frame, root, CROP, 8))
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8  # the model converts
    assert labels["pred_gender"].shape == (8, 2) and labels["pred_age"].shape == (8, 101)
    assert labels["pred_age"].argmax(1).tolist() == frame["ages"][:8].tolist()
    assert labels["pred_gender"].argmax(1).tolist() == frame["genders"][:8].tolist()
    assert images.min() >= 0 and images.max() <= 255


def test_without_box_the_image_is_resized_as_opencv_does(disks):
    root, frame = disks
    images, _ = first_batch(dataset.make_dataset(frame, root, CropSpec(48), 4))
    original = cv2.cvtColor(cv2.imread(str(root / frame["img_paths"][0])), cv2.COLOR_BGR2RGB)
    assert np.abs(images[0] - original).max() <= 16  # same pixels up to the JPEG decoder's DCT
    images, _ = first_batch(dataset.make_dataset(frame, root, CropSpec(24), 4))
    resized = cv2.resize(original, (24, 24), interpolation=cv2.INTER_LINEAR).astype(float)
    assert np.abs(images[0] - resized).mean() < 4


def test_crops_the_box_with_its_margin(tmp_path):
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 120:160] = (0, 255, 0)  # the face: x 120..160, y 40..60
    cv2.imwrite(str(tmp_path / "a.png"), image)
    frame = pd.DataFrame(
        {"genders": [1], "ages": [30], "img_paths": ["a.png"],
         "x_min": [120], "y_min": [40], "x_max": [160], "y_max": [60]}
    )  # fmt: skip
    tight, _ = first_batch(dataset.make_dataset(frame, tmp_path, CropSpec(20, 0.0), 1))
    assert tight[0, 1:-1, 1:-1, 1].min() > 250
    wide, _ = first_batch(dataset.make_dataset(frame, tmp_path, CropSpec(20, 0.5), 1))
    # margin 0.5 on each side: the face fills the middle half of each axis.
    assert wide[0, 7:13, 7:13, 1].min() > 250 and wide[0, :3, :, 1].max() < 5
    assert wide[0, :, :3, 1].max() < 5
    # The offset the model records moves the training crop as it moves the inference one.
    moved, _ = first_batch(dataset.make_dataset(frame, tmp_path, CropSpec(20, 0.0, (0.5, 0.0)), 1))
    assert moved[0, :, :8, 1].min() > 250 and moved[0, :, 12:, 1].max() < 5


def test_mixup_keeps_sums_and_mixes_both_heads_alike():
    count = 16
    images = tf.constant(np.arange(count, dtype=np.uint8)[:, None, None, None].repeat(4, 1))
    images = tf.tile(images, [1, 1, 4, 3])
    ages = np.arange(count) * 5
    labels = {
        "pred_gender": tf.one_hot(np.arange(count) % 2, 2),
        "pred_age": tf.one_hot(ages, 101),
    }
    weights = {"pred_gender": tf.ones([count]), "pred_age": tf.ones([count])}
    partner, lam = dataset.mixup_draws(count, tf.constant([1, 2], tf.int64), 0.4)
    mixed, mixed_weights = dataset.mix_labels(labels, weights, partner, lam)
    mixed_images = dataset.blend(images.numpy(), partner.numpy(), lam.numpy())
    np.testing.assert_allclose(mixed_weights["pred_gender"], 1, atol=1e-6)
    gender, age = mixed["pred_gender"].numpy(), mixed["pred_age"].numpy()
    np.testing.assert_allclose(gender.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(age.sum(1), 1, atol=1e-6)
    values = mixed_images[:, 0, 0, 0]
    for index in range(count):
        lam = age[index, ages[index]] if age[index, ages[index]] < 1 else 1.0
        partner = [p for p in np.flatnonzero(age[index]) if p != ages[index]]
        partner_index = partner[0] // 5 if partner else index
        mixed_value = lam * index + (1 - lam) * partner_index
        assert values[index] == pytest.approx(mixed_value, abs=0.5)  # rounded to uint8
        own = gender[index, index % 2]
        expected = 1.0 if partner_index % 2 == index % 2 else lam
        assert own == pytest.approx(expected, abs=1e-5)


def test_small_face_degradations_each_lose_detail_and_keep_the_light():
    checks = np.indices((64, 64)).sum(axis=0) % 2 * 255  # the finest detail there is, in
    face = np.dstack([checks, np.full_like(checks, 128), 255 - checks]).astype(np.uint8)  # colour
    draws = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # each on, at its strongest

    def detail(image):
        return np.abs(np.diff(image.astype(float), axis=1)).mean()

    assert (dataset.degrade(face, draws, AugmentConfig()) == face).all()  # all off
    for key in ("low_resolution", "blur", "jpeg"):
        changed = dataset.degrade(face, draws, AugmentConfig(**{key: 1.0}))
        assert changed.shape == face.shape and changed.dtype == np.uint8
        assert detail(changed) < 0.8 * detail(face), key
        assert abs(changed.mean() - face.mean()) < 12, key
        # A draw above the probability leaves the face as it was.
        kept = dataset.degrade(face, np.full(6, 0.99), AugmentConfig(**{key: 0.5}))
        assert (kept == face).all(), key


def test_random_erasing_paints_one_rectangle():
    erasing = ErasingConfig(1.0, [0.05, 0.3])
    for draws in np.random.default_rng(3).random((6, 7)):
        face = np.full((40, 40, 3), 100, np.uint8)
        dataset.erase_rectangle(face, draws, erasing)
        changed = (face != 100).any(axis=2)
        rows, columns = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        assert len(rows) and len(columns)
        box = changed[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        assert box.all() and changed.sum() == box.size
        assert 0.02 <= box.size / changed.size <= 0.4


def test_same_seed_same_batches_other_seed_other_batches(disks):
    root, frame = disks
    augmentation = TrainConfig(random_erasing=ErasingConfig(0.5), mixup_alpha=0.2)

    def batches(seed):
        data = dataset.make_dataset(frame, root, CROP, 8, augmentation, shuffle=True, seed=seed)
        return [images.numpy() for images, _ in data.take(3)]

    first, again, other = batches(7), batches(7), batches(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    plain, _ = first_batch(dataset.make_dataset(frame, root, CROP, 8, shuffle=True, seed=7))
    assert not np.array_equal(first[0], plain)


def test_unreadable_images_are_skipped_and_counted(disks, tmp_path, capsys):
    root, frame = disks
    good = (root / frame["img_paths"][0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    # Start and end markers intact, everything between them scrambled: only decoding can tell.
    scrambled = np.random.default_rng(0).integers(0, 256, len(good) - 22, np.uint8).tobytes()
    (tmp_path / "corrupt.jpg").write_bytes(good[:20] + scrambled + good[-2:])
    (tmp_path / "ok.jpg").write_bytes(good)
    names = ["ok.jpg", "corrupt.jpg", "cut.jpg", "empty.jpg", "notes.jpg", "gone.jpg"]
    rows = pd.DataFrame({"genders": [0] * 6, "ages": [1] * 6, "img_paths": names})
    kept = dataset.drop_unreadable(rows, tmp_path)
    assert kept["img_paths"].tolist() == ["ok.jpg"]
    warning = capsys.readouterr().out.strip().splitlines()
    assert warning == [
        "warning: skipping 5 of 6 images that cannot be read: corrupt.jpg (corrupt JPEG), "
        "cut.jpg (truncated JPEG), empty.jpg (empty)"
    ]


def test_data_sets_have_a_known_number_of_batches(disks):
    """Keras runs every epoch alike only when it knows the steps (EfficientNet failed without)."""
    root, frame = disks
    training = dataset.make_dataset(frame, root, CROP, 16, TrainConfig(), shuffle=True)
    assert training.cardinality().numpy() == len(frame) // 16
    assert dataset.make_dataset(frame, root, CROP, 16).cardinality().numpy() == -(-len(frame) // 16)


def test_erasing_and_mixup_work_without_the_other_augmentation(disks):
    root, frame = disks

    def batch(**options):
        augmentation = TrainConfig(augment=AugmentConfig(enabled=False), **options)
        return first_batch(dataset.make_dataset(frame, root, CROP, 8, augmentation, seed=3))

    plain_images, plain_labels = first_batch(dataset.make_dataset(frame, root, CROP, 8))
    erased, labels = batch(random_erasing=ErasingConfig(1.0))
    changed = (erased != plain_images).any(axis=3)
    assert changed.any(axis=(1, 2)).all()  # one rectangle per image, the rest untouched
    for mask in changed:
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask.sum() == len(rows) * len(columns)
    np.testing.assert_array_equal(labels["pred_age"], plain_labels["pred_age"])
    _, mixed = batch(mixup_alpha=0.4)
    assert (mixed["pred_age"].max(axis=1) < 1).any()  # soft labels: mixup ran


def test_unknown_genders_teach_age_only(disks):
    root, frame = disks
    frame = frame[:16].copy()
    assert len(next(iter(dataset.make_dataset(frame, root, CROP, 16)))) == 2  # no loss weights
    frame["genders"] = np.where(np.arange(16) % 2, frame["genders"], -1)
    _, labels, weights = next(iter(dataset.make_dataset(frame, root, CROP, 16)))
    np.testing.assert_array_equal(weights[0], np.arange(16) % 2)  # gender, then age
    np.testing.assert_array_equal(weights[1], np.ones(16))
    np.testing.assert_array_equal(labels["pred_gender"].numpy().sum(1), np.arange(16) % 2)
    mixing = TrainConfig(augment=AugmentConfig(enabled=False), mixup_alpha=0.4)
    _, mixed, mixed_weights = next(iter(dataset.make_dataset(frame, root, CROP, 16, mixing)))
    gender, weight = mixed["pred_gender"].numpy(), mixed_weights[0].numpy()
    # A known gender mixed in keeps a whole target, weighted by its share; two unknown, none.
    np.testing.assert_allclose(gender.sum(1), (weight > 0).astype(float), atol=1e-5)
    assert ((weight >= 0) & (weight <= 1)).all()

    # The gender loss of rows of unknown gender is 0: Keras weighs them out.
    network = model.build_model("MobileNetV3Small", CROP, None)
    model.compile_model(network, keras.optimizers.Adam())
    half = network.evaluate(
        dataset.make_dataset(frame, root, CROP, 16), verbose=0, return_dict=True
    )
    images = next(iter(dataset.make_dataset(frame, root, CROP, 16)))[0]
    predicted = network.predict(images, verbose=0)[0].argmax(1)
    known = frame["genders"].to_numpy() >= 0
    expected = (predicted[known] == frame["genders"].to_numpy()[known]).mean()
    assert half["pred_gender_accuracy"] == pytest.approx(expected)  # over known genders only
    frame["genders"] = -1
    losses = network.evaluate(
        dataset.make_dataset(frame, root, CROP, 16), verbose=0, return_dict=True
    )
    assert losses["pred_gender_loss"] == 0 and losses["pred_age_loss"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux threads' niceness")
def test_the_image_threads_yield_to_the_model():
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert dataset.thread_pool().submit(niceness).result() == min(niceness() + 10, 19)


def test_a_refused_priority_leaves_the_threads_working(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)  # as a sandbox's seccomp profile does
    with concurrent.futures.ThreadPoolExecutor(1, initializer=dataset.yield_to_the_model) as pool:
        assert pool.submit(lambda: 2 + 2).result() == 4


@pytest.mark.parametrize("count", [0, 1, 5])
def test_a_batch_is_the_same_whatever_the_number_of_threads(disks, monkeypatch, count):
    root, frame = disks
    columns = dataset.label_tensors(frame.head(count), root)
    rng = np.random.default_rng(0)
    draws = rng.random((count, dataset.IMAGE_DRAWS)).astype(np.float32)
    augmentation = TrainConfig(random_erasing=ErasingConfig(0.5))

    def batch(threads: int) -> np.ndarray:
        monkeypatch.setattr(dataset, "thread_count", lambda: threads)
        paths = np.array([str(path).encode() for path in columns["path"]], dtype="S")
        return dataset.load_faces(
            paths, columns["box"], columns["eyes"], columns["bounds"], draws, np.zeros(0, np.int32),
            np.zeros(0, np.float32), CROP, augmentation,
        )  # fmt: skip

    single = batch(1)
    assert single.shape == (count, CROP.size, CROP.size, 3)
    assert all(np.array_equal(single, batch(threads)) for threads in (3, 64))
