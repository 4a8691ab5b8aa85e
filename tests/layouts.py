"""Each dataset's folder layout in miniature, with real encoded media (see attsf.data.synthetic)."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import soundfile as sf

from attsf.data.synthetic import Actor, speech_like, write_media

SMALL = (480, 270)


def _voice(label: str, seed: int, seconds: float) -> np.ndarray:
    return speech_like(label if label in ("neutral", "happy", "sad", "angry") else "neutral", seed % 3,
                       np.random.default_rng(seed), seconds)


def small_clip(path: Path, label: str = "happy", seed: int = 0, seconds: float = 2.0, face: bool = True,
               audio: bool = True) -> Path:
    actors = [Actor(x=30 + 20 * (seed % 5), y=-20, size=300, vx=40)] if face else []
    return write_media(path, actors=actors, seconds=seconds, size=SMALL, fps=30,
                       audio=_voice(label, seed, seconds) if audio else None)


def ravdess(root: Path) -> dict[str, tuple[str, str]]:
    """Actor_01, Actor_02 with three good clips, a song clip, and four bad files.
    Returns the expected {clip id: (label, actor)}."""
    good = {"01-01-03-01-01-01-01": ("happy", "01"), "01-01-05-01-01-01-01": ("angry", "01"),
            "01-01-01-01-01-01-02": ("neutral", "02")}
    for i, (stem, (label, actor)) in enumerate(good.items()):
        small_clip(root / f"Actor_{actor}" / f"{stem}.mp4", label, seed=i)
    small_clip(root / "Actor_02" / "01-02-03-01-01-01-02.mp4", "happy", seed=5)  # song: not used
    small_clip(root / "Actor_02" / "01-01-09-01-01-01-02.mp4", seed=6)  # emotion 09 does not exist
    whole = (root / "Actor_01" / "01-01-03-01-01-01-01.mp4").read_bytes()
    (root / "Actor_02" / "01-01-04-01-01-01-02.mp4").write_bytes(whole[: len(whole) // 2])  # truncated
    small_clip(root / "Actor_01" / "01-01-06-01-01-01-01.mp4", audio=False, seed=7)  # no audio stream
    small_clip(root / "Actor_01" / "01-01-07-01-01-01-01.mp4", face=False, seed=8)  # nobody in the picture
    sf.write(root / "Actor_01" / "03-01-03-01-01-01-01.wav", _voice("happy", 9, 2.5), 48000)
    sf.write(root / "Actor_02" / "03-01-04-02-02-02-02.flac", _voice("sad", 10, 2.5), 16000)
    return good


def iemocap(root: Path) -> dict[str, tuple[str, str, str, str]]:
    """Session1 (Ses01F: female actor on the left) and Session5 (Ses05M: male on the left).
    Returns {utterance: (label, speaker, split, side)}."""
    expected = {}
    dialogs = {
        "Session1/Ses01F_impro01": [(0.5, 2.5, "F000", "neu", "Excuse me."), (2.6, 4.8, "M000", "exc", "Yes, great!"),
                                    (4.9, 5.9, "F001", "fru", "Hmm.")],
        "Session5/Ses05M_script01": [(0.4, 3.0, "M000", "sad", "I miss her."), (3.1, 5.5, "F000", "ang", "Stop it!")],
    }
    names = {"neu": "neutral", "exc": "happy", "sad": "sad", "ang": "angry"}
    for n, (key, utts) in enumerate(dialogs.items()):
        session, dialog = key.split("/")
        base = root / session
        write_media(base / "dialog" / "avi" / "DivX" / f"{dialog}.avi",
                    actors=[Actor(-30, 40, 260), Actor(250, 30, 260, mirror=True)],
                    seconds=6.0, size=(480, 320), fps=30, vcodec="mpeg4")
        ev, tr = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for k, (s, e, who, code, text) in enumerate(utts):
            utt = f"{dialog}_{who}"
            ev += [f"[{s:.4f} - {e:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]", "C-E1:\tNeutral;\t()", ""]
            tr.append(f"{utt} [{s:08.4f}-{e:08.4f}]: {text}")
            wav = base / "sentences" / "wav" / dialog / f"{utt}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, _voice(names.get(code, "neutral"), 10 * n + k, e - s), 16000)
            if code in names:
                left = who[0] == dialog[5]
                expected[utt] = (names[code], f"{dialog[:5]}{who[0]}", "test" if session == "Session5" else "train",
                                 "left" if left else "right")
        for sub, lines in (("EmoEvaluation", ev), ("transcriptions", tr)):
            (base / "dialog" / sub).mkdir(parents=True, exist_ok=True)
            (base / "dialog" / sub / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return expected


def mosi_raw(root: Path) -> dict[str, tuple[str, float, str, str]]:
    rows = [("vidA", "1", "it was really good", 1.8, "train"), ("vidA", "2", "not sure about it", -0.4, "valid"),
            ("vidB", "1", "terrible, awful film", -2.6, "test")]
    expected = {}
    root.mkdir(parents=True, exist_ok=True)
    with (root / "label.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"])
        for i, (video, clip, text, score, mode) in enumerate(rows):
            w.writerow([video, clip, text, score, score, score, score, "x", mode])
            small_clip(root / "Raw" / video / f"{clip}.mp4", seed=20 + i)
            label = str(int(np.clip(np.round(score), -3, 3)))
            expected[f"{video}_{clip}"] = (label, score, video, {"valid": "val"}.get(mode, mode))
    return expected


def mosi_pickle(path: Path, n: tuple[int, int, int] = (6, 2, 2)) -> None:
    """A feature pickle in the toolkits' format (audio 5-d, vision 20-d, text 768-d, 50 steps)."""
    rng = np.random.default_rng(0)
    data = {}
    for split, count in zip(("train", "valid", "test"), n):
        data[split] = {
            "id": [f"vid{split}{i // 2}$_${i}" for i in range(count)],
            "raw_text": [f"sentence {i}" for i in range(count)],
            "audio": rng.normal(size=(count, 50, 5)).astype(np.float32),
            "vision": rng.normal(size=(count, 50, 20)).astype(np.float32),
            "text": rng.normal(size=(count, 50, 768)).astype(np.float32),
            "regression_labels": rng.uniform(-3, 3, count).astype(np.float32),
            "classification_labels": np.zeros(count, dtype=np.float32),
        }
    with path.open("wb") as fh:
        pickle.dump(data, fh, protocol=4)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def evil_pickle(path: Path, marker: Path) -> None:
    with path.open("wb") as fh:
        pickle.dump({"train": {"id": [_Evil(marker)]}}, fh)
