"""The Python API: a model by name or path, the faces of a path or an array, records of the
one output schema."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import REPO

from age_gender import FaceAnalyzer, schema
from age_gender.errors import UserError

ASTRONAUT = REPO / "examples" / "astronaut.png"


def test_a_named_model_analyzes_a_path_and_an_array_alike():
    analyzer = FaceAnalyzer("dlib-models")
    (face,) = analyzer.analyze(ASTRONAUT)
    assert list(face) == schema.COLUMNS
    assert face["file"] == "astronaut.png" and face["status"] == schema.OK
    assert (face["width"], face["height"], face["faces"], face["face"]) == (512, 512, 1, 0)
    assert face["gender"] == "F" and 20 < face["age"] < 60 and face["score"] >= 0.9
    assert face["age_std"] is None  # dlib-models gives no age distribution
    assert 150 < face["x_min"] < 200 and 60 < face["y_min"] < 100
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    (same,) = analyzer.analyze(image)
    assert same["file"] is None
    keys = ("x_min", "age", "gender")
    assert [same[key] for key in keys] == [face[key] for key in keys]
    assert analyzer.analyze(REPO / "examples" / "cat_no_face.png") == []


def test_a_model_file_and_a_detector_by_name(varied_model):
    analyzer = FaceAnalyzer(varied_model / "tiny.keras", detector="hog", tta="flip")
    (face,) = analyzer.analyze(ASTRONAUT)
    assert face["x_min"] == 175 and face["y_min"] == 76  # HOG's box
    assert 0 <= face["age"] <= 100 and face["age_std"] > 0


def test_bad_input_is_one_clear_error(tmp_path):
    analyzer = FaceAnalyzer("dlib-models")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(UserError, match="notes.jpg is not a readable image"):
        analyzer.analyze(tmp_path / "notes.jpg")
    with pytest.raises(UserError, match="RGB uint8"):
        analyzer.analyze(np.zeros((10, 10), np.float32))
    with pytest.raises(UserError, match="of 1 pixel or more, not uint8 \\(0, 0, 3\\)"):
        analyzer.analyze(np.zeros((0, 0, 3), np.uint8))
    (tmp_path / "huge.png").write_bytes(huge_png_header())
    with pytest.raises(UserError, match="huge.png is not a readable image"):
        analyzer.analyze(tmp_path / "huge.png")
    with pytest.raises(UserError, match="not to dlib-models"):
        FaceAnalyzer("dlib-models", tta="flip")
    for wrong, message in [((42,), "model must be"),
                           (("no-such-model",), "unknown model .no-such-model.; the named"),
                           (("",), "the model is an empty name"),
                           (("dlib-models", None), "detector must be")]:  # fmt: skip
        with pytest.raises(UserError, match=message):
            FaceAnalyzer(*wrong)
    with pytest.raises(UserError, match="an image path or an RGB uint8 array, not NoneType"):
        analyzer.analyze(None)


def huge_png_header() -> bytes:
    """A 69-byte PNG whose header claims 100000 x 100000 pixels, past OpenCV's limit."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
