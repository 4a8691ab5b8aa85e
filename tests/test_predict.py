"""Predictions on generated clips from the demo run: Python API, CLI, JSON API with bad
inputs, and the web page in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from attsf.data.synthetic import speech_like, talking_clip
from attsf.errors import AttsfError
from tests import layouts
from tests.conftest import SHARED, cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    import numpy as np

    root = tmp_path_factory.mktemp("clips")
    out = {"video": root / "talk.mp4", "small": root / "small.mp4", "audio": root / "voice.wav",
           "broken": root / "broken.mp4"}
    talking_clip(out["video"], label="happy", seconds=4.0)
    layouts.small_clip(out["small"], "sad", seed=2)
    out["noface"] = root.parent / f"{root.name}-noface" / "nobody.mp4"  # outside the folder the CLI test lists
    out["noface"].parent.mkdir()
    layouts.small_clip(out["noface"], "sad", seed=8, face=False)
    sf.write(out["audio"], speech_like("angry", 1, np.random.default_rng(0), 3.0), 16000)
    data = out["small"].read_bytes()
    out["broken"].write_bytes(data[: len(data) // 3])
    return out


@pytest.fixture(scope="module")
def recognizer(demo_dir):
    from attsf.predict import EmotionRecognizer

    return EmotionRecognizer.from_pretrained(demo_dir / "run")


def test_predict_python_api(recognizer, clips):
    labels = recognizer.labels
    r = recognizer.predict(clips["video"])
    assert r.label in labels and r.modalities == ["audio", "video"]
    for probs in (r.probabilities, r.audio_probabilities, r.visual_probabilities):
        assert set(probs) == set(labels) and abs(sum(probs.values()) - 1) < 1e-4
    assert r.faces.shape == (15, 48, 48, 3) and len(r.face_boxes) == 15 and r.fallback_frames == 0
    assert {"decode_audio", "mfcc", "decode_video", "faces", "forward", "total"} <= set(r.timings)
    json.dumps(r.to_dict())  # serialisable

    audio_only = recognizer.predict(clips["audio"])
    assert audio_only.modalities == ["audio"] and audio_only.visual_probabilities is None
    assert audio_only.probabilities == audio_only.audio_probabilities

    many = recognizer.predict_many([clips["video"], clips["broken"], clips["small"]])
    assert [m.path for m in many] == [str(clips[k]) for k in ("video", "broken", "small")]
    assert many[1].error and "not a readable media file" in many[1].error and many[0].error is None
    assert many[0].probabilities == pytest.approx(r.probabilities, abs=1e-4)  # batching changes nothing


def test_predict_applies_a_speaker_normalised_runs_statistics(recognizer, clips):
    import torch

    from attsf.data import normalize
    from attsf.predict import EmotionRecognizer

    raw = recognizer.prepare(clips["audio"])[1]["audio"]
    mean, std = raw.mean(1), raw.std(1)
    prep = dict(recognizer.preprocessing, normalization={"kind": "speaker", "fallback": normalize.to_json(
        {"audio": (mean, std)})})
    normed = EmotionRecognizer(recognizer.cfg, recognizer.labels, recognizer.model, prep,
                               card=recognizer.card).prepare(clips["audio"])[1]  # the demo's card: no speech check
    torch.testing.assert_close(normed["audio"], (raw - mean[:, None]) / std[:, None])


def test_same_speaker_clips_are_normalised_with_their_own_statistics(recognizer, demo_dir, clips, monkeypatch):
    """Enrolment (``--same-speaker``): a speaker-normalised model takes the statistics of the
    given clips of one person, as training took each speaker's own; a model trained without
    speaker normalisation refuses, in one line."""
    import torch

    from attsf.data import normalize
    from attsf.predict import EmotionRecognizer

    paths = [clips["audio"], clips["video"]]
    raw = [recognizer.prepare(p)[1]["audio"] for p in paths]
    pooled = {"audio": (torch.zeros(raw[0].shape[0]), torch.ones(raw[0].shape[0]))}
    prep = dict(recognizer.preprocessing, normalization={"kind": "speaker", "fallback": normalize.to_json(pooled)})
    rec = EmotionRecognizer(recognizer.cfg, recognizer.labels, recognizer.model, prep, card=recognizer.card)
    speaker = rec.speaker_statistics(paths)
    mean, std = normalize.clip_stats({"audio": a} for a in raw)["audio"]
    assert speaker.clips == 2
    torch.testing.assert_close(rec.prepare(paths[0], speaker)[1]["audio"], (raw[0] - mean[:, None]) / std[:, None])
    torch.testing.assert_close(rec.prepare(paths[0])[1]["audio"], raw[0])  # a stranger: the pooled statistics
    shrunk = EmotionRecognizer(recognizer.cfg, recognizer.labels, recognizer.model, card=recognizer.card,
                               preprocessing=dict(prep, normalization=dict(prep["normalization"],
                                                                           prior_clips={"audio": [2.0] * len(mean)})))
    w = 2 / (2 + 2.0)  # two clips against a prior of two: halfway to the pooled (0, 1)
    torch.testing.assert_close(shrunk.prepare(paths[0], speaker)[1]["audio"],
                               (raw[0] - w * mean[:, None]) / (w * std[:, None] ** 2 + 1 - w).sqrt())
    import attsf.predict
    from attsf.data.media import read_audio

    decoded = []  # each clip is decoded once: the statistics come from the inputs predict uses
    monkeypatch.setattr(attsf.predict, "read_audio", lambda path, *a, **k: decoded.append(path) or read_audio(path, *a, **k))
    enrolled = rec.predict_many(paths, same_speaker=True)
    assert sorted(map(str, decoded)) == sorted(map(str, paths))
    alone = rec.predict_many(paths)
    assert [r.speaker_clips for r in enrolled] == [2, 2] and [r.speaker_clips for r in alone] == [None, None]
    assert enrolled[0].probabilities != alone[0].probabilities
    torch.testing.assert_close(torch.tensor(list(enrolled[0].probabilities.values())),
                               torch.tensor(list(rec.predict(paths[0], speaker).probabilities.values())))
    with pytest.raises(AttsfError, match="not trained with speaker normalisation"):
        recognizer.predict_many(paths, same_speaker=True)
    bad = cli("predict", *map(str, paths), "--run", str(demo_dir / "run"), "--same-speaker", check=False)
    assert bad.returncode == 2 and "not trained with speaker normalisation" in bad.stderr and "Traceback" not in bad.stderr


def test_api_enrols_a_speaker_and_predicts_with_the_stored_statistics(recognizer, clips):
    """POST /enrol answers a speaker's statistics (the server keeps nothing); POST /predict
    with them answers as the Python API does for that speaker; bad statistics are refused."""
    import torch
    from fastapi.testclient import TestClient

    from attsf.data import normalize
    from attsf.predict import EmotionRecognizer
    from attsf.serve import create_app

    n = recognizer.prepare(clips["audio"])[1]["audio"].shape[0]
    pooled = {"audio": (torch.zeros(n), torch.ones(n))}
    prep = dict(recognizer.preprocessing, normalization={"kind": "speaker", "fallback": normalize.to_json(pooled)})
    rec = EmotionRecognizer(recognizer.cfg, recognizer.labels, recognizer.model, prep, card=recognizer.card)
    client = TestClient(create_app(rec))
    paths = [clips["audio"], clips["video"]]
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    enrolled = client.post("/enrol", files=files)
    assert enrolled.status_code == 200 and enrolled.json()["clips"] == 2
    stored = json.dumps(enrolled.json())
    answer = client.post("/predict", files={"file": ("a.wav", paths[0].read_bytes())}, data={"speaker": stored}).json()
    expect = rec.predict(paths[0], rec.speaker_statistics(paths)).to_json()["probabilities"]
    assert answer["speaker_clips"] == 2 and answer["probabilities"] == pytest.approx(expect, abs=0.02)
    zero = json.dumps(dict(enrolled.json(), clips=0))  # the clip count weighs the statistics: at least one
    for bad, words in (("{", "not JSON"), ('{"clips": 1, "statistics": {"audio": {"mean": [0], "std": [1]}}}',
                                           "does not match this model's input"), (zero, "clips: expected a whole number")):
        resp = client.post("/predict", files={"file": ("a.wav", paths[0].read_bytes())}, data={"speaker": bad})
        assert resp.status_code == 422 and words in resp.json()["detail"]
    plain = TestClient(create_app(recognizer)).post("/enrol", files=files)
    assert plain.status_code == 422 and "not trained with speaker normalisation" in plain.json()["detail"]


def test_export_writes_weights_with_a_card_that_predict_reads(demo_dir, clips, tmp_path):
    """``attsf export``: the run's weights and sidecar with the card's text and the held-out
    figures it measured; ``--run`` takes the file, and the card travels to --json."""
    about = tmp_path / "about.yaml"
    about.write_text("title: Demo emotions\nintended_use: trying attsf out\nlimitations: [generated clips only]\n")
    out = cli("export", str(demo_dir / "run"), "--name", "demo-model", "--out", str(tmp_path), "--about", str(about))
    assert "demo-model.safetensors" in out.stdout and "new-speaker" in out.stdout
    side = json.loads((tmp_path / "demo-model.json").read_text())
    test = json.loads((demo_dir / "run" / "metrics.json").read_text())["test"]
    assert side["card"]["evaluation"]["new_speaker"]["accuracy"] == round(100 * test["accuracy"], 2)
    weights = (demo_dir / "run/checkpoints/model.safetensors").read_bytes()
    assert (tmp_path / "demo-model.safetensors").read_bytes() == weights
    doc = json.loads(cli("predict", str(clips["video"]), "--run", str(tmp_path / "demo-model.safetensors"),
                         "--json").stdout)
    card = doc["model"]
    assert card["name"] == "Demo emotions" and card["config"] == "demo" and card["limitations"] == ["generated clips only"]
    assert doc["clips"][0]["label"] and card["warning"]  # still the demo's warning
    bad = cli("export", str(tmp_path), "--name", "x", check=False)
    assert bad.returncode == 2 and "not a finished run" in bad.stderr


def test_predict_cli(demo_dir, clips):
    run = str(demo_dir / "run")
    out = cli("predict", str(clips["video"]), "--run", run, "--json").stdout
    doc = json.loads(out)
    rows, card = doc["clips"], doc["model"]  # one model card: what the model is and what its numbers mean
    assert rows[0]["label"] and rows[0]["modalities"] == ["audio", "video"]
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(100, abs=0.05)  # %, as the card's accuracies
    assert all(isinstance(v, int) for v in rows[0]["timings_ms"].values()) and rows[0]["note"] is None
    assert card["dataset"] == "demo" and card["chance"] == 25.0 and card["modalities"] == ["audio", "video"]
    assert card["warning"] == "demo model trained on generated clips — its predictions on real media mean nothing"
    assert card["test_accuracy"] is not None and card["train_speakers"] == 4
    proc = cli("predict", str(clips["video"]), str(clips["broken"]), "--run", run, check=False)
    assert proc.returncode == 1 and "talk.mp4" in proc.stdout
    assert "trained on demo, " in proc.stderr and "chance 25.0 %" in proc.stderr
    assert "WARNING: demo model trained on generated clips" in proc.stderr
    assert "broken.mp4: not a readable media file" in proc.stderr and "Traceback" not in proc.stderr
    folder = cli("predict", str(clips["video"].parent), "--run", run, check=False)
    table = list(csv.DictReader(io.StringIO(folder.stdout)))
    assert {Path(r["path"]).name for r in table} == {"talk.mp4", "small.mp4", "voice.wav", "broken.mp4"}
    assert next(r for r in table if r["path"].endswith("broken.mp4"))["error"]
    assert rows[0]["face_detected"] == [True] * 15
    broken = next(r for r in json.loads(cli("predict", str(clips["broken"]), str(clips["video"]), "--run", run, "--json",
                                            check=False).stdout)["clips"] if r["error"])
    assert broken["label"] is None and broken["probabilities"] is None and broken["modalities"] == []


def test_no_face_is_answered_from_the_audio_and_no_clip_left_is_a_failure(recognizer, demo_dir, clips):
    """A video with no face in any frame is answered from its audio, and says so, by the
    Python API and the CLI; a run of clips none of which can be read exits 1, no table."""
    r = recognizer.predict(clips["noface"])
    assert r.label in recognizer.labels and r.modalities == ["audio"] and r.visual_probabilities is None
    assert r.note == "no face detected in any of the 15 sampled frames: answered from the audio alone"
    assert r.probabilities == r.audio_probabilities
    proc = cli("predict", str(clips["noface"]), str(clips["broken"]), "--run", str(demo_dir / "run"), check=False)
    assert proc.returncode == 1 and "nobody.mp4" in proc.stdout and "answered from the audio alone" in proc.stdout
    proc = cli("predict", str(clips["broken"]), "--run", str(demo_dir / "run"), check=False)
    assert proc.returncode == 1 and proc.stdout.strip() == ""
    assert "none of the 1 clip(s) could be recognised" in proc.stderr and "Traceback" not in proc.stderr


def test_no_speech_and_no_face_gets_no_label(recognizer, clips, tmp_path):
    """With the speech check on (a model trained on real speech has it; the demo's generated
    voices are not speech, so its model does not): silence, noise and a click get no label;
    a silent clip with a face is answered from the face."""
    assert recognizer.min_speech_seconds is None and recognizer.card["dataset"] == "demo"
    rng = np.random.default_rng(0)
    quiet = {"silence.wav": np.zeros(48000, np.float32), "noise.wav": rng.normal(0, 0.3, 48000).astype(np.float32),
             "click.wav": rng.normal(0, 0.3, 1600).astype(np.float32)}
    for name, wave in quiet.items():
        sf.write(tmp_path / name, wave, 16000)
    silent_face = layouts.small_clip(tmp_path / "silent_face.mp4", "sad", seed=3, audio=False)
    recognizer.min_speech_seconds = 0.5
    try:
        for name in quiet:
            r = recognizer.predict(tmp_path / name)
            assert r.label is None and r.probabilities is None and r.error is None, (name, r)
            assert r.speech_seconds == 0.0 and r.note == "no speech detected (0.0 s of voiced audio, 0.5 s needed)"
        r = recognizer.predict_many([tmp_path / "silence.wav", silent_face])
        assert r[0].label is None and r[1].label in recognizer.labels and r[1].modalities == ["video"]
        r = recognizer.predict(clips["noface"])  # the generated voice is not speech to the detector: nothing left
        assert r.label is None and r.note.startswith("no speech detected (") and "; no face detected in" in r.note
    finally:
        recognizer.min_speech_seconds = None


def test_api_rejects_bad_uploads(recognizer, demo_dir, clips, tmp_path):
    from fastapi.testclient import TestClient

    from attsf.serve import ServeLimits, create_app

    client = TestClient(create_app(recognizer, ServeLimits(max_bytes=2 * 2**20, max_seconds=3.0, max_pending=2)))
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["modalities"] == ["audio", "video"]
    assert health["model"]["warning"] and health["model"]["chance"] == 25.0
    assert "/predict" in client.get("/openapi.json").json()["paths"]

    def post(name: str, data: bytes):
        return client.post("/predict", files={"file": (name, data, "application/octet-stream")})

    ok = post("clip.bin", clips["small"].read_bytes())  # the type comes from the content, not the name
    assert ok.status_code == 200 and ok.json()["label"] in recognizer.labels
    nobody = post("nobody.mp4", clips["noface"].read_bytes()).json()  # no face: answered from the audio
    assert nobody["modalities"] == ["audio"] and "answered from the audio alone" in nobody["note"]
    cases = [
        ("notes.mp4", b"just some text, not a video\n" * 50, 415),
        ("empty.mp4", b"", 400),
        ("big.mp4", os.urandom(3 * 2**20), 413),
        ("broken.mp4", clips["broken"].read_bytes(), 415),
        ("long.mp4", clips["video"].read_bytes(), 413),  # 4 s > 3 s limit
        ("photo.mp4", _png(), 415),  # a real image, named like a video
        ("hidden.mkv", _unsized_mkv(tmp_path / "hidden.mkv", 20.0).read_bytes(), 413),  # no Duration element
    ]
    for name, data, status in cases:
        resp = post(name, data)
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        assert resp.json()["detail"] and "Traceback" not in resp.text
    # the same words as attsf predict for the same file (the page puts the file name in front, as the CLI does)
    said = cli("predict", str(clips["broken"]), "--run", str(demo_dir / "run"), check=False).stderr
    assert f"attsf: error: {clips['broken']}: {post('broken.mp4', clips['broken'].read_bytes()).json()['detail']}" in said
    with ThreadPoolExecutor(6) as pool:  # many at once: answered, some perhaps with 503, none failing
        codes = list(pool.map(lambda _: post("c.mp4", clips["small"].read_bytes()).status_code, range(6)))
    assert set(codes) <= {200, 503} and 200 in codes
    assert client.get("/health").status_code == 200  # still serving


def _start_server(run: Path, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    import httpx

    server = subprocess.Popen([sys.executable, "-m", "attsf", "serve", "--run", str(run), "--port", str(port), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError(f"server did not start: {server.stderr.read()}")


def _status(sock: socket.socket, timeout: float = 10) -> int:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return int(data.split(b" ", 2)[1])


def _head(length: str | None) -> bytes:
    size = f"Content-Length: {length}" if length else "Transfer-Encoding: chunked"
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=BB\r\n{size}\r\n\r\n"
            ).encode()


def test_server_bounds_uploads_before_reading_them(demo_dir, tmp_path):
    """Oversize uploads are refused at their declared size or after limit + one chunk, and a
    busy server answers 503 before reading a body; measured in the server's temp folder."""
    import threading

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    server = _start_server(demo_dir / "run", port, "--max-mb", "1", "--max-pending", "1",
                           env=dict(os.environ, TMPDIR=str(tmp)))
    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:  # a declared 20 MB: refused from the headers
            s.sendall(_head("20000000"))
            assert _status(s) == 413
        part = b"--BB\r\nContent-Disposition: form-data; name=file; filename=a.mp4\r\n\r\n"
        sent = 0
        with socket.create_connection(("127.0.0.1", port)) as s:  # 20 MB streamed without a declared size
            s.sendall(_head(None) + f"{len(part):x}\r\n".encode() + part + b"\r\n")
            chunk = os.urandom(64 * 1024)
            try:
                while sent < 20 * 2**20 and not select.select([s], [], [], 0)[0]:  # until the server answers
                    s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert _status(s) == 413
        with socket.create_connection(("127.0.0.1", port)) as slow:  # one upload in flight...
            slow.sendall(_head("600000") + part + b"x" * 1000)
            time.sleep(1.0)
            with socket.create_connection(("127.0.0.1", port)) as s:  # ...so the next is turned away unread
                s.sendall(_head("600000"))
                assert _status(s, timeout=5) == 503
    finally:
        stop.set()
        watcher.join()
        server.terminate()
        server.wait(timeout=10)
    # what the server stored (not what a busy client managed to send before the 413 reached it)
    assert peak[0] <= 2**20 + 256 * 1024, f"{peak[0]} bytes reached the temp folder"


def _png() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_examples_api_and_no_cdn_docs(recognizer, clips, tmp_path):
    from fastapi.testclient import TestClient

    from attsf.serve import create_app, example_files

    folder = tmp_path / "examples"
    folder.mkdir()
    with pytest.raises(AttsfError, match="no media files"):
        example_files(folder)
    shutil.copy(clips["audio"], folder / "my_voice.wav")
    (folder / "notes.txt").write_text("not offered")
    (folder / "fake.wav").write_text("a text file named like audio")
    outside = tmp_path / "secret.wav"
    shutil.copy(clips["audio"], outside)
    (folder / "linked.wav").symlink_to(outside)  # a link out of the folder is never served
    offered = example_files(folder)
    assert offered == {"my_voice.wav": "my voice"}
    client = TestClient(create_app(recognizer, examples=(folder, offered)))
    assert client.get("/examples").json() == [{"name": "my_voice.wav", "title": "my voice", "url": "/examples/my_voice.wav",
                                               "kind": "audio"}]
    assert client.get("/examples/my_voice.wav").content == clips["audio"].read_bytes()
    for name in ("notes.txt", "..%2Fexamples%2Fmy_voice.wav", "missing.mp4", "linked.wav", "fake.wav"):
        assert client.get(f"/examples/{name}").status_code == 404
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "<script>" not in client.get("/").text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/index.html").status_code == 404
    assert client.get("/docs").status_code == 404  # FastAPI's /docs loads its scripts from a CDN
    assert client.get("/openapi.json").status_code == 200


def _drop(page, path: Path, selector: str = "#drop") -> None:
    """Drag-and-drop of a file onto the page, as a browser delivers it (a DataTransfer)."""
    import base64

    page.evaluate("""([b64, name, sel]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, { type: "video/mp4" }));
        document.querySelector(sel).dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
    }""", [base64.b64encode(path.read_bytes()).decode(), path.name, selector])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_web_page_in_chromium(demo_dir, clips, tmp_path):
    """The page as a person uses it: an example clip, a dropped and an uploaded clip, a bad
    file and a clip without a face; every request stays on the server (works offline)."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = _start_server(demo_dir / "run", port)
    shots = Path(os.environ.get("ATTSF_SCREENSHOT_DIR") or tmp_path)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (tested below)
            page = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True)
            hosts = set()
            page.on("request", lambda r: hosts.add(r.url.split("/")[2] if "://" in r.url else r.url.split(":")[0]))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".example")
            page.wait_for_function("document.getElementById('info').textContent.includes('classes')")
            assert "generated clips" in page.text_content("#banner") and page.is_visible("#banner")
            card = page.text_content("#card")
            assert "25 % (4 classes)" in card and "demo" in card, card
            assert "ATTSF-Net audio-visual" in page.text_content("#subtitle")  # the page follows the model
            assert page.text_content("#drop-text") == "Drop a video or audio clip here"
            titles = page.locator(".example").all_text_contents()
            assert len(titles) == 3 and any("No face" in t for t in titles), titles

            # 1. an example clip: recognised at a click, faces labelled with their times
            page.click(".example[data-name='talking_face.mp4']")
            page.wait_for_selector("#result:not([hidden])", timeout=60000)
            assert page.text_content("#label") in ("neutral", "happy", "sad", "angry")
            assert page.locator("#faces img").count() == 15 and page.locator(".chart").count() == 3
            captions = page.locator("#faces figcaption").all_text_contents()
            times = [float(c.split(" s")[0]) for c in captions]
            assert times == sorted(times) and 0 < times[0] < times[-1] < 3.0, captions
            ticks = page.locator(".chart").first.locator(".ticks span").all_text_contents()
            assert ticks == ["0", "25", "50", "75", "100 %"]
            assert page.locator("#preview video").count() == 1 and page.is_hidden("#spinner")
            page.screenshot(path=str(shots / "page_example.png"), full_page=True)

            # 2. drag-and-drop shows a preview and waits for the button
            _drop(page, clips["small"])
            page.wait_for_selector("#preview video")
            assert "small.mp4" in page.text_content("#status") and page.is_enabled("#go")

            # 3. an upload through the file chooser: audio only, so one chart and no faces
            page.set_input_files("#file", str(clips["audio"]))
            assert page.locator("#preview audio").count() == 1
            page.click("#go")
            page.wait_for_function("document.getElementById('mods').textContent === 'from audio'")
            assert page.locator(".chart h3").all_text_contents() == ["Audio head: the answer (no video in this clip)"]
            assert page.is_hidden("#faces-block")
            page.screenshot(path=str(shots / "page_upload_audio.png"), full_page=True)

            # 4. a bad file: the reason, no result
            bad = tmp_path / "bad.mp4"
            bad.write_text("not a video")
            page.set_input_files("#file", str(bad))
            page.click("#go")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "bad.mp4: not a readable media file" in page.text_content("#result-panel #error")
            assert page.is_hidden("#result") and page.is_hidden("#placeholder")  # the reason stands where the answer would
            page.screenshot(path=str(shots / "page_bad_file.png"), full_page=True)

            # 5. a clip without a face (an example): answered from its audio, and the page says so
            page.click(".example[data-name='no_face.mp4']")
            page.wait_for_function("document.getElementById('mods').textContent.includes('no face')", timeout=60000)
            assert "no face detected in any of the 15 sampled frames: answered from the audio alone" in \
                page.text_content("#mods")
            assert page.text_content("#label") in ("neutral", "happy", "sad", "angry")
            page.screenshot(path=str(shots / "page_no_face.png"), full_page=True)
            browser.close()
        assert hosts == {f"127.0.0.1:{port}"} | ({"blob"} & hosts) | ({"data"} & hosts), hosts
    finally:
        server.terminate()
        server.wait(timeout=10)


RAVDESS_AUDIO = SHARED / "ravdess_audio16k"


@pytest.mark.skipif(not RAVDESS_AUDIO.is_dir(), reason=f"{RAVDESS_AUDIO} (RAVDESS speech audio) is not here")
def test_packaged_model_answers_without_a_run(tmp_path):
    """A fresh clone's `attsf predict CLIP`: the packaged speech model with its card; silence
    gets no label; --same-speaker with few clips needs no warning (they are shrunk towards the
    training speakers' statistics)."""
    clips = sorted((RAVDESS_AUDIO / "Actor_01").glob("*.flac"))[:2]
    doc = json.loads(cli("predict", str(clips[0]), "--json").stdout)
    card, row = doc["model"], doc["clips"][0]
    assert card["name"] == "RAVDESS speech emotion (audio only)" and card["chance"] == 12.5
    assert "non-commercial" in card["licence"] and card["evaluation"]["speakers"] == ["05", "10", "15", "20"]
    # the 18 actors it was trained on: those of the cache (the fold file also lists actors 23 and 24)
    assert card["evaluation"]["training_speakers"] == [f"{a:02d}" for a in range(1, 23) if a % 5]
    assert row["label"] in card["labels"] and row["speech_seconds"] > 1
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(48000, np.float32), 16000)
    quiet = json.loads(cli("predict", str(silence), "--json").stdout)["clips"][0]
    assert quiet["label"] is None and quiet["note"].startswith("no speech detected")
    from attsf.export import packaged_model

    side = json.loads(packaged_model("ravdess-speech").with_suffix(".json").read_text())
    assert len(side["preprocessing"]["normalization"]["prior_clips"]["audio"]) == 12
    few = cli("predict", *map(str, clips), "--same-speaker")
    assert few.returncode == 0 and "--same-speaker with 2 clip(s)" not in few.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
@pytest.mark.skipif(not RAVDESS_AUDIO.is_dir(), reason=f"{RAVDESS_AUDIO} (RAVDESS speech audio) is not here")
def test_packaged_model_page_in_chromium(tmp_path):
    """`attsf serve` with no --run: the packaged speech model's page asks for speech, shows
    its card (accuracy to expect, intended use, licence), offers no generated examples, and
    on a 420 px screen brings the answer, or the reason for none, into view."""
    from playwright.sync_api import sync_playwright

    clip = RAVDESS_AUDIO / "Actor_05" / "03-01-05-01-01-01-05.flac"  # angry; actor 05 is held out of its training
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "attsf", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    shots = Path(os.environ.get("ATTSF_SCREENSHOT_DIR") or tmp_path)
    try:
        import httpx

        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('info').textContent.includes('classes')")
            assert "emotion in speech" in page.text_content("#subtitle")
            assert "ATTSF-Net audio-visual" not in page.text_content("body")
            assert page.text_content("#drop-text").startswith("Drop an audio clip")
            card = page.text_content("#card")
            assert "RAVDESS speech emotion (audio only)" in card and "on a new speaker's clip" in card
            assert "non-commercial" in card and "Not for decisions about people" in card
            assert page.locator(".example").count() == 0 and page.is_hidden("#banner")
            page.set_input_files("#file", str(clip))
            page.click("#go")
            page.wait_for_selector("#result:not([hidden])", timeout=60000)
            assert page.text_content("#label") in page.text_content("#info")  # one of its 8 classes
            assert page.locator(".chart").count() == 1
            page.screenshot(path=str(shots / "page_packaged_1280.png"), full_page=True)

            narrow = browser.new_page(viewport={"width": 420, "height": 800}, bypass_csp=True)
            narrow.goto(f"http://127.0.0.1:{port}/")
            narrow.wait_for_function("document.getElementById('info').textContent.includes('classes')")
            narrow.set_input_files("#file", str(clip))
            narrow.click("#go")
            narrow.wait_for_selector("#result:not([hidden])", timeout=60000)
            narrow.wait_for_function("document.getElementById('result-panel').getBoundingClientRect().top < 400")
            assert narrow.evaluate("window.scrollY") > 300  # scrolled down to the answer
            narrow.screenshot(path=str(shots / "page_packaged_420.png"))
            bad = tmp_path / "notes.wav"
            bad.write_text("not audio")
            narrow.evaluate("window.scrollTo(0, 0)")
            narrow.set_input_files("#file", str(bad))
            narrow.click("#go")
            narrow.wait_for_function("document.getElementById('error').textContent.length > 0")
            narrow.wait_for_function("(r => r.top >= 0 && r.bottom <= innerHeight)"
                                     "(document.getElementById('error').getBoundingClientRect())")  # in view
            assert "notes.wav: not a readable media file" in narrow.text_content("#result-panel #error")
            narrow.screenshot(path=str(shots / "page_packaged_420_error.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_hostile_example_names_stay_text_in_chromium(demo_dir, clips, tmp_path):
    """An example named like markup is shown as its name, runs nothing, and inline script is
    refused by the page's Content-Security-Policy."""
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "examples"
    folder.mkdir()
    name = "<img src=x onerror=document.title='pwned'>.wav"
    shutil.copy(clips["audio"], folder / name)
    port = _free_port()
    server = _start_server(demo_dir / "run", port, "--examples", str(folder))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".example")
            assert page.locator("#examples img").count() == 0
            assert "<img src=x onerror=document.title='pwned'>" in page.text_content(".example")
            page.click(".example")
            page.wait_for_selector("#result:not([hidden])", timeout=60000)
            page.evaluate("""() => { const s = document.createElement("script");
                s.textContent = "window.__inline = 1"; document.body.appendChild(s); }""")
            assert page.evaluate("[document.title, window.__inline]") == ["attsf — emotion in a clip", None]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _unsized_mkv(path: Path, seconds: float) -> Path:
    """Silence in Matroska written to a stream that cannot seek, so the muxer leaves out the
    Duration element: the container does not say how long the clip is."""
    import av

    class Unseekable:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, data: bytes) -> int:
            return self.fh.write(data)

    with path.open("wb") as fh, av.open(Unseekable(fh), "w", format="matroska") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        silence = np.zeros((1, 960), np.float32)
        for i in range(int(seconds * 50)):
            frame = av.AudioFrame.from_ndarray(silence, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_decoding_stops_at_the_limit_whatever_the_container_claims(recognizer, tmp_path):
    import soundfile as sf

    from attsf.data.audio import ClipTooLong
    from attsf.data.media import probe, read_audio

    hidden = _unsized_mkv(tmp_path / "hidden.mkv", 20.0)
    assert probe(hidden).duration == 0  # nothing to check before decoding
    assert len(read_audio(hidden, 16000)) == pytest.approx(20 * 16000, rel=0.01)
    with pytest.raises(ClipTooLong, match="hidden.mkv: clip longer than 3 s"):
        read_audio(hidden, 16000, max_seconds=3.0)
    wav = tmp_path / "five.wav"
    sf.write(wav, np.zeros(5 * 16000, np.float32), 16000)
    with pytest.raises(ClipTooLong, match="five.wav: clip longer than 3 s"):
        read_audio(wav, 16000, max_seconds=3.0)
    assert len(read_audio(wav, 16000, max_seconds=6.0)) == 5 * 16000
    recognizer.max_seconds = 3.0
    try:
        with pytest.raises(ClipTooLong):
            recognizer.predict(hidden)
    finally:
        recognizer.max_seconds = None


def test_serve_removes_its_generated_examples_on_sigterm(demo_dir, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = _start_server(demo_dir / "run", _free_port(), env=dict(os.environ, TMPDIR=str(tmp)))
    try:
        assert [p.name for p in tmp.iterdir() if p.name.startswith("attsf-examples-")]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert not [p for p in tmp.iterdir() if p.name.startswith("attsf-examples-")]


REAL_FACES = SHARED / "real_faces"


@pytest.mark.skipif(not REAL_FACES.is_dir(), reason=f"real face videos not found at {REAL_FACES}")
def test_real_faces_end_to_end(recognizer):
    """Real talking faces through the whole video path (the demo model: the faces and times
    are the point here, not its label): a face in >= 90 % of the sampled frames with their
    times, the frames after a face leaves reported as without one, and a face in the frame
    of every RAVDESS actor."""
    from fastapi.testclient import TestClient
    from PIL import Image

    from attsf.serve import create_app

    talk = recognizer.predict(REAL_FACES / "talking_face_speech.mp4")
    assert talk.modalities == ["audio", "video"] and sum(talk.face_detected) >= 0.9 * len(talk.face_detected)
    assert len(talk.face_times) == 15 and talk.face_times == sorted(talk.face_times) and talk.face_times[-1] < 10.4
    side = recognizer.prep.faces.size  # the demo model's crop size
    assert talk.faces.shape == (15, side, side, 3) and talk.faces.std() > 20  # real crops, not blank fallbacks

    leaves = recognizer.predict(REAL_FACES / "face_then_no_face.mov")
    seen = leaves.face_detected
    assert seen[0] and not seen[-1] and leaves.fallback_frames == seen.count(False) > 0
    assert seen == sorted(seen, reverse=True)  # found while the face is in view, then not
    assert leaves.note is None and "video" in leaves.modalities  # some frames had the face: the clip is used

    client = TestClient(create_app(recognizer))  # the page's data: 15 crops with their times
    with (REAL_FACES / "single_face_short.mp4").open("rb") as fh:
        body = client.post("/predict?faces=true", files={"file": ("single_face_short.mp4", fh.read())}).json()
    assert len(body["faces"]) == len(body["face_times"]) == 15 and all(body["face_detected"])
    assert 0 <= body["face_times"][0] < body["face_times"][-1] <= 2.42

    actors = sorted((REAL_FACES / "ravdess_actor_frames").glob("Actor_*.png"))
    height = recognizer.prep.faces.detect_height
    small = [np.asarray(Image.open(p).convert("RGB").resize((round(398 * height / 224), height))) for p in actors]
    found = [recognizer.cropper.detect([img])[0] is not None for img in small]
    assert len(actors) == 24 and all(found), [p.name for p, f in zip(actors, found) if not f]
