"""Face crops as in the paper (§IV-A): MTCNN (facenet-pytorch) on a downscaled copy of the sampled
frames; the crop is cut from the full-resolution frame, squared with a margin and resized
to 224x224. A frame without a face takes the box of the nearest frame that has one; a clip
without any face is an error (or, if allowed, centre crops). Training-time augmentation
never happens here.

Key frames: MTCNN first runs on every ``detect_stride``-th frame (and the last). The frames
between two key frames take the linearly interpolated box where the face has hardly moved
(the two boxes overlap by at least ``track_iou``) or moves steadily (each key box lies on
the straight path between its neighbours', within ``track_iou``); elsewhere (a jump, a cut,
a missing face) those frames are detected too. A talking head costs a third of the
detections this way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from attsf.errors import AttsfError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class FaceConfig:
    size: int = 224  # output crop side
    detect_height: int = 288  # MTCNN runs on frames scaled to this height
    # smallest face MTCNN looks for, in pixels of the detection copy: 40 of 288 is 14 % of the
    # frame height (RAVDESS faces fill ~45 %, IEMOCAP's ~20 %); lower it for smaller faces
    min_face: int = 40
    pyramid_factor: float = 0.6  # scale step of MTCNN's image pyramid (facenet-pytorch default 0.709)
    threshold: float = 0.9  # minimum face probability
    margin: float = 0.2  # the square crop's side is (1 + margin) x the box's longer side
    detect_stride: int = 4  # detect on every n-th frame first (1: on every frame)
    track_iou: float = 0.7  # key-frame boxes overlapping this much are interpolated between
    require_face: bool = True  # a clip with no face at all fails (False: centre crops)


@dataclass
class FaceCrops:
    frames: np.ndarray  # (T, size, size, 3) uint8
    boxes: list[Box]  # the square crop box per frame, full-resolution pixels
    detected: list[bool]  # False where the frame fell back
    fallback_frames: int
    times: list[float] = field(default_factory=list)  # seconds from the clip start, per frame

    def rounded_boxes(self) -> list[list[float]]:
        return [[round(v, 1) for v in box] for box in self.boxes]


class FaceCropper:
    """One MTCNN, reused for every clip of a process."""

    def __init__(self, cfg: FaceConfig = FaceConfig(), device: str = "cpu") -> None:
        from facenet_pytorch import MTCNN

        self.cfg = cfg
        self.mtcnn = MTCNN(min_face_size=cfg.min_face, factor=cfg.pyramid_factor, keep_all=True, device=device)

    def detect(self, small: list[np.ndarray]) -> list[Box | None]:
        """The largest face per frame (detection-copy pixels) or None, from key frames."""
        n, step = len(small), max(1, self.cfg.detect_stride)
        keys = sorted(set(range(0, n, step)) | {n - 1})
        found: list[Box | None] = [None] * n
        for i, box in zip(keys, self._largest([small[k] for k in keys])):
            found[i] = box
        smooth = [self._on_track(found, keys, j) for j in range(len(keys))]
        todo = []
        for j, (a, b) in enumerate(zip(keys, keys[1:])):
            box_a, box_b = found[a], found[b]
            still = box_a is not None and box_b is not None and iou(box_a, box_b) >= self.cfg.track_iou
            if still or (smooth[j] and smooth[j + 1]):
                for i in range(a + 1, b):
                    found[i] = _lerp(box_a, box_b, (i - a) / (b - a))
            else:
                todo.extend(range(a + 1, b))
        if todo:
            for i, box in zip(todo, self._largest([small[i] for i in todo])):
                found[i] = box
        return found

    def _on_track(self, found: list[Box | None], keys: list[int], j: int) -> bool:
        """Whether key frame j's box lies on the straight path between its neighbours' (an
        end key counts as on track when its one neighbour is; a missing face never is)."""
        box = found[keys[j]]
        if box is None:
            return False
        if j == 0 or j == len(keys) - 1:
            return len(keys) > 2 and self._on_track(found, keys, 1 if j == 0 else j - 1)
        before, after = found[keys[j - 1]], found[keys[j + 1]]
        if before is None or after is None:
            return False
        w = (keys[j] - keys[j - 1]) / (keys[j + 1] - keys[j - 1])
        return iou(_lerp(before, after, w), box) >= self.cfg.track_iou

    def _largest(self, images: list[np.ndarray]) -> list[Box | None]:
        """MTCNN on a batch of equal-sized frames: the largest confident face of each."""
        boxes, probs = self.mtcnn.detect(np.stack(images))
        out: list[Box | None] = []
        for b, p in zip(boxes, probs):
            if b is None:
                out.append(None)
                continue
            keep = [box for box, prob in zip(b, p) if prob is not None and prob >= self.cfg.threshold]
            if not keep:
                out.append(None)
                continue
            x0, y0, x1, y1 = max(keep, key=lambda q: (q[2] - q[0]) * (q[3] - q[1]))
            out.append((float(x0), float(y0), float(x1), float(y1)))
        return out

    def __call__(self, full: list[np.ndarray], small: list[np.ndarray], scale: float, source: str = "") -> FaceCrops:
        found = self.detect(small)
        detected = [b is not None for b in found]
        if not any(detected) and self.cfg.require_face:
            raise AttsfError(f"{source}: no face found in any of the {len(full)} frames")
        height, width = full[0].shape[:2]
        boxes = []
        for i, box in enumerate(found):
            if box is None:
                box = _nearest(found, i)
            if box is None:
                boxes.append(centre_square(width, height))
            else:
                boxes.append(square_box(tuple(v * scale for v in box), self.cfg.margin, width, height))
        crops = np.stack([crop(frame, box, self.cfg.size) for frame, box in zip(full, boxes)])
        return FaceCrops(crops, boxes, detected, detected.count(False))


def _nearest(found: list[Box | None], i: int) -> Box | None:
    order = sorted(range(len(found)), key=lambda j: (abs(j - i), j))
    return next((found[j] for j in order if found[j] is not None), None)


def _lerp(a: Box, b: Box, w: float) -> Box:
    return tuple((1 - w) * u + w * v for u, v in zip(a, b))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def square_box(box: Box, margin: float, width: int, height: int) -> Box:
    """A square around ``box`` enlarged by ``margin``, shifted (not cut) to stay inside the frame."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0) * (1 + margin), width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    return (left, top, left + side, top + side)


def centre_square(width: int, height: int) -> Box:
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def crop(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    x0, y0, x1, y1 = (round(v) for v in box)
    return np.asarray(Image.fromarray(frame[y0:y1, x0:x1]).resize((size, size), Image.BILINEAR))
