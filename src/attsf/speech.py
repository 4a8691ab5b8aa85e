"""Is there speech in a clip? Seconds of voiced audio from Silero VAD (its TorchScript model
ships inside the pinned ``silero-vad`` wheel: nothing is downloaded). ``attsf predict`` and
``attsf serve`` answer "no speech detected" below ``MIN_SPEECH_S`` rather than name an
emotion for silence, noise or a click."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from attsf.data.audio import resample

MIN_SPEECH_S = 0.5  # RAVDESS sentences hold 1-2 s of voiced audio
VAD_RATE = 16000


@cache
def _vad() -> torch.nn.Module:
    import warnings

    threads = torch.get_num_threads()  # importing silero_vad sets torch to one thread
    with warnings.catch_warnings():  # its loader's deprecations (importlib path, torch.jit.load)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from silero_vad import load_silero_vad

        model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def speech_seconds(wave: np.ndarray, sample_rate: int) -> float:
    """Seconds of ``wave`` (mono float) that Silero VAD takes for speech."""
    from silero_vad import get_speech_timestamps

    wave = resample(wave, sample_rate, VAD_RATE)
    if len(wave) < VAD_RATE // 10:  # under 0.1 s: nothing to find
        return 0.0
    model = _vad()
    with torch.inference_mode():
        spans = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), model,
                                      sampling_rate=VAD_RATE)
    return sum(s["end"] - s["start"] for s in spans) / VAD_RATE
