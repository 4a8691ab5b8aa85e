"""``attsf demo``: the whole pipeline on a small sample set made on the spot.

Four classes, six speakers. Audio: speech-like WAV files (a harmonic voice with syllable
envelopes; each class has its own pitch contour, tempo and loudness, each speaker its own
pitch), decoded and turned into MFCCs by the real audio path. Video: 15 face frames per
clip from the astronaut photo that scikit-image ships, each class moving the face in its
own way. A small ATTSF-Net (EfficientFace front-end on 48x48 crops) trains on four
speakers, validates on one and is tested on the last. This shows that the pipeline runs
end to end; it is not an accuracy result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from attsf.data.audio import AudioConfig, mfcc_from_file
from attsf.data.cache import ClipRecord
from attsf.data.preprocess import run_jobs
from attsf.data.synthetic import speech_like

CLASSES = ["neutral", "happy", "sad", "angry"]
SPEAKERS = ["01", "02", "03", "04", "05", "06"]
CLIPS_PER_CLASS = 4
FRAME_SIZE = 48
SR = 16000
FACE_BOX = (30, 135, 210, 315)  # top, left, bottom, right of the face in skimage's astronaut


def face_frames(label: str, rng: np.random.Generator, n: int = 15) -> np.ndarray:
    """(n, FRAME_SIZE, FRAME_SIZE, 3) uint8 face crops with class-specific movement."""
    from skimage import data
    from skimage.transform import resize

    image = data.astronaut()
    top, left, bottom, right = FACE_BOX
    frames = []
    for i in range(n):
        s = i / (n - 1)
        dy, dx, zoom, gain = {
            "neutral": (0, 0, 0, 1.0),
            "happy": (0, 0, 25 * s, 1.1),
            "sad": (30 * s, 0, 0, 0.7),
            "angry": (0, 20 * np.sin(6 * np.pi * s), 0, 1.0),
        }[label]
        dy, dx = int(dy + rng.integers(-3, 4)), int(dx + rng.integers(-3, 4))
        z = int(zoom)
        crop = image[top + dy + z : bottom + dy - z, left + dx + z : right + dx - z].astype(np.float32)
        if label == "angry":
            crop[..., 0] = crop[..., 0] * 1.2
        crop = np.clip(crop * gain + rng.normal(0, 4, crop.shape), 0, 255)
        frames.append(resize(crop, (FRAME_SIZE, FRAME_SIZE), preserve_range=True, anti_aliasing=True))
    return np.stack(frames).astype(np.uint8)


@dataclass(frozen=True)
class DemoJob:
    path: Path
    label: str
    speaker: str
    seed: int

    @property
    def clip_id(self) -> str:
        return self.path.stem

    def __call__(self) -> tuple[ClipRecord, dict[str, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        record = ClipRecord(id=self.clip_id, label=self.label, speaker=self.speaker, source=str(self.path))
        return record, {"audio": mfcc_from_file(self.path), "visual": face_frames(self.label, rng)}


def make_media(root: Path) -> list[DemoJob]:
    """Write the demo WAV files (once) and return one preprocessing job per clip."""
    jobs = []
    for s, speaker in enumerate(SPEAKERS):
        for c, label in enumerate(CLASSES):
            for k in range(CLIPS_PER_CLASS):
                seed = 1000 * s + 100 * c + k
                path = root / f"speaker{speaker}" / f"{speaker}-{label}-{k}.wav"
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, speech_like(label, s, np.random.default_rng(seed)), SR)
                jobs.append(DemoJob(path, label, speaker, seed))
    return jobs


def write_folds(path: Path) -> None:
    folds = [{"train": SPEAKERS[:4], "val": [SPEAKERS[4]], "test": [SPEAKERS[5]]}]
    path.write_text(json.dumps({"name": "demo", "description": "demo speakers 01-04 / 05 / 06", "folds": folds}))


def run_demo(out: Path, epochs: int = 10) -> dict:
    from attsf.config import load_config, resolve_config_path
    from attsf.train import CONFIG_FILE, train

    out.mkdir(parents=True, exist_ok=True)
    print("attsf demo: this demonstrates the pipeline on generated clips; it is not an accuracy result.")
    jobs = make_media(out / "media")
    settings = {"audio": vars(AudioConfig()), "visual": {"kind": "frames", "size": FRAME_SIZE, "source": "demo"}}
    summary = run_jobs(jobs, out / "cache", dataset="demo", labels=CLASSES, settings=settings, progress=False)
    print(f"[1/3] cache: {summary.lines()[0]} -> {out / 'cache'}")
    write_folds(out / "folds.json")
    run_dir = out / "run"
    cfg = load_config(resolve_config_path("demo"), [f"data.cache={out / 'cache'}", f"data.folds={out / 'folds.json'}",
                                                    f"train.max_epochs={epochs}"])
    print(f"[2/3] training a small ATTSF-Net ({epochs} epochs) -> {run_dir}")
    metrics = train(cfg, run_dir, resume=(run_dir / CONFIG_FILE).is_file())
    test = metrics["test"]
    print(f"[3/3] test speaker {SPEAKERS[-1]}: accuracy {test['accuracy'] * 100:.1f} % over {test['n']} clips "
          f"(chance {100 / len(CLASSES):.0f} %); audio head {test.get('accuracy_a_avam', 0) * 100:.1f} %, "
          f"visual head {test.get('accuracy_v_avam', 0) * 100:.1f} %")
    print(f"run directory: {run_dir}  (try: attsf evaluate {run_dir})")
    return metrics
