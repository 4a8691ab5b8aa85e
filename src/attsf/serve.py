"""``attsf serve``: a web page and a JSON API (FastAPI) around :class:`EmotionRecognizer`.

Uploads are streamed to a per-request temporary directory (removed afterwards). An upload
over the size limit is refused as soon as its declared or streamed size passes it, and a
busy server (``max_pending`` uploads in flight) answers 503 before reading a body
(``UploadGuard``). Uploads are recognised by probing their content with PyAV (never by the
file name), checked for duration, and answered with a 4xx and a one-line reason when
unusable. Predictions run in a worker thread, one at a time, so the server keeps answering
/health under load. The page offers example clips (``/examples``): a folder of the user's
own (``--examples``), or for the demo model three clips generated at start-up (a real
model gets no generated examples: they are not what it was trained on). The API is described by
``/openapi.json``; there is no ``/docs`` page, as FastAPI's loads its scripts from a CDN
and the server must work offline.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response

from attsf.card import SYNTHETIC
from attsf.data.audio import ClipTooLong
from attsf.data.media import AUDIO_SUFFIXES, MEDIA_SUFFIXES, probe
from attsf.errors import AttsfError
from attsf.predict import EmotionRecognizer, SpeakerStats

# containers PyAV reports for the accepted uploads: mp4/mov/m4a, mkv/webm, and audio files
ACCEPTED_FORMATS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "wav", "flac", "ogg", "mp3", "avi"}
CHUNK = 1 << 20
MAX_ENROL = 60  # clips per POST /enrol (RAVDESS has 60 per actor); the upload size limit bounds them too
# the page's own script and stylesheet only: no inline script, nothing from elsewhere
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


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


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"file larger than {limit / 2**20:g} MB")


class UploadGuard:
    """ASGI middleware in front of ``POST /predict``: answers 503 "busy" before reading any
    body when ``max_pending`` uploads are in flight, and 413 as soon as the declared size
    (Content-Length) or the bytes streamed so far pass the limit (plus room for the
    multipart framing), so no more than the limit and one chunk ever reach memory or disk."""

    FRAMING = 64 * 1024  # multipart boundaries and part headers around the file

    def __init__(self, app, limits: ServeLimits) -> None:
        self.app, self.limits, self.in_flight = app, limits, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            return await self.app(scope, receive, send)
        cap = self.limits.max_bytes + self.FRAMING
        declared = dict(scope["headers"]).get(b"content-length")
        if self.in_flight >= self.limits.max_pending:
            return await _reply(send, 503, "busy: too many requests in flight, try again shortly")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return await _reply(send, 413, TooLarge(self.limits.max_bytes).detail)
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > cap:
                raise TooLarge(self.limits.max_bytes)  # FastAPI passes HTTPExceptions on as they are
            return message

        self.in_flight += 1
        try:
            await self.app(scope, counted, send)
        finally:
            self.in_flight -= 1


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _offerable(f: Path) -> bool:
    """A regular file (not a link to elsewhere) whose content PyAV reads as audio or video."""
    if f.is_symlink() or not f.is_file() or f.suffix.lower() not in MEDIA_SUFFIXES:
        return False
    try:
        info = probe(f)
    except AttsfError:
        return False
    return info.has_audio or info.has_video


def example_files(folder: str | Path) -> dict[str, str]:
    """The media files of a user's ``--examples`` folder (file name -> title): regular files
    inside the folder whose content is media; links and other files are not offered."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AttsfError(f"{folder}: examples folder not found")
    found = {f.name: f.stem.replace("_", " ") for f in sorted(folder.iterdir()) if _offerable(f)}
    if not found:
        raise AttsfError(f"{folder}: no media files ({', '.join(sorted(MEDIA_SUFFIXES))}) to offer as examples")
    return found


def create_app(recognizer: EmotionRecognizer, limits: ServeLimits = ServeLimits(),
               examples: tuple[Path, dict[str, str]] | None = None) -> FastAPI:
    """The app; ``examples`` is a folder and its offered files (name -> title)."""
    app = FastAPI(title="attsf", version="1", description="ATTSF-Net audio-visual emotion recognition",
                  docs_url=None, redoc_url=None)
    app.add_middleware(UploadGuard, limits=limits)
    recognizer.max_seconds = limits.max_seconds  # on the decoded audio, whatever the container claims
    lock = threading.Lock()  # one prediction at a time: the model and MTCNN are not shared across threads

    @app.middleware("http")
    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (resources.files("attsf") / "web" / "index.html").read_text()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "not found")
        return Response((resources.files("attsf") / "web" / name).read_bytes(), media_type=STATIC[name])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "labels": recognizer.labels, "modalities": recognizer.card.get("modalities", []),
                "visual_input": recognizer.visual_kind, "model": recognizer.card,
                "max_upload_mb": limits.max_bytes / 2**20, "max_seconds": limits.max_seconds}

    @app.get("/examples")
    def example_list() -> list[dict]:
        if examples is None:
            return []
        return [{"name": name, "title": title, "url": f"/examples/{name}",
                 "kind": "audio" if Path(name).suffix.lower() in AUDIO_SUFFIXES else "video"}
                for name, title in examples[1].items()]

    @app.get("/examples/{name}", include_in_schema=False)
    def example_file(name: str) -> FileResponse:
        if examples is None or name not in examples[1] or (examples[0] / name).is_symlink():  # listed files only
            raise HTTPException(404, "no such example")
        return FileResponse(examples[0] / name)

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File()], faces: bool = False,
                      speaker: Annotated[str | None, Form()] = None) -> dict:
        """One clip; ``speaker``: the statistics of its speaker from ``POST /enrol`` (a model
        trained with speaker normalisation then sees the clip as it saw its own speakers)."""
        enrolled = _speaker(recognizer, speaker) if speaker else None
        with tempfile.TemporaryDirectory(prefix="attsf-upload-") as tmp:
            path = await _save(file, Path(tmp) / "upload", limits)
            result = await asyncio.to_thread(_checked_predict, recognizer, path, limits, lock, enrolled)
        body = result.to_json()
        body["path"] = file.filename or "upload"
        body["model"] = recognizer.card
        if faces and result.faces is not None:
            body["faces"] = [_jpeg_b64(f) for f in result.faces]
        return body

    @app.post("/enrol")
    async def enrol(files: Annotated[list[UploadFile], File()]) -> dict:
        """Statistics of several clips of one speaker, for ``POST /predict``'s ``speaker``
        field (stateless: the server keeps nothing)."""
        if len(files) > MAX_ENROL:
            raise HTTPException(413, f"at most {MAX_ENROL} clips per enrolment")
        with tempfile.TemporaryDirectory(prefix="attsf-enrol-") as tmp:
            paths = [await _save(f, Path(tmp) / f"clip{i}", limits) for i, f in enumerate(files)]
            return (await asyncio.to_thread(_checked_enrol, recognizer, paths, limits, lock)).to_json()

    return app


async def _save(file: UploadFile, path: Path, limits: ServeLimits) -> Path:
    """An upload written to ``path`` in chunks, refused past the size limit or when empty."""
    size = 0
    with path.open("wb") as fh:
        while chunk := await file.read(CHUNK):
            size += len(chunk)
            if size > limits.max_bytes:
                raise TooLarge(limits.max_bytes)
            fh.write(chunk)
    if size == 0:
        raise HTTPException(400, "empty upload")
    return path


def _speaker(recognizer: EmotionRecognizer, text: str) -> SpeakerStats:
    try:
        return recognizer.speaker_from_json(json.loads(text))
    except json.JSONDecodeError:
        raise HTTPException(422, "speaker: not JSON (send what POST /enrol answered)") from None
    except AttsfError as exc:
        raise HTTPException(422, str(exc)) from None


def _checked_enrol(recognizer: EmotionRecognizer, paths: list[Path], limits: ServeLimits,
                   lock: threading.Lock) -> SpeakerStats:
    for path in paths:
        _check_media(path, limits)
    try:
        with lock:
            return recognizer.speaker_statistics(paths)
    except AttsfError as exc:
        raise HTTPException(422, str(exc)) from None


def _check_media(path: Path, limits: ServeLimits) -> None:
    """A readable audio or video file in an accepted container, under the duration limit."""
    try:
        info = probe(path)
    except AttsfError as exc:  # the words attsf predict uses for the same file
        raise HTTPException(415, str(exc).replace(f"{path}: ", "")) from None
    if not set(info.format.split(",")) & ACCEPTED_FORMATS:
        raise HTTPException(415, f"unsupported media type ({info.format}); send mp4, mov, webm, mkv or an audio file")
    if info.duration > limits.max_seconds:
        raise HTTPException(413, f"clip longer than {limits.max_seconds:g} s ({info.duration:.1f} s)")


def _checked_predict(recognizer: EmotionRecognizer, path: Path, limits: ServeLimits, lock: threading.Lock,
                     speaker: SpeakerStats | None = None):
    _check_media(path, limits)
    try:
        with lock:
            return recognizer.predict(path, speaker)
    except ClipTooLong:  # a container that hides its length: stopped once the decoded audio passed the limit
        raise HTTPException(413, f"clip longer than {limits.max_seconds:g} s") from None
    except AttsfError as exc:
        raise HTTPException(422, str(exc).replace(f"{path}: ", "")) from None


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def serve(run: str, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits(),
          examples: str | None = None, allow_unfinished: bool = False) -> None:
    """Serve the page and API until interrupted; ``examples``: a folder of clips the page
    offers (default: three generated at start-up for the demo model, none for a real one)."""
    import uvicorn

    from attsf.data.synthetic import example_clips

    recognizer = EmotionRecognizer.from_pretrained(run, allow_unfinished=allow_unfinished)
    # uvicorn stops on SIGTERM as on SIGINT, then raises the signal again: as an exit, so
    # that the generated examples' folder is removed on the way out
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="attsf-examples-") as tmp:
        folder = Path(examples or tmp)
        synthetic = recognizer.card.get("dataset") in SYNTHETIC
        offered = example_files(folder) if examples else example_clips(folder) if synthetic else {}
        recognizer.warmup()
        app = create_app(recognizer, limits, (folder, offered))
        print(f"attsf serve: http://{host}:{port}/  (API: POST /predict, GET /health, /openapi.json)")
        uvicorn.run(app, host=host, port=port, log_level="warning")
