"""Preprocessing throughput: clips per second for 1280x720 30 fps 4 s H.264 + AAC clips.

attsf: PyAV decodes up to the last needed frame and converts only the 15 sampled ones,
MTCNN runs once per clip on a 288p copy of the 15 frames, crops come from the full
frames; worker processes.
Usual way (as in the public AVER preprocessing scripts): OpenCV decodes and converts
every frame, then MTCNN runs on each of the 15 selected full-resolution frames, one clip
at a time. Audio (PyAV + MFCC) is the same in both. Both are measured in the same run.

    python bench/preprocess.py [--clips 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attsf.data.clips import ClipJob, ClipSource, PrepSettings
from attsf.data.faces import FaceConfig, centre_square, crop, square_box
from attsf.data.media import frame_times
from attsf.data.preprocess import run_jobs
from attsf.data.synthetic import talking_clip


def usual_way(path: Path, mtcnn, settings: PrepSettings) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    times = frame_times(0.0, len(frames) / fps, settings.n_frames, settings.span)
    picked = [cv2.cvtColor(frames[min(round(t * fps), len(frames) - 1)], cv2.COLOR_BGR2RGB) for t in times]
    crops = []
    for frame in picked:
        boxes, _ = mtcnn.detect(frame)
        h, w = frame.shape[:2]
        box = square_box(tuple(boxes[0]), 0.2, w, h) if boxes is not None else centre_square(w, h)
        crops.append(crop(frame, box, 224))
    audio = ClipJob(ClipSource(media=path, clip_id=path.stem, label="x"), settings).audio()
    return audio, np.stack(crops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = []
        for i in range(args.clips):
            path = root / "media" / f"clip{i:02d}.mp4"
            talking_clip(path, label=["neutral", "happy", "sad", "angry"][i % 4], speaker=i, seed=i)
            paths.append(path)
        settings = PrepSettings(faces=FaceConfig())
        jobs = [ClipJob(ClipSource(media=p, clip_id=p.stem, label="x"), settings) for p in paths]

        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(keep_all=False, device="cpu")
        usual_way(paths[0], mtcnn, settings)  # warm-up
        t0 = time.perf_counter()
        for path in paths:
            usual_way(path, mtcnn, settings)
        usual = time.perf_counter() - t0

        t0 = time.perf_counter()
        summary = run_jobs(jobs, root / "cache", dataset="bench", labels=["x"], settings={}, workers=args.workers,
                           progress=False)
        ours = time.perf_counter() - t0
        assert summary.done == len(paths), summary.lines()

        one = PrepSettings(faces=FaceConfig())
        t0 = time.perf_counter()
        for job in jobs:
            ClipJob(job.source, one)()
        ours_serial = time.perf_counter() - t0

    n = len(paths)
    print(f"{n} clips, 1280x720 30 fps, 4 s, H.264 + AAC; torch threads 2")
    print(f"usual way (OpenCV all frames, MTCNN per full-res frame, 1 clip at a time): {usual / n:6.2f} s/clip  "
          f"{n / usual:5.2f} clips/s")
    print(f"attsf, 1 process (warm):                                              {ours_serial / n:6.2f} s/clip  "
          f"{n / ours_serial:5.2f} clips/s  ({usual / ours_serial:.1f}x)")
    print(f"attsf preprocess, {args.workers} workers (incl. worker start-up):                {ours / n:6.2f} s/clip  "
          f"{n / ours:5.2f} clips/s  ({usual / ours:.1f}x)")


if __name__ == "__main__":
    main()
