"""Decoding media with PyAV: probing, audio from any container, and only the video frames
that preprocessing needs (the paper: 15 frames, uniform over the clip's centre 3.6 s).

Every failure is an :class:`AttsfError` naming the file and the problem in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from attsf.data.audio import ClipTooLong, load_waveform
from attsf.errors import AttsfError

Segment = tuple[float, float]
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}  # read by libsndfile, the rest by PyAV

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a"}
MEDIA_SUFFIXES = AUDIO_SUFFIXES | {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}  # what a folder of clips holds


@dataclass(frozen=True)
class MediaInfo:
    format: str  # container names as FFmpeg reports them, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration: float  # seconds (0 when unknown)
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


def _open(path: Path):
    if not path.is_file():
        raise AttsfError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AttsfError(f"{path}: file is empty (zero length)")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise AttsfError(f"{path}: not a readable media file ({_av_reason(exc)})") from None


def _av_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else exc.__class__.__name__


def probe(path: str | Path) -> MediaInfo:
    """Container format, streams and duration of a media file, from its headers."""
    path = Path(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        duration = container.duration / av.time_base if container.duration else 0.0
        has_audio, fmt = bool(container.streams.audio), container.format.name
        if video is not None:
            rate = float(video.average_rate or video.guessed_rate or 0)
            if not duration and video.duration and video.time_base:
                duration = float(video.duration * video.time_base)
            return MediaInfo(fmt, duration, has_audio, True, video.codec_context.width, video.codec_context.height, rate)
        return MediaInfo(fmt, duration, has_audio, False)


def _first_stream(container, kind: str, path: Path):
    """The first audio or video stream with threaded decoding, and its start time in seconds."""
    streams = getattr(container.streams, kind)
    if not streams:
        raise AttsfError(f"{path}: no {kind} stream")
    stream = streams[0]
    stream.thread_type = "AUTO"
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return stream, start


def read_audio(path: str | Path, sample_rate: int = 16000, segment: Segment | None = None,
               max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 at ``sample_rate`` from any file: libsndfile for WAV/FLAC/OGG/AIFF
    (whole files), PyAV for every other container and for segments. ``max_seconds``: a
    clip whose decoded audio is longer is refused as soon as decoding passes the limit,
    whatever its container claims."""
    path = Path(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES and segment is None:
        if not path.is_file():
            raise AttsfError(f"{path}: file not found")
        y = load_waveform(path, sample_rate, max_seconds)
    else:
        y = decode_audio(path, sample_rate, segment, max_seconds)
    if not np.isfinite(y).all():
        raise AttsfError(f"{path}: audio holds non-finite samples")
    return y


def decode_audio(path: str | Path, sample_rate: int = 16000, segment: Segment | None = None,
                 max_seconds: float | None = None) -> np.ndarray:
    """The first audio stream of any container, as mono float32 at ``sample_rate``;
    ``segment`` (start, end) in seconds keeps only that part; more than ``max_seconds`` of
    decoded audio is an error, raised as soon as decoding passes it."""
    path = Path(path)
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    decoded = 0
    with _open(path) as container:
        stream, start_time = _first_stream(container, "audio", path)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        if segment and segment[0] > 1.0:
            container.seek(int((start_time + segment[0] - 0.5) / stream.time_base), stream=stream, backward=True)
        chunks, first = [], None
        try:
            for frame in container.decode(stream):
                if first is None:
                    first = (frame.time if frame.time is not None else start_time) - start_time
                new = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                chunks += new
                decoded += sum(map(len, new))
                if limit is not None and decoded > limit:
                    raise ClipTooLong(path, max_seconds)
                if segment and frame.time is not None and frame.time - start_time > segment[1]:
                    break
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.FFmpegError as exc:
            if not chunks:
                raise AttsfError(f"{path}: cannot decode audio ({_av_reason(exc)})") from None
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if segment:
        lo = max(0, round((segment[0] - (first or 0.0)) * sample_rate))
        y = y[lo : lo + round((segment[1] - segment[0]) * sample_rate)]
    if y.size == 0:
        raise AttsfError(f"{path}: audio has zero length")
    return np.ascontiguousarray(y, dtype=np.float32)


def frame_times(start: float, end: float, n: int, span: float) -> np.ndarray:
    """``n`` times, one at the centre of each of ``n`` equal bins over the centre ``span``
    seconds of [start, end] (all of it when shorter)."""
    length = max(end - start, 0.0)
    used = min(span, length)
    t0 = start + (length - used) / 2
    return t0 + (np.arange(n) + 0.5) * used / n


@dataclass
class SampledFrames:
    full: list[np.ndarray]  # n frames (H, W, 3) uint8 RGB at full resolution (of the region)
    small: list[np.ndarray]  # the same frames downscaled for face detection
    scale: float  # full / small
    times: np.ndarray  # the target times (seconds from the clip start)
    offset_x: int = 0  # left edge of the region in the original frame


def sample_frames(path: str | Path, n: int = 15, span: float = 3.6, small_height: int = 288,
                  segment: Segment | None = None, region: tuple[float, float] | None = None) -> SampledFrames:
    """Decode only up to the last needed frame and convert only the ``n`` chosen ones.

    ``region`` (x0, x1) keeps a horizontal slice of each frame, as fractions of its width
    (IEMOCAP: the speaking actor's half).
    """
    path = Path(path)
    with _open(path) as container:
        stream, start_time = _first_stream(container, "video", path)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise AttsfError(f"{path}: video stream has no frame size (unsupported codec?)")
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        if segment is not None:
            lo, hi = segment
        else:
            lo = 0.0
            if stream.duration and stream.time_base:
                hi = float(stream.duration * stream.time_base)
            elif container.duration:
                hi = container.duration / av.time_base
            elif stream.frames:
                hi = stream.frames / fps
            else:
                raise AttsfError(f"{path}: video duration unknown")
        if hi <= lo:
            raise AttsfError(f"{path}: video has zero length")
        times = frame_times(lo, hi, n, span)
        if times[0] > 2.0:
            container.seek(int((start_time + times[0] - 1.0) / stream.time_base), stream=stream, backward=True)
        x0, x1 = (round(region[0] * width), round(region[1] * width)) if region else (0, width)
        s_height = min(small_height, height)
        scale = height / s_height
        s_full, sx0 = round(width / scale), round(x0 / scale)  # the detection copy and the region in it
        s_width = max(2, round((x1 - x0) / scale))
        picked: list[av.VideoFrame] = []
        half = 0.5 / fps
        budget = int((hi + 2.0) * fps * 2) + 100  # frames past the stated end: timestamps that never get there
        try:
            for count, frame in enumerate(container.decode(stream)):
                t = (frame.time if frame.time is not None else 0.0) - start_time
                while len(picked) < n and t + half >= times[len(picked)]:
                    picked.append(frame)
                if len(picked) == n or t > hi + 2.0 or count > budget:
                    break
        except av.FFmpegError as exc:
            if not picked:
                raise AttsfError(f"{path}: cannot decode video ({_av_reason(exc)})") from None
        if not picked:
            raise AttsfError(f"{path}: no video frame decoded in {lo:.2f}-{hi:.2f} s")
        picked += [picked[-1]] * (n - len(picked))  # the stream ended before its stated duration
        full, small, cache = [], [], {}
        for frame in picked:
            if id(frame) not in cache:
                rgb = frame.to_ndarray(format="rgb24")[:, x0:x1]
                little = frame.reformat(width=s_full, height=s_height, format="rgb24").to_ndarray()
                cache[id(frame)] = (np.ascontiguousarray(rgb), np.ascontiguousarray(little[:, sx0 : sx0 + s_width]))
            full.append(cache[id(frame)][0])
            small.append(cache[id(frame)][1])
    return SampledFrames(full, small, scale, times, x0)
