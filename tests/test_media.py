"""Decoding and face cropping on real encoded media made by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from attsf.data.audio import AudioConfig
from attsf.data.faces import FaceConfig, FaceCropper, iou, square_box
from attsf.data.media import decode_audio, frame_times, probe, sample_frames
from attsf.data.synthetic import Actor, talking_clip, write_media
from attsf.errors import AttsfError


def counting(cropper: FaceCropper) -> list[int]:
    """Record how many frames each call of the real MTCNN receives."""
    sizes, detect = [], cropper.mtcnn.detect
    cropper.mtcnn.detect = lambda images, *a, **k: sizes.append(len(images)) or detect(images, *a, **k)
    return sizes


@pytest.fixture(scope="module")
def clip720(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    actor = talking_clip(path, label="angry", seconds=4.0)
    return path, actor


@pytest.fixture
def cropper():
    return FaceCropper(FaceConfig())


def test_probe_and_audio(clip720):
    path, _ = clip720
    info = probe(path)
    assert (info.width, info.height, info.has_audio, info.has_video) == (1280, 720, True, True)
    assert info.fps == pytest.approx(30) and info.duration == pytest.approx(4.0, abs=0.1)
    y = decode_audio(path, 16000)
    assert y.dtype == np.float32 and abs(len(y) / 16000 - 4.0) < 0.1 and np.abs(y).max() > 0.05
    part = decode_audio(path, 16000, segment=(1.0, 2.5))
    assert abs(len(part) - 24000) <= 160


def test_frame_times_are_uniform_over_the_centre():
    t = frame_times(0.0, 4.0, 15, 3.6)
    assert len(t) == 15 and t[0] == pytest.approx(0.2 + 0.12) and t[-1] == pytest.approx(3.8 - 0.12)
    assert np.allclose(np.diff(t), 0.24)
    short = frame_times(1.0, 2.0, 15, 3.6)  # shorter than the span: all of it
    assert short[0] > 1.0 and short[-1] < 2.0


def test_mtcnn_finds_the_moving_face(clip720, cropper):
    path, actor = clip720
    frames = sample_frames(path, 15, 3.6, small_height=288)
    assert len(frames.full) == 15 and frames.full[0].shape == (720, 1280, 3) and frames.small[0].shape == (288, 512, 3)
    calls = counting(cropper)
    found = cropper.detect(frames.small)
    assert all(b is not None for b in found)
    overlaps = [iou([v * frames.scale for v in box], actor.face_box(t)) for box, t in zip(found, frames.times)]
    assert min(overlaps) > 0.6, overlaps
    assert calls == [5]  # key frames 0, 4, 8, 12, 14; steady motion, interpolated between them
    crops = cropper(frames.full, frames.small, frames.scale, str(path))
    assert crops.frames.shape == (15, 224, 224, 3) and crops.frames.dtype == np.uint8
    assert crops.fallback_frames == 0
    # the face moves right by 35 % of the width over the clip: so do the crops
    assert crops.boxes[-1][0] - crops.boxes[0][0] > 300


def test_key_frames_interpolate_a_face_that_hardly_moves(tmp_path, cropper):
    actor = Actor(x=300, y=40, size=640, vx=12.0, vy=3.0)
    path = write_media(tmp_path / "still.mp4", actors=[actor], seconds=4.0)
    frames = sample_frames(path, 15, 3.6, small_height=288)
    calls = counting(cropper)
    found = cropper.detect(frames.small)
    assert calls == [5]  # only the key frames went through MTCNN
    overlaps = [iou([v * frames.scale for v in box], actor.face_box(t)) for box, t in zip(found, frames.times)]
    assert min(overlaps) > 0.6, overlaps
    every = FaceCropper(FaceConfig(detect_stride=1))
    calls = counting(every)
    reference = every.detect(frames.small)
    assert calls == [15]
    assert min(iou(a, b) for a, b in zip(found, reference)) > 0.85


def test_key_frames_detect_again_where_the_face_jumps(tmp_path, cropper):
    left, right = Actor(x=60, y=40, size=600), Actor(x=620, y=80, size=560)
    clips = [sample_frames(write_media(tmp_path / f"{i}.mp4", actors=[a], seconds=4.0), 15, 3.6, small_height=288)
             for i, a in enumerate((left, right))]
    small = clips[0].small[:7] + clips[1].small[7:]  # a cut between frames 6 and 7
    calls = counting(cropper)
    found = cropper.detect(small)
    assert calls == [5, 3]  # the key frames, then 5-7 around the cut
    truth = [left.face_box(t) for t in clips[0].times[:7]] + [right.face_box(t) for t in clips[1].times[7:]]
    overlaps = [iou([v * clips[0].scale for v in box], true) for box, true in zip(found, truth)]
    assert min(overlaps) > 0.6, overlaps


def test_fallback_to_nearest_box_then_error(clip720, cropper):
    path, _ = clip720
    frames = sample_frames(path, 15, 3.6, small_height=288)
    blank = [np.full_like(f, 128) for f in frames.small]
    small = frames.small[:5] + blank[5:]  # faces only in the first five frames
    crops = cropper(frames.full, small, frames.scale, "x")
    assert crops.fallback_frames == 10 and crops.detected == [True] * 5 + [False] * 10
    assert crops.boxes[14] == crops.boxes[4]  # nearest detected frame's box
    with pytest.raises(AttsfError, match="no face found"):
        cropper(frames.full, blank, frames.scale, "x")
    lenient = FaceCropper(FaceConfig(require_face=False))
    centre = lenient(frames.full, blank, frames.scale, "x")
    assert centre.fallback_frames == 15 and centre.boxes[0] == (280.0, 0.0, 1000.0, 720.0)


def test_square_box_stays_inside():
    assert square_box((0, 0, 100, 50), 0.2, 640, 360) == (0.0, 0.0, 120.0, 120.0)
    x0, y0, x1, y1 = square_box((600, 300, 640, 360), 0.5, 640, 360)
    assert x1 <= 640 and y1 <= 360 and x1 - x0 == pytest.approx(90)


def test_bad_media_errors(tmp_path, clip720):
    path, _ = clip720
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(path.read_bytes()[:4000])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video\n" * 20)
    unreadable = "not a readable media file"
    for bad, reason in [(truncated, unreadable), (empty, "zero length"), (text, unreadable),
                        (tmp_path / "missing.mp4", "file not found")]:
        with pytest.raises(AttsfError, match=reason) as exc:
            sample_frames(bad)
        assert str(exc.value).startswith(str(bad)) and "\n" not in str(exc.value)


def test_audio_config_frames_match():
    assert AudioConfig().n_frames == 121
