"""Frame-to-frame face tracking by box overlap, and smoothing of each track's predictions.

Averaging the expected age and P(male) over a track's last frames is the same as averaging the
age distributions and decoding the mean, so labels stop flickering without storing histograms.
"""

import collections
import dataclasses

import numpy as np

from age_gender.faces.crops import iou
from age_gender.schema import Prediction


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
            candidates = sorted(unmatched)
            overlaps = iou(box, [self.tracks[i].box for i in candidates])
            best = candidates[int(overlaps.argmax())] if candidates else None
            if best is not None and overlaps.max() >= self.min_overlap:
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
