"""A model trained on real RAVDESS speech that `attsf serve` can take: audio-only cache from
the raw files, a short training, the model card, and predictions on held-out actors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED, run_cli

AUDIO = SHARED / "ravdess_audio16k"
ACTORS = ["01", "02", "03", "04", "05", "06", "07", "08"]

pytestmark = pytest.mark.skipif(not AUDIO.is_dir(), reason=f"RAVDESS speech audio not found at {AUDIO}")


def test_real_audio_model_serves_and_beats_chance(tmp_path):
    from fastapi.testclient import TestClient

    from attsf.predict import EmotionRecognizer
    from attsf.serve import create_app

    root = tmp_path / "ravdess"
    root.mkdir()
    for actor in ACTORS:  # eight actors of the raw set, as a user's download is laid out
        (root / f"Actor_{actor}").mkdir()
        for f in (AUDIO / f"Actor_{actor}").glob("*.flac"):
            (root / f"Actor_{actor}" / f.name).symlink_to(f)
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [{"train": ACTORS[:6], "val": [ACTORS[6]], "test": [ACTORS[7]]}]}))
    cache = tmp_path / "cache"
    run_cli("preprocess", "ravdess", "--root", str(root), "--audio-only", "--out", str(cache), "--workers", "2",
            "--quiet")
    run = tmp_path / "run"
    run_cli("train", "ravdess_audio_only", f"data.cache={cache}", f"data.folds={folds}", "data.normalize=speaker_train",
            "train.max_epochs=3", "train.patience=3", "train.progress=false", "--out", str(run))
    measured = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]

    rec = EmotionRecognizer.from_pretrained(run)
    health = TestClient(create_app(rec)).get("/health").json()
    card = health["model"]
    assert health["modalities"] == ["audio"] and card["warning"] is None and card["dataset"] == "ravdess"
    assert card["test_accuracy"] == round(100 * measured, 2) and card["chance"] == 12.5
    held_out = sorted((AUDIO / f"Actor_{ACTORS[7]}").glob("*.flac"))
    results = rec.predict_many(held_out)
    truth = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
             "07": "disgust", "08": "surprised"}
    right = sum(r.label == truth[r.path.rsplit("/", 1)[-1].split("-")[2]] for r in results)
    assert len(results) == 60 and all(r.error is None for r in results)
    assert min(r.speech_seconds for r in results) > 1.0  # every RAVDESS sentence holds over a second of speech
    rng = np.random.default_rng(0)
    quiet = {"silence": np.zeros(48000), "noise": rng.normal(0, 0.3, 48000), "click": rng.normal(0, 0.3, 1600)}
    for name, wave in quiet.items():
        sf.write(tmp_path / f"{name}.wav", wave.astype(np.float32), 16000)
        r = rec.predict(tmp_path / f"{name}.wav")  # a model trained on real speech answers nothing to these
        assert r.label is None and r.note.startswith("no speech detected"), (name, r.label, r.note)
    assert right / 60 > 0.25, f"{right}/60 right on a held-out actor (chance 12.5 %)"
