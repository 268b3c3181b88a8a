"""Annotation of images: a box and an `age, M/F` label scaled with the face."""

import cv2
import numpy as np

from age_gender.schema import Prediction

BOX_COLOUR = (255, 140, 0)  # RGB
TEXT_COLOUR = (255, 255, 255)


def label(prediction: Prediction) -> str:
    return f"{prediction.age:.0f}, {prediction.gender}"


def draw_faces(image: np.ndarray, boxes: list[tuple], predictions: list[Prediction]) -> np.ndarray:
    """A copy of the RGB image with each face's box and label, readable at any image size."""
    canvas = image.copy()
    for (x_min, y_min, x_max, y_max), prediction in zip(boxes, predictions, strict=True):
        scale = max((x_max - x_min) / 120, 0.4)
        thickness = max(round(scale * 2), 1)
        cv2.rectangle(canvas, (x_min, y_min), (x_max, y_max), BOX_COLOUR, thickness)
        text = label(prediction)
        font = cv2.FONT_HERSHEY_SIMPLEX
        (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
        top = max(y_min - height - baseline - thickness, 0)
        cv2.rectangle(
            canvas, (x_min, top), (x_min + width, top + height + baseline), BOX_COLOUR, cv2.FILLED
        )
        cv2.putText(
            canvas, text, (x_min, top + height), font, scale, TEXT_COLOUR, thickness, cv2.LINE_AA
        )
    return canvas
