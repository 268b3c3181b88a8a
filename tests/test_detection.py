"""The detector families behind one interface: MTCNN finds what HOG misses, gives the eyes, and
draws its boxes where HOG would, so a model crops the same face whichever found it."""

import math
import pickle

import cv2
import numpy as np
import pytest
from conftest import REPO

from age_gender.faces import crops, detection, mtcnn
from age_gender.faces.mtcnn import non_max_suppression

ASTRONAUT_EYES_CENTRE = (225.0, 102.0)  # between the astronaut's eyes


def rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def turned(image: np.ndarray, degrees: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(ASTRONAUT_EYES_CENTRE, degrees, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def eye_angle(eyes) -> float:
    return math.degrees(math.atan2(eyes[3] - eyes[1], eyes[2] - eyes[0]))


def test_mtcnn_finds_a_turned_face_hog_misses_and_its_eyes():
    upright = rgb(REPO / "examples" / "astronaut.png")
    image = turned(upright, 45)  # counter-clockwise: the eye line falls to the right
    assert detection.DetectorSpec("hog").build().detect(image) == []
    found = detection.DetectorSpec("mtcnn").build().detect(image)
    assert len(found) == 1
    x_min, y_min, x_max, y_max = found[0].box
    assert x_min < ASTRONAUT_EYES_CENTRE[0] < x_max and y_min < ASTRONAUT_EYES_CENTRE[1] < y_max
    level = eye_angle(detection.DetectorSpec("mtcnn").build().detect(upright)[0].eyes)
    assert abs(level) < 6
    assert eye_angle(found[0].eyes) == pytest.approx(level - 45, abs=10)
    left_x, left_y, right_x, right_y = found[0].eyes
    assert left_x < right_x and x_min < left_x and right_x < x_max


def test_mtcnn_boxes_map_onto_hogs_so_models_crop_the_same_face():
    image = rgb(REPO / "examples" / "astronaut.png")
    (hog,) = detection.DetectorSpec("hog").build().detect(image)
    (by_mtcnn,) = detection.DetectorSpec("mtcnn").build().detect(image)
    assert hog.eyes is None
    # The crop a model with the original margin takes: within 6 % of its side, 6 px of a 96 px
    # model input (boxes of one detector vary 8 % in size between faces). MTCNN's own box,
    # taller and higher on the face, is more than twice as far off.
    hog_crop = crops.crop_box(image.shape, hog.box, 0.4)
    side = hog_crop[2] - hog_crop[0]
    mapped = crops.crop_box(image.shape, by_mtcnn.box, 0.4)
    assert np.abs(hog_crop - mapped).max() <= 0.06 * side
    raw = mtcnn.detect(image, 40)[0][0, :4]
    assert np.abs(hog_crop - crops.crop_box(image.shape, raw, 0.4)).max() > 0.12 * side
    assert crops.iou(hog.box, [by_mtcnn.box])[0] > 0.8


@pytest.mark.parametrize("path", ["examples/cat_no_face.png", "tests/data/coffee.png",
                                  "tests/data/gravel.png"])  # fmt: skip
def test_mtcnn_finds_no_face_in_faceless_images(path):
    assert detection.DetectorSpec("mtcnn", upsample=2).build().detect(rgb(REPO / path)) == []


def test_upsampling_finds_smaller_faces():
    image = rgb(REPO / "examples" / "astronaut.png")
    small = cv2.resize(image, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # a 27 px face
    assert detection.DetectorSpec("mtcnn", upsample=0).build().detect(small) == []
    assert len(detection.DetectorSpec("mtcnn", upsample=1).build().detect(small)) == 1
    assert detection.DetectorSpec("mtcnn", upsample=1, min_face=60).build().detect(small) == []


def test_min_face_holds_in_large_photos_searched_downscaled():
    image = rgb(REPO / "examples" / "astronaut.png")
    large = cv2.resize(image, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)  # a 730 px face
    for kind in ("mtcnn", "hog"):
        assert len(detection.DetectorSpec(kind, min_face=400).build().detect(large)) == 1, kind
        assert detection.DetectorSpec(kind, min_face=900).build().detect(large) == [], kind


def test_a_detector_spec_travels_to_a_worker_and_builds_the_same_detector():
    spec = detection.DetectorSpec("hog", upsample=0, min_face=30, min_score=0.5, max_side=400)
    copy = pickle.loads(pickle.dumps(spec))
    built = copy.build()
    assert built.spec == spec and not built.gives_eyes  # the detector holds its settings once


def test_non_max_suppression_over_the_union_and_over_the_smaller_box():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert non_max_suppression(boxes, scores, 0.5).tolist() == [0, 2, 3]
    # A small box inside a big one overlaps all of itself: dropped over the smaller box.
    assert non_max_suppression(boxes, scores, 0.5, over_smaller=True).tolist() == [0, 3]
