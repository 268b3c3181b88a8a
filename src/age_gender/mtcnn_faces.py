"""MTCNN (Zhang et al. 2016) on the `mtcnn` package's networks and weights (MIT), run as compiled
graphs: the package's own pipeline runs eager TensorFlow op by op and takes ~330 ms on a 640x480
frame on 2 cores; the same three networks called as `tf.function`s, with the pyramid and the
box arithmetic in NumPy/OpenCV, take a fraction of that (bench/detection.py).

MTCNN finds faces turned ±25° and down to its smallest searched size, where dlib's HOG needs an
upright face of 80 px (40 px upsampled), and gives five landmarks (eyes, nose, mouth corners).
"""

import functools

import cv2
import numpy as np

from age_gender.errors import UserError

PNET_CELL, PNET_STRIDE = 12, 2  # PNet scores 12x12 windows every 2 pixels of its pyramid level
PYRAMID_STEP = 0.709  # each level 1/sqrt(2) the area of the last: the paper's factor
THRESHOLDS = (0.6, 0.7, 0.8)  # PNet, RNet, ONet face scores: the package's defaults


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, over_smaller: bool = False
) -> np.ndarray:
    """Indices of the boxes kept, best score first: each box dropped when it overlaps a better
    one by more than `threshold`, measured over the union or, with `over_smaller`, over the
    smaller box (which also drops a small box inside a big one)."""  # fmt: skip
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        low = np.maximum(boxes[best, :2], boxes[rest, :2])
        high = np.minimum(boxes[best, 2:4], boxes[rest, 2:4])
        inter = np.prod(np.clip(high - low, 0, None), axis=1)
        union = area[best] + area[rest] - inter
        base = np.minimum(area[best], area[rest]) if over_smaller else union
        order = rest[inter / np.maximum(base, 1e-9) <= threshold]
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


def patches(tf, image, boxes, size: int):
    """The boxes' pixels resized to size x size (tf's crop_and_resize takes normalised y_min,
    x_min, y_max, x_max; areas outside the image are black, as the networks were trained)."""
    shape = tf.cast(tf.shape(image)[1:3], tf.float32)
    corners = tf.gather(boxes / tf.stack([shape[1], shape[0], shape[1], shape[0]]), [1, 0, 3, 2],
                        axis=1)  # fmt: skip
    indices = tf.zeros(tf.shape(boxes)[:1], tf.int32)
    return tf.image.crop_and_resize(image, corners, indices, (size, size))


@functools.cache
def compiled_networks() -> tuple:
    """PNet (any image size), and RNet and ONet on the patches of given boxes, each one
    `tf.function` traced once per process, however many detectors are made."""
    try:
        import tensorflow as tf
        from mtcnn.network.onet import ONet
        from mtcnn.network.pnet import PNet
        from mtcnn.network.rnet import RNet
        from mtcnn.utils.tensorflow import load_weights
    except ImportError as error:
        raise UserError(
            "the MTCNN detector needs the mtcnn package: pip install 'mtcnn>=1.0,<2' "
            "(or use --detector hog)"
        ) from error
    networks = []
    for network, weights in ((PNet(), "pnet.lz4"), (RNet(), "rnet.lz4"), (ONet(), "onet.lz4")):
        network.build()
        network.set_weights(load_weights(weights))
        networks.append(network)
    pnet, rnet, onet = networks
    image = tf.TensorSpec([None, None, None, 3], tf.float32)
    boxes = tf.TensorSpec([None, 4], tf.float32)
    return (
        tf.function(pnet, input_signature=[image]),
        tf.function(lambda pixels, found: rnet(patches(tf, pixels, found, 24)), [image, boxes]),
        tf.function(lambda pixels, found: onet(patches(tf, pixels, found, 48)), [image, boxes]),
    )


class Mtcnn:
    """The three networks and the cascade. `min_face` is the smallest face searched (pixels):
    the pyramid starts where such a face is 12 px, so a larger `min_face` is quadratically
    faster and misses smaller faces."""

    def __init__(self, min_face: int = 20):
        self._pnet, self._rnet, self._onet = compiled_networks()
        self.min_face = max(int(min_face), PNET_CELL)

    def pyramid(self, height: int, width: int) -> list[float]:
        """The scales searched: the largest maps `min_face` to 12 px, each next one 0.709 of it,
        down to the one where the whole image is 12 px."""
        scales, scale = [], PNET_CELL / self.min_face
        while min(height, width) * scale >= PNET_CELL:
            scales.append(scale)
            scale *= PYRAMID_STEP
        return scales

    def proposals(self, image: np.ndarray) -> np.ndarray:
        """PNet's candidate boxes (x_min, y_min, x_max, y_max, score), squared."""
        height, width = image.shape[:2]
        found = []
        for scale in self.pyramid(height, width):
            size = (max(round(width * scale), 1), max(round(height * scale), 1))
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            offsets, scores = (output.numpy()[0] for output in self._pnet(level[None]))
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

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in an RGB uint8 image: boxes (N, 5: corners and score, best first) and their
        landmarks (N, 5, 2: left eye, right eye, nose, mouth left, mouth right, in pixels;
        left and right as seen in the image)."""
        normalised = (image.astype(np.float32) - 127.5) / 128
        boxes = self.proposals(normalised)
        if len(boxes):
            offsets, scores = (out.numpy() for out in self._rnet(normalised[None], boxes[:, :4]))
            keep = scores[:, 1] > THRESHOLDS[1]
            boxes = np.column_stack([refined(boxes[keep, :4], offsets[keep]), scores[keep, 1]])
            boxes = boxes[non_max_suppression(boxes[:, :4], boxes[:, 4], 0.7)]
            boxes[:, :4] = squared(boxes[:, :4])
        if not len(boxes):
            return np.empty((0, 5), np.float32), np.empty((0, 5, 2), np.float32)
        offsets, points, scores = (
            out.numpy() for out in self._onet(normalised[None], boxes[:, :4])
        )
        sizes = boxes[:, 2:4] - boxes[:, 0:2]
        landmarks = (
            np.stack([points[:, :5], points[:, 5:]], axis=2) * sizes[:, None] + boxes[:, None, :2]
        )
        keep = scores[:, 1] > THRESHOLDS[2]
        boxes = np.column_stack([refined(boxes[keep, :4], offsets[keep]), scores[keep, 1]])
        landmarks = landmarks[keep]
        kept = non_max_suppression(boxes[:, :4], boxes[:, 4], 0.7, over_smaller=True)
        return boxes[kept], landmarks[kept]
