"""Frame-to-frame face tracking by box overlap, and smoothing of each track's predictions.

Averaging the expected age and P(male) over a track's last frames is the same as averaging the
age distributions and decoding the mean, so labels stop flickering without storing histograms.
"""

import collections
import dataclasses

import numpy as np

from age_gender.estimators.base import Prediction


def overlap(first: tuple, second: tuple) -> float:
    """Intersection over union of two (x_min, y_min, x_max, y_max) boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (
        second[3] - second[1]
    )
    return inter / (area - inter)


@dataclasses.dataclass
class Track:
    box: tuple
    history: collections.deque
    missed: int = 0


class FaceTracker:
    """Matches each frame's boxes to the previous ones and smooths predictions over `window`."""

    def __init__(self, window: int = 8, min_overlap: float = 0.3, max_missed: int = 5):
        self.window = window
        self.min_overlap = min_overlap
        self.max_missed = max_missed
        self.tracks: list[Track] = []

    def update(self, boxes: list[tuple], predictions: list[Prediction]) -> list[Prediction]:
        """Smoothed predictions for this frame's faces, in the order given."""
        unmatched = set(range(len(self.tracks)))
        smoothed = []
        for box, prediction in zip(boxes, predictions, strict=True):
            best = max(unmatched, key=lambda i: overlap(self.tracks[i].box, box), default=None)
            if best is not None and overlap(self.tracks[best].box, box) >= self.min_overlap:
                track = self.tracks[best]
                unmatched.discard(best)
                track.box, track.missed = box, 0
            else:
                track = Track(box, collections.deque(maxlen=self.window))
                self.tracks.append(track)
            track.history.append(prediction)
            history = np.array([dataclasses.astuple(past) for past in track.history])
            smoothed.append(Prediction(*map(float, history.mean(axis=0))))
        for index in unmatched:
            self.tracks[index].missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        return smoothed
