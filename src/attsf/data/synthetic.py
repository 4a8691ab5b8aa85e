"""Real media made on the spot, for the demo, the tests and the benchmarks.

Video: the astronaut photo that scikit-image ships, pasted into a textured frame and
moving, encoded by PyAV's own encoders (H.264 in MP4, MPEG-4 Part 2 in AVI, ...), with
the face box of every frame known. Audio: a speech-like voiced signal with syllables
whose pitch contour, rate and loudness depend on a class label.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

# The face in skimage.data.astronaut() (512x512), hairline to chin and ear to ear,
# annotated by eye: x0, y0, x1, y1.
ASTRONAUT_FACE = (180, 60, 268, 172)
SPEECH_CLASSES = ("neutral", "happy", "sad", "angry")


def speech_like(label: str, speaker: int, rng: np.random.Generator, seconds: float = 3.0,
                sr: int = 16000) -> np.ndarray:
    """A voiced signal with syllables: class-specific pitch contour, rate and loudness."""
    t = np.arange(int(seconds * sr)) / sr
    base = 110 + 25 * speaker + rng.normal(0, 5)
    contour = {"neutral": np.zeros_like(t), "happy": 60 * t / seconds + 40,
               "sad": -30 * t / seconds - 10, "angry": 30 + 15 * np.sin(2 * np.pi * 6 * t)}[label]
    rate = {"neutral": 3.0, "happy": 5.0, "sad": 2.0, "angry": 4.5}[label] * rng.uniform(0.9, 1.1)
    phase = 2 * np.pi * np.cumsum(base + contour) / sr
    voice = sum(np.sin(k * phase) / k ** (1.2 if label != "angry" else 0.7) for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rate * t / 2), 0, None) ** 2
    loud = {"neutral": 0.3, "happy": 0.5, "sad": 0.2, "angry": 0.8}[label]
    y = loud * envelope * voice / 4 + rng.normal(0, 0.01, t.shape)
    return np.clip(y, -1, 1).astype(np.float32)


@dataclass(frozen=True)
class Actor:
    """The photo, ``size`` pixels square, top-left at (x, y) at t = 0, moving (vx, vy) px/s."""

    x: float
    y: float
    size: int = 360
    vx: float = 0.0
    vy: float = 0.0
    mirror: bool = False

    def position(self, t: float) -> tuple[int, int]:
        return round(self.x + self.vx * t), round(self.y + self.vy * t)

    def face_box(self, t: float) -> tuple[float, float, float, float]:
        x, y = self.position(t)
        s = self.size / 512
        x0, y0, x1, y1 = ASTRONAUT_FACE
        if self.mirror:
            x0, x1 = 512 - x1, 512 - x0
        return (x + x0 * s, y + y0 * s, x + x1 * s, y + y1 * s)


@functools.lru_cache(maxsize=8)
def _photo(size: int, mirror: bool) -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img)
    return arr[:, ::-1] if mirror else arr


def render(actors: list[Actor], t: float, width: int, height: int, backdrop: np.ndarray) -> np.ndarray:
    frame = backdrop.copy()
    for actor in actors:
        photo = _photo(actor.size, actor.mirror)
        x, y = actor.position(t)
        xs, ys = max(x, 0), max(y, 0)
        xe, ye = min(x + actor.size, width), min(y + actor.size, height)
        if xe > xs and ye > ys:
            frame[ys:ye, xs:xe] = photo[ys - y : ye - y, xs - x : xe - x]
    return frame


def backdrop(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gy, gx = np.mgrid[0:height, 0:width]
    base = 90 + 60 * gx / width + 30 * np.sin(gy / 37.0)
    img = base[..., None] + rng.normal(0, 6, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_media(path: str | Path, *, actors: list[Actor] | None = None, seconds: float = 4.0,
                size: tuple[int, int] = (1280, 720), fps: int = 30, vcodec: str = "libx264",
                audio: np.ndarray | None = None, sr: int = 16000, acodec: str = "aac") -> Path:
    """Write a clip: video of the ``actors`` (none: audio only) and/or a mono audio track."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if actors is not None:
            vstream = out.add_stream(vcodec, rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            if vcodec == "libx264":
                vstream.options = {"preset": "ultrafast", "crf": "23"}
        if audio is not None:
            astream = out.add_stream(acodec, rate=sr, layout="mono")
        if vstream is not None:
            back = backdrop(width, height)
            for i in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(render(actors, i / fps, width, height, back), format="rgb24")
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
        if astream is not None:
            fmt = "fltp" if acodec in ("aac", "libopus", "libvorbis", "mp3") else "s16"
            step = astream.codec_context.frame_size or 1024
            for start in range(0, len(audio), step):
                chunk = audio[start : start + step].astype(np.float32)[None, :]
                if fmt == "s16":
                    chunk = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                frame.sample_rate, frame.pts = sr, start
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def talking_clip(path: str | Path, label: str = "happy", speaker: int = 0, seed: int = 0, seconds: float = 4.0,
                 size: tuple[int, int] = (1280, 720), fps: int = 30, vcodec: str = "libx264") -> Actor:
    """A 1280x720 30 fps clip of a face moving left to right, with speech-like audio.
    Returns the actor, whose ``face_box(t)`` is the true face box at time t."""
    rng = np.random.default_rng(seed)
    width, height = size
    photo = round(height * 0.9)
    actor = Actor(x=width * 0.05, y=height * 0.08, size=photo, vx=width * 0.35 / seconds, vy=-height * 0.01)
    write_media(path, actors=[actor], seconds=seconds, size=size, fps=fps, vcodec=vcodec,
                audio=speech_like(label, speaker, rng, seconds))
    return actor


def example_clips(root: str | Path) -> dict[str, str]:
    """Three small generated clips for the web page's examples (file name -> title): a
    talking face, a voice without video, and a video without a face. They are generated
    media: they show how the page answers, not what a real model predicts on real people."""
    root = Path(root)
    rng = np.random.default_rng(0)
    talking_clip(root / "talking_face.mp4", label="happy", seconds=3.0, size=(640, 360), fps=25)
    write_media(root / "no_face.mp4", actors=[], seconds=2.0, size=(640, 360), fps=25,
                audio=speech_like("sad", 1, rng, 2.0))
    sf.write(root / "voice.wav", speech_like("angry", 2, rng, 3.0), 16000)
    return {"talking_face.mp4": "Talking face (generated video with a voice)",
            "voice.wav": "Voice only (generated audio)",
            "no_face.mp4": "No face (generated video of an empty scene)"}
