"""``attsf serve``: a web page and a JSON API (FastAPI) around :class:`EmotionRecognizer`.

Uploads are streamed to a per-request temporary directory (removed afterwards) with a
size limit, recognised by probing their content with PyAV (never by the file name),
checked for duration, and answered with a 4xx and a one-line reason when unusable.
Predictions run in a worker thread, one at a time; at most ``max_pending`` requests wait,
others get 503 at once, so the server keeps answering /health under load.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse

from attsf.data.media import probe
from attsf.errors import AttsfError
from attsf.predict import EmotionRecognizer

# containers PyAV reports for the accepted uploads: mp4/mov/m4a, mkv/webm, and audio files
ACCEPTED_FORMATS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "wav", "flac", "ogg", "mp3", "avi"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class ServeLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 60.0
    max_pending: int = 4


def _jpeg_b64(frame) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode()


def create_app(recognizer: EmotionRecognizer, limits: ServeLimits = ServeLimits()) -> FastAPI:
    app = FastAPI(title="attsf", version="1", description="ATTSF-Net audio-visual emotion recognition")
    lock = threading.Lock()  # one prediction at a time: the model and MTCNN are not shared across threads
    pending = asyncio.Semaphore(limits.max_pending)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (resources.files("attsf") / "web" / "index.html").read_text()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "labels": recognizer.labels, "modalities": recognizer.visual_kind,
                "max_upload_mb": limits.max_bytes / 2**20, "max_seconds": limits.max_seconds}

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File()], faces: bool = False) -> dict:
        if pending.locked():
            raise HTTPException(503, "busy: too many requests in flight, try again shortly")
        async with pending:
            with tempfile.TemporaryDirectory(prefix="attsf-upload-") as tmp:
                path = Path(tmp) / "upload"
                size = 0
                with path.open("wb") as fh:
                    while chunk := await file.read(CHUNK):
                        size += len(chunk)
                        if size > limits.max_bytes:
                            raise HTTPException(413, f"file larger than {limits.max_bytes // 2**20} MB")
                        fh.write(chunk)
                if size == 0:
                    raise HTTPException(400, "empty upload")
                result = await asyncio.to_thread(_checked_predict, recognizer, path, limits, lock)
        body = result.to_dict()
        body["path"] = file.filename or "upload"
        if faces and result.faces is not None:
            body["faces"] = [_jpeg_b64(f) for f in result.faces]
        return body

    return app


def _checked_predict(recognizer: EmotionRecognizer, path: Path, limits: ServeLimits, lock: threading.Lock):
    try:
        info = probe(path)
    except AttsfError:
        raise HTTPException(415, "not a media file PyAV can read (mp4, mov, webm, mkv or audio)") from None
    if not set(info.format.split(",")) & ACCEPTED_FORMATS:
        raise HTTPException(415, f"unsupported media type ({info.format}); send mp4, mov, webm, mkv or an audio file")
    if info.duration > limits.max_seconds:
        raise HTTPException(413, f"clip longer than {limits.max_seconds:g} s ({info.duration:.1f} s)")
    try:
        with lock:
            return recognizer.predict(path)
    except AttsfError as exc:
        raise HTTPException(422, str(exc).replace(f"{path}: ", "")) from None


def serve(run: str, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits()) -> None:
    import uvicorn

    recognizer = EmotionRecognizer.from_pretrained(run)
    recognizer.warmup()
    app = create_app(recognizer, limits)
    print(f"attsf serve: http://{host}:{port}/  (API: /predict, /health, /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
