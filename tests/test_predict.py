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

import pytest
import soundfile as sf

from attsf.data.synthetic import speech_like, talking_clip
from attsf.errors import AttsfError
from tests import layouts
from tests.conftest import run_cli

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
    normed = EmotionRecognizer(recognizer.cfg, recognizer.labels, recognizer.model, prep).prepare(clips["audio"])[1]
    torch.testing.assert_close(normed["audio"], (raw - mean[:, None]) / std[:, None])


def test_predict_cli(demo_dir, clips):
    run = str(demo_dir / "run")
    out = run_cli("predict", str(clips["video"]), "--run", run, "--json").stdout
    rows = json.loads(out)
    assert rows[0]["label"] and rows[0]["modalities"] == ["audio", "video"]
    card = rows[0]["model"]  # the model card: what the model is and what its numbers mean
    assert card["dataset"] == "demo" and card["chance"] == 25.0 and card["modalities"] == ["audio", "video"]
    assert card["warning"] == "demo model trained on generated clips — its predictions on real media mean nothing"
    assert card["test_accuracy"] is not None and card["train_speakers"] == 4
    proc = run_cli("predict", str(clips["video"]), str(clips["broken"]), "--run", run, check=False)
    assert proc.returncode == 1 and "talk.mp4" in proc.stdout
    assert "trained on demo, " in proc.stderr and "chance 25.0 %" in proc.stderr
    assert "WARNING: demo model trained on generated clips" in proc.stderr
    assert "broken.mp4: not a readable media file" in proc.stderr and "Traceback" not in proc.stderr
    folder = run_cli("predict", str(clips["video"].parent), "--run", run, check=False)
    table = list(csv.DictReader(io.StringIO(folder.stdout)))
    assert {Path(r["path"]).name for r in table} == {"talk.mp4", "small.mp4", "voice.wav", "broken.mp4"}
    assert next(r for r in table if r["path"].endswith("broken.mp4"))["error"]
    assert json.loads(out)[0]["face_detected"] == [True] * 15


def test_no_face_and_all_failed(recognizer, demo_dir, clips):
    """A video with no face in any frame is refused with the same reason by the Python API,
    the CLI (exit 1, no empty table) and the server (422)."""
    with pytest.raises(AttsfError, match="no face detected in any of the 15 sampled frames"):
        recognizer.predict(clips["noface"])
    proc = run_cli("predict", str(clips["noface"]), str(clips["broken"]), "--run", str(demo_dir / "run"), check=False)
    assert proc.returncode == 1 and proc.stdout.strip() == ""
    assert "nobody.mp4: no face detected in any of the 15 sampled frames" in proc.stderr
    assert "none of the 2 clip(s) could be recognised" in proc.stderr and "Traceback" not in proc.stderr


def test_api_rejects_bad_uploads(recognizer, clips, tmp_path):
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
    cases = [
        ("notes.mp4", b"just some text, not a video\n" * 50, 415),
        ("empty.mp4", b"", 400),
        ("big.mp4", os.urandom(3 * 2**20), 413),
        ("broken.mp4", clips["broken"].read_bytes(), 415),
        ("long.mp4", clips["video"].read_bytes(), 413),  # 4 s > 3 s limit
        ("photo.mp4", _png(), 415),  # a real image, named like a video
        ("nobody.mp4", clips["noface"].read_bytes(), 422),
    ]
    for name, data, status in cases:
        resp = post(name, data)
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        assert resp.json()["detail"] and "Traceback" not in resp.text
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
        assert sent < 8 * 2**20, sent  # answered after about the limit, not after the whole body
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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_web_page_in_chromium(demo_dir, clips, tmp_path):
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "attsf", "serve", "--run", str(demo_dir / "run"), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        for _ in range(120):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"server did not start: {server.stderr.read() if server.poll() is not None else ''}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('info').textContent.includes('Classes')")
            assert "generated clips" in page.text_content("#banner") and page.is_visible("#banner")
            assert "chance 25 %" in page.text_content("#card") and "trained on demo" in page.text_content("#card")
            page.set_input_files("#file", str(clips["video"]))
            page.click("#go")
            page.wait_for_selector("#result:not([hidden])", timeout=60000)
            label = page.text_content("#label")
            assert label in ("neutral", "happy", "sad", "angry")
            assert page.locator("#faces img").count() == 15
            assert page.locator(".chart").count() == 3
            shot = tmp_path / "web_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            page.set_input_files("#file", str(clips["audio"]))  # audio only: no "Fused" chart, no face count
            page.click("#go")
            page.wait_for_function("document.getElementById('mods').textContent.includes('from audio)')")
            titles = page.locator(".chart h3").all_text_contents()
            assert titles == ["Audio head (the answer: no video in this clip)"], titles
            # an error shows in the page
            bad = tmp_path / "bad.mp4"
            bad.write_text("not a video")
            page.set_input_files("#file", str(bad))
            page.click("#go")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "not a media file" in page.text_content("#error")
            browser.close()
        if os.environ.get("ATTSF_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["ATTSF_SCREENSHOT_DIR"]) / "web_page.png")
    finally:
        server.terminate()
        server.wait(timeout=10)
