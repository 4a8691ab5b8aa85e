"""Emotion of a raw clip from a trained run: the Python API behind ``attsf predict`` and
``attsf serve``.

    from attsf.predict import EmotionRecognizer
    rec = EmotionRecognizer.from_pretrained("runs/demo/run")
    result = rec.predict("clip.mp4")
    result.label, result.probabilities, result.audio_probabilities, result.timings

A clip is prepared exactly as the run's training cache was (the preprocessing settings
travel in the checkpoint sidecar): MFCC of the audio track, 15 MTCNN face crops (or
EfficientFace features); a run trained with ``data.normalize=speaker`` z-scores the
features with its training speakers' pooled statistics. A clip without a video stream (or
without a face in it) is answered by the audio head alone, one without audio (or without
speech in it) by the visual head; the fused head needs both. A clip with neither a face
nor ``min_speech_seconds`` of speech gets no label: ``note`` says "no speech detected".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attsf.card import SYNTHETIC, model_card
from attsf.config import Config
from attsf.data import normalize
from attsf.data.audio import mfcc
from attsf.data.clips import PrepSettings, clip_faces
from attsf.data.media import probe, read_audio
from attsf.efficientface import EfficientFace
from attsf.errors import AttsfError
from attsf.evaluate import MODEL_FILE, model_from_weights, open_run
from attsf.io import read_json
from attsf.model import alone_logits
from attsf.speech import MIN_SPEECH_S, speech_seconds


@dataclass
class Prediction:
    path: str
    label: str | None = None  # from the fused head, or the only head the clip's modalities allow
    probabilities: dict[str, float] | None = None  # fused head (or that one head); None: no answer
    audio_probabilities: dict[str, float] | None = None  # from the audio alone (fallback network or AVAM head)
    visual_probabilities: dict[str, float] | None = None  # from the visual input alone
    # a speaker-normalised model: the clips of this speaker whose statistics normalised the
    # input (enrolment), or None: the training speakers' pooled statistics (a new speaker)
    speaker_clips: int | None = None
    modalities: list[str] = field(default_factory=list)
    face_boxes: list[list[float]] = field(default_factory=list)  # per frame, x0 y0 x1 y1 full-frame pixels
    face_detected: list[bool] = field(default_factory=list)  # per frame: MTCNN found the face (else a fallback box)
    face_times: list[float] = field(default_factory=list)  # per frame: seconds from the clip start
    fallback_frames: int = 0
    speech_seconds: float | None = None  # voiced audio found by the speech detector
    note: str | None = None  # what the answer rests on when a modality was left out, or why there is none
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    error: str | None = None
    faces: np.ndarray | None = field(default=None, repr=False)  # (T, H, W, 3) uint8 crops

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("faces")
        return d

    def to_json(self) -> dict:
        """What ``--json`` and the API answer: probabilities in % (the unit of the model card's
        accuracies), timings in whole milliseconds, null where there is no answer."""
        d = self.to_dict()
        for key in ("probabilities", "audio_probabilities", "visual_probabilities"):
            d[key] = None if d[key] is None else {k: round(100 * v, 2) for k, v in d[key].items()}
        d["timings_ms"] = {k: round(1000 * v) for k, v in d.pop("timings").items()}
        return d


# fewer clips of a speaker than this give statistics that do worse than the training
# speakers' pooled ones (ravdess-speech, 4 held-out actors: 48 % with 1 clip, 53 % with 3,
# 57 % with 5, against 56.7 % with none)
MIN_ENROL_CLIPS = 5


@dataclass(frozen=True)
class SpeakerStats:
    """A speaker's input statistics (``normalize.Stats``) and how many clips they came from;
    ``to_json`` stores them (``EmotionRecognizer.speaker_from_json`` reads them back)."""

    stats: normalize.Stats
    clips: int

    def to_json(self) -> dict:
        return {"clips": self.clips, "statistics": normalize.to_json(self.stats)}


def _softmax(logits: torch.Tensor, labels: list[str]) -> dict[str, float]:
    probs = torch.softmax(logits.float(), -1)
    if not torch.isfinite(probs).all():  # never an answer of NaNs
        raise AttsfError("the network answered with non-finite values")
    return {k: round(float(v), 6) for k, v in zip(labels, probs.tolist())}


class EmotionRecognizer:
    def __init__(self, cfg: Config, labels: list[str], model: torch.nn.Module, preprocessing: dict,
                 device: str = "cpu", card: dict | None = None) -> None:
        self.cfg, self.labels, self.device, self.preprocessing = cfg, labels, device, preprocessing
        self.max_seconds: float | None = None  # longer clips are refused while decoding (serve sets it)
        self.card = card or {}  # what the model is (card.py): run, training data, accuracy, chance
        # audio with less speech than this is not used; None: no check (the demo's generated
        # voices are not speech a detector recognises)
        self.min_speech_seconds: float | None = None if self.card.get("dataset") in SYNTHETIC else MIN_SPEECH_S
        # channels-last weights: the per-frame EfficientFace runs ~25 % faster on CPU (oneDNN), same outputs
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        try:
            prep = PrepSettings.from_index(preprocessing)
        except AttsfError as exc:
            raise AttsfError(f"this run cannot take raw clips: {exc}") from None
        if cfg.model.modalities == "a":  # an audio network takes no visual input, whatever its cache held
            prep = replace(prep, visual="none")
        if prep.visual == "features":
            raise AttsfError("this run was trained on precomputed visual features (e.g. an AU table); "
                             "raw clips need a run trained on face frames or EfficientFace features")
        self.prep = replace(prep, faces=replace(prep.faces, require_face=False))  # answer even without a face
        # a run trained with data.normalize=speaker: the training speakers' pooled statistics
        norm = preprocessing.get("normalization") or {}
        self.norm_stats = normalize.from_json(norm["fallback"]) if norm.get("kind") == "speaker" else {}
        # how many clips of a speaker weigh as much as the pooled statistics (runs of before 2026-12-04: none)
        self.prior_clips = {k: torch.tensor(v) for k, v in norm.get("prior_clips", {}).items()}
        self.encoder = None
        if prep.visual == "efficientface":
            from attsf.efficientface import FaceEncoder

            self.encoder = FaceEncoder(prep.weights)
        self.cropper = None
        if prep.visual != "none":
            from attsf.data.faces import FaceCropper

            self.cropper = FaceCropper(self.prep.faces, device=device)

    @property
    def visual_kind(self) -> str:
        """The visual input the model takes: "frames", "features" (EfficientFace) or "none"."""
        return {"faces": "frames", "efficientface": "features"}.get(self.prep.visual, "none")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None,
                        allow_unfinished: bool = False) -> EmotionRecognizer:
        """A run directory (its kept weights) or a ``.safetensors`` weights file with its
        ``.json`` sidecar. The weights of a run stopped before its end are refused unless
        ``allow_unfinished`` (the card then says "unfinished, epoch k of n")."""
        from attsf.export import packaged_model, packaged_models

        path = Path(path)
        if not path.exists() and (packaged := packaged_model(str(path))):  # a packaged model by name
            path = packaged
        if not path.exists():
            raise AttsfError(f"{path}: not a run directory, a weights file or a packaged model "
                             f"({', '.join(packaged_models()) or 'none installed'})")
        if path.is_dir():  # a run directory: opened as evaluate does
            run = open_run(path)
            weights, cfg, labels, model = path / MODEL_FILE, run.cfg, run.labels, run.model
            side = read_json(weights.with_suffix(".json"))
        else:
            weights = path
            cfg, side, model = model_from_weights(path)
            labels = list(side["labels"])
        preprocessing = side.get("preprocessing") or _cache_settings(cfg)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        card = model_card(weights, side)
        if card["unfinished"] and not allow_unfinished:
            raise AttsfError(f"{path}: this run is {card['unfinished']} (stopped before its end); finish it with "
                             "`attsf train --resume RUN_DIR`, or pass --allow-unfinished to use these weights")
        return cls(cfg, labels, model, preprocessing, device, card)

    # ------------------------------------------------------------------ inference
    def prepare(self, path: str | Path, speaker: SpeakerStats | None = None) -> tuple[Prediction, dict[str, torch.Tensor]]:
        """The clip's model inputs, normalised with ``speaker``'s statistics where given."""
        result, arrays = self._read(Path(path))
        return result, self._normalise(result, arrays, speaker)

    def _normalise(self, result: Prediction, arrays: dict[str, torch.Tensor],
                   speaker: SpeakerStats | None) -> dict[str, torch.Tensor]:
        """Inputs z-scored with ``speaker``'s statistics, the training speakers' pooled ones for the rest."""
        result.speaker_clips = speaker.clips if speaker else None
        enrolled = normalize.shrink(speaker.stats, speaker.clips, self.norm_stats, self.prior_clips) if speaker else {}
        return normalize.apply(arrays, self.norm_stats | enrolled)

    def _read(self, path: Path) -> tuple[Prediction, dict[str, torch.Tensor]]:
        """The clip's model inputs before normalisation (none for a modality left out, said in the note)."""
        result, arrays = Prediction(str(path)), {}
        info = probe(path)
        if not info.has_audio and not info.has_video:
            raise AttsfError(f"{path}: no audio or video stream")
        wants_video = self.visual_kind != "none"
        if not info.has_audio and not wants_video:
            raise AttsfError(f"{path}: no audio stream, and this run does not use video")
        left_out = []
        if info.has_audio:
            audio = self._speech_mfcc(path, result)
            if audio is not None:
                arrays["audio"] = audio
                result.modalities.append("audio")
            else:
                left_out.append(f"no speech detected ({result.speech_seconds:.1f} s of voiced audio, "
                                f"{self.min_speech_seconds:g} s needed)")
        if info.has_video and wants_video:
            visual, crops = clip_faces(path, self.prep, self.cropper, self.encoder, timings=result.timings)
            result.faces, result.fallback_frames, result.face_times = crops.frames, crops.fallback_frames, crops.times
            result.face_boxes, result.face_detected = crops.rounded_boxes(), list(crops.detected)
            if any(crops.detected):
                visual = torch.from_numpy(visual)
                arrays["visual"] = visual if self.encoder is not None else visual.permute(0, 3, 1, 2).contiguous()
                result.modalities.append("video")
            else:
                left_out.append(f"no face detected in any of the {len(crops.detected)} sampled frames")
        if left_out:
            answered = " + ".join(result.modalities)
            result.note = "; ".join(left_out) + (f": answered from the {answered} alone" if answered else "")
        return result, arrays

    def speaker_statistics(self, paths: list[str | Path]) -> SpeakerStats:
        """Enrolment: the statistics of one speaker's clips (their MFCCs over every frame), as
        training normalised each speaker with its own clips (``data.normalize=speaker``).
        Clips without speech are passed over; pass the result to ``predict_many(speaker=)``."""
        self._check_speaker_normalised()
        audios = []
        for path in paths:
            try:
                audios.append(self._speech_mfcc(Path(path), Prediction(str(path))) if probe(Path(path)).has_audio else None)
            except AttsfError:
                continue
        return self._speaker_of(audios)

    def _check_speaker_normalised(self) -> None:
        if not self.norm_stats:
            raise AttsfError("this model was not trained with speaker normalisation (data.normalize=speaker): "
                             "it has no use for a speaker's statistics")

    @staticmethod
    def _speaker_of(audios: Iterable[torch.Tensor | None]) -> SpeakerStats:
        items = [{"audio": a} for a in audios if a is not None]
        if not items:
            raise AttsfError("none of the clips has speech to take the speaker's statistics from")
        return SpeakerStats(normalize.clip_stats(items), len(items))

    def speaker_from_json(self, doc: Any) -> SpeakerStats:
        """Stored statistics of a speaker (``SpeakerStats.to_json``), checked against the
        inputs of this model."""
        form = "expected {clips, statistics: {audio: {mean, std}}} from speaker_statistics / POST /enrol"
        try:
            stats, clips = normalize.from_json(doc["statistics"]), int(doc["clips"])
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise AttsfError(f"speaker statistics: {form}") from None
        if isinstance(doc["clips"], bool) or doc["clips"] != clips or clips < 1:  # it weighs the statistics
            raise AttsfError(f"speaker statistics: clips: expected a whole number of at least 1, got {doc['clips']!r}")
        for name, (mean, std) in stats.items():
            want = self.norm_stats.get(name, (None,))[0]
            if want is None or mean.shape != want.shape or std.shape != want.shape:
                raise AttsfError(f"speaker statistics: '{name}' does not match this model's input ({form})")
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
                raise AttsfError(f"speaker statistics: '{name}' holds non-finite or non-positive values")
        return SpeakerStats(stats, clips)

    def _speech_mfcc(self, path: Path, result: Prediction) -> torch.Tensor | None:
        """The MFCC input of the clip's audio, or None (no MFCC computed) when it holds too
        little speech."""
        t = time.perf_counter()
        wave = read_audio(path, self.prep.audio.sample_rate, max_seconds=self.max_seconds)
        result.timings["decode_audio"] = time.perf_counter() - t
        if self.min_speech_seconds is not None:
            t = time.perf_counter()
            result.speech_seconds = round(speech_seconds(wave, self.prep.audio.sample_rate), 2)
            result.timings["speech"] = time.perf_counter() - t
            if result.speech_seconds < self.min_speech_seconds:
                return None
        t = time.perf_counter()
        audio = torch.from_numpy(mfcc(wave, self.prep.audio))
        result.timings["mfcc"] = time.perf_counter() - t
        return audio

    def _fill(self, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Zeros for a missing modality; only the other modality's head is reported then."""
        p = self.prep
        if "audio" not in arrays:
            arrays["audio"] = torch.zeros(p.audio.n_mfcc, p.audio.n_frames)
        if "visual" not in arrays and self.visual_kind == "frames":
            arrays["visual"] = torch.zeros(p.n_frames, 3, p.faces.size, p.faces.size, dtype=torch.uint8)
        elif "visual" not in arrays and self.visual_kind == "features":
            arrays["visual"] = torch.zeros(p.n_frames, EfficientFace.out_dim)
        return arrays

    @torch.inference_mode()
    def _forward(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {k: torch.stack([it[k] for it in items]).to(self.device) for k in items[0]}
        out = self.model(audio=batch["audio"], visual=batch.get("visual"))
        return {k: v.cpu() for k, v in out.items() if k.startswith("logits")}

    def _read_out(self, result: Prediction, out: dict[str, torch.Tensor], i: int) -> None:
        both = {"audio", "video"} <= set(result.modalities) or self.visual_kind == "none"
        audio, visual = alone_logits(out, "a"), alone_logits(out, "v")
        if audio is not None and "audio" in result.modalities:
            result.audio_probabilities = _softmax(audio[i], self.labels)
        if visual is not None and "video" in result.modalities:
            result.visual_probabilities = _softmax(visual[i], self.labels)
        if both:
            result.probabilities = _softmax(out["logits"][i], self.labels)
        else:
            result.probabilities = result.audio_probabilities or result.visual_probabilities
        if result.probabilities:
            result.label = max(result.probabilities, key=result.probabilities.get)

    def warmup(self) -> None:
        """Run every stage once on blank input (first-call costs: MTCNN, librosa, kernels)."""
        mfcc(np.zeros(self.prep.audio.n_samples, np.float32), self.prep.audio)
        if self.visual_kind != "none":
            side = self.prep.faces.detect_height
            blank = [np.full((side, side, 3), 128, np.uint8)] * 2
            self.cropper.detect(blank)
        self._forward([self._fill({})])

    def predict(self, path: str | Path, speaker: SpeakerStats | None = None) -> Prediction:
        """One clip (of the speaker ``speaker`` holds the statistics of, if given); a clip
        that cannot be used raises :class:`AttsfError` (one line)."""
        start = time.perf_counter()
        result, arrays = self.prepare(path, speaker)
        if not arrays:  # neither speech nor a face: no answer
            result.timings["total"] = time.perf_counter() - start
            return result
        t = time.perf_counter()
        out = self._forward([self._fill(arrays)])
        result.timings["forward"] = time.perf_counter() - t
        self._read_out(result, out, 0)
        result.timings["total"] = time.perf_counter() - start
        return result

    def predict_many(self, paths: list[str | Path], batch_size: int = 16, same_speaker: bool = False,
                     speaker: SpeakerStats | None = None) -> list[Prediction]:
        """Several clips, one forward pass per batch; a clip that cannot be used comes back
        with ``error`` set instead of stopping the others. ``same_speaker``: the clips are of
        one person, normalised with their own statistics (as the own-speaker figures are
        measured; each clip is read once); ``speaker``: statistics enrolled before
        (``speaker_statistics``)."""
        read: Iterable[tuple[Prediction, dict]] = (self._read_or_error(Path(p)) for p in paths)
        if same_speaker:
            self._check_speaker_normalised()
            read = list(read)
            speaker = self._speaker_of(arrays.get("audio") for _, arrays in read)
        results: list[Prediction] = []
        chunk: list[tuple[Prediction, dict]] = []
        for item in read:
            chunk.append(item)
            if len(chunk) == batch_size:
                results += self._answer(chunk, speaker)
                chunk = []
        return results + self._answer(chunk, speaker)

    def _read_or_error(self, path: Path) -> tuple[Prediction, dict[str, torch.Tensor]]:
        start = time.perf_counter()
        try:
            result, arrays = self._read(path)
        except AttsfError as exc:
            return Prediction(str(path), error=str(exc)), {}
        result.timings["total"] = time.perf_counter() - start
        return result, arrays

    def _answer(self, chunk: list[tuple[Prediction, dict]], speaker: SpeakerStats | None) -> list[Prediction]:
        """One forward pass over the clips of ``chunk`` that have inputs (in order, as given)."""
        normalised = [(result, self._normalise(result, arrays, speaker)) for result, arrays in chunk if not result.error]
        ready = [(result, self._fill(arrays)) for result, arrays in normalised if arrays]
        if ready:
            t = time.perf_counter()
            out = self._forward([arrays for _, arrays in ready])
            share = (time.perf_counter() - t) / len(ready)
            for i, (result, _) in enumerate(ready):
                result.timings["forward"] = share
                result.timings["total"] += share
                self._read_out(result, out, i)
        return [result for result, _ in chunk]


def _cache_settings(cfg: Config) -> dict:
    """Older runs: the preprocessing settings from the training cache's index."""
    index = Path(cfg.data.cache) / "index.json"
    if not index.is_file():
        raise AttsfError(f"the checkpoint does not record its preprocessing and {index} is not there")
    return read_json(index).get("settings", {})
