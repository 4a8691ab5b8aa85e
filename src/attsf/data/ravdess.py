"""RAVDESS (Livingstone & Russo 2018): file names, labels, and the audio + OpenFace-AU source.

File names follow ``MM-VV-EE-II-SS-RR-AA.ext``: modality (01 audio-video, 02 video only,
03 audio only), vocal channel (01 speech, 02 song), emotion, intensity, statement,
repetition, actor. attsf uses the speech part (VV = 01), eight classes.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attsf.data.audio import AudioConfig
from attsf.data.clips import ClipJob, ClipSource, PrepSettings
from attsf.errors import AttsfError

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
_NAME = re.compile(r"^(\d\d)-(\d\d)-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)$")


@dataclass(frozen=True)
class RavdessName:
    modality: str
    vocal: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def label(self) -> str:
        return LABELS[int(self.emotion) - 1]

    @property
    def av_id(self) -> str:
        """The id of the audio-video clip this file belongs to (modality 01)."""
        return "-".join(["01", self.vocal, self.emotion, self.intensity, self.statement, self.repetition, self.actor])


def parse_name(path: str | Path) -> RavdessName:
    stem = Path(path).stem
    match = _NAME.match(stem)
    if not match:
        raise AttsfError(f"{path}: name does not follow the RAVDESS scheme MM-VV-EE-II-SS-RR-AA")
    return RavdessName(*match.groups())


def read_au_table(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """OpenFace AU summary per clip: (column names, {clip id: float32 vector})."""
    path = Path(path)
    if not path.is_file():
        raise AttsfError(f"{path}: AU table not found")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0] != "clip":
            raise AttsfError(f"{path}: expected a CSV whose first column is 'clip'")
        rows = {}
        for n, row in enumerate(reader, start=2):
            try:
                rows[row[0]] = np.asarray([float(v) for v in row[1:]], dtype=np.float32)
            except ValueError:
                raise AttsfError(f"{path}: line {n} has a non-numeric value") from None
    return header[1:], rows


def media_sources(root: str | Path, audio_only: bool = False) -> tuple[list[ClipSource], list[tuple[str, str]]]:
    """Speech clips under ``root`` (``Actor_XX/`` folders): the audio-video files
    (``01-01-*.mp4``, audio from their own track), or with ``audio_only`` (or when there are
    none) the audio-only files (``03-01-*``, WAV or FLAC). Files whose name does not fit
    the scheme are returned as failures."""
    root = Path(root)
    if not root.is_dir():
        raise AttsfError(f"{root}: folder not found")
    videos = [] if audio_only else sorted(p for p in root.rglob("01-*") if p.suffix.lower() == ".mp4")
    files = videos or sorted(p for p in root.rglob("03-*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise AttsfError(f"{root}: no RAVDESS clips (01-*.mp4, or 03-*.wav|flac) found")
    sources, failures = [], []
    for path in files:
        try:
            name = parse_name(path)
        except AttsfError as exc:
            failures.append((str(path), str(exc).split(": ", 1)[1]))
            continue
        if name.vocal != "01":
            continue  # song
        extra = {"intensity": name.intensity, "statement": name.statement, "repetition": name.repetition}
        sources.append(ClipSource(media=path, clip_id=path.stem, label=name.label, speaker=name.actor, extra=extra))
    return sources, failures


def audio_au_jobs(root: str | Path, au_csv: str | Path,
                  audio_cfg: AudioConfig) -> tuple[list[ClipJob], list[tuple[str, str]], dict, str]:
    """The audio-only speech files joined by clip id with the OpenFace AU table, each AU
    vector a visual feature sequence of length 1: jobs, unusable files, the index's
    visual entry, and a line saying how many files joined the table."""
    names, table = read_au_table(au_csv)
    sources, failures = media_sources(root, audio_only=True)
    settings = PrepSettings(audio=audio_cfg, visual="features")
    jobs = []
    for src in sources:
        av_id = parse_name(src.media).av_id
        au = table.get(av_id)
        if au is None:
            failures.append((str(src.media), f"no row for clip {av_id} in the AU table"))
            continue
        jobs.append(ClipJob(replace(src, clip_id=av_id, features=au[None, :]), settings))
    visual = {"kind": "features", "dim": len(names), "names": names, "source": str(au_csv)}
    joined = f"{len(jobs)} of {len(sources)} speech files joined the AU table of {len(table)} rows"
    return jobs, failures, visual, joined
