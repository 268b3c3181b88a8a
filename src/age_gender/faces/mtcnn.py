"""MTCNN (Zhang et al. 2016): the `mtcnn` package's three networks and weights (MIT licence),
run by onnxruntime (`mtcnn_networks`), the pyramid and the box arithmetic in NumPy and OpenCV.
The package's own pipeline runs eager TensorFlow op by op and takes ~170 ms per 640x480 frame on
2 cores; this takes ~31 ms at the same recall, and needs no TensorFlow (bench/detection.py).

MTCNN finds faces turned up to about ±45° and down to its smallest searched size, where dlib's
HOG needs an upright face of 80 px (40 px upsampled), and gives five landmarks (eyes, nose, mouth
corners).
"""

import cv2
import numpy as np

from age_gender.faces.crops import iou
from age_gender.faces.mtcnn_networks import sessions

PNET_CELL, PNET_STRIDE = 12, 2  # PNet scores 12x12 windows every 2 pixels of its pyramid level
PYRAMID_STEP = 0.709  # each level 1/sqrt(2) the area of the last: the paper's factor
THRESHOLDS = (0.6, 0.7, 0.8)  # PNet, RNet, ONet face scores: the package's defaults


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, over_smaller: bool = False
) -> np.ndarray:
    """Indices of the boxes kept, best score first: each box dropped when it overlaps a better
    one by more than `threshold`, measured over the union (OpenCV's NMS: a photo's PNet levels
    hold hundreds of boxes) or, with `over_smaller`, over the smaller box (which also drops a
    small box inside a big one; the last stage's few boxes)."""  # fmt: skip
    if not over_smaller:
        rects = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]]).astype(np.float64)
        kept = cv2.dnn.NMSBoxes(rects, scores.astype(np.float32), 0.0, threshold)
        return np.asarray(kept, int).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        order = rest[iou(boxes[best], boxes[rest], over_smaller=True) <= threshold]
    return np.asarray(kept, int)


def squared(boxes: np.ndarray) -> np.ndarray:
    """Each box widened to a square about its centre (the next network's input is square)."""
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centres = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) / 2
    return np.concatenate([centres - sides[:, None] / 2, centres + sides[:, None] / 2], axis=1)


def refined(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's regression (corner offsets in box sizes)."""
    sizes = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
    return boxes + offsets * sizes


def patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The boxes' pixels resized to size x size, corners on corners (as TensorFlow's
    crop_and_resize, which the networks were trained with); 0 outside the image."""
    found = np.empty((len(boxes), size, size, 3), np.float32)
    for index, (x_min, y_min, x_max, y_max) in enumerate(boxes[:, :4]):
        scale_x, scale_y = (x_max - x_min) / (size - 1), (y_max - y_min) / (size - 1)
        matrix = np.array([[scale_x, 0, x_min], [0, scale_y, y_min]])
        found[index] = cv2.warpAffine(image, matrix, (size, size),
                                      flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)  # fmt: skip
    return found


def pyramid(height: int, width: int, min_face: float) -> list[float]:
    """The scales searched: the largest maps `min_face` pixels to PNet's 12, each next one 0.709
    of it, down to the one where the whole image is 12 px. A larger `min_face` is quadratically
    faster and misses smaller faces."""
    scales, scale = [], PNET_CELL / max(min_face, PNET_CELL)
    while min(height, width) * scale >= PNET_CELL:
        scales.append(scale)
        scale *= PYRAMID_STEP
    return scales


def proposals(image: np.ndarray, min_face: float) -> np.ndarray:
    """PNet's candidate boxes (x_min, y_min, x_max, y_max, score) in a normalised image,
    squared."""
    pnet = sessions()[0]
    height, width = image.shape[:2]
    found = []
    for scale in pyramid(height, width, min_face):
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        offsets, scores = (output[0] for output in pnet.run(None, {"image": level[None]}))
        rows, cols = np.nonzero(scores[..., 1] > THRESHOLDS[0])
        if not rows.size:
            continue
        corners = np.stack([cols, rows], axis=1) * PNET_STRIDE
        cells = np.concatenate([corners, corners + PNET_CELL], axis=1).astype(np.float32)
        boxes = refined(cells, offsets[rows, cols]) / scale
        score = scores[rows, cols, 1]
        keep = non_max_suppression(boxes, score, 0.5)
        found.append(np.column_stack([boxes[keep], score[keep]]))
    if not found:
        return np.empty((0, 5), np.float32)
    found = np.concatenate(found)
    found = found[non_max_suppression(found[:, :4], found[:, 4], 0.7)]
    return np.column_stack([squared(found[:, :4]), found[:, 4]])


def detect(image: np.ndarray, min_face: float = 20) -> tuple[np.ndarray, np.ndarray]:
    """Faces of `min_face` pixels or more in an RGB uint8 image: boxes (N, 5: corners and
    score, best first) and their landmarks (N, 5, 2: left eye, right eye, nose, mouth left,
    mouth right, in pixels; left and right as seen in the image)."""
    _, rnet, onet = sessions()
    normalised = image.astype(np.float32)
    normalised -= 127.5  # in place: a photo's three temporaries cost as much as PNet's first level
    normalised /= 128
    boxes = proposals(normalised, min_face)
    if len(boxes):
        offsets, scores = rnet.run(None, {"image": patches(normalised, boxes, 24)})
        keep = scores[:, 1] > THRESHOLDS[1]
        boxes = np.column_stack([refined(boxes[keep, :4], offsets[keep]), scores[keep, 1]])
        boxes = boxes[non_max_suppression(boxes[:, :4], boxes[:, 4], 0.7)]
        boxes[:, :4] = squared(boxes[:, :4])
    if not len(boxes):
        return np.empty((0, 5), np.float32), np.empty((0, 5, 2), np.float32)
    offsets, points, scores = onet.run(None, {"image": patches(normalised, boxes, 48)})
    sizes = boxes[:, 2:4] - boxes[:, 0:2]
    landmarks = (
        np.stack([points[:, :5], points[:, 5:]], axis=2) * sizes[:, None] + boxes[:, None, :2]
    )
    keep = scores[:, 1] > THRESHOLDS[2]
    boxes = np.column_stack([refined(boxes[keep, :4], offsets[keep]), scores[keep, 1]])
    landmarks = landmarks[keep]
    kept = non_max_suppression(boxes[:, :4], boxes[:, 4], 0.7, over_smaller=True)
    return boxes[kept], landmarks[kept]
