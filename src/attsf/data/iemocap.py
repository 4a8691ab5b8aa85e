"""IEMOCAP (Busso et al. 2008) in its official release layout::

    Session1/dialog/avi/DivX/Ses01F_impro01.avi
    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt   "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[...]"
    Session1/dialog/transcriptions/Ses01F_impro01.txt  "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav

Four classes (the paper's protocol): neutral, happy (with excited merged in), sad, angry; utterances
with any other label are left out. The audio is the utterance's own WAV; the video is
cut from the dialogue's AVI by the utterance's time stamps.

Speaker side: each dialogue video shows both actors of a session side by side. The
actor whose gender letter matches the dialogue name (``Ses01F_*``: the female actor) is
recorded by the camera on the *left* half of the frame, the other on the right, so an
utterance ``..._F000`` of ``Ses01F_impro01`` takes its face from the left half and one
``..._M000`` from the right half (the convention of the public IEMOCAP preprocessing
scripts). The speaker id is session + gender (``Ses01F``).

Splits: sessions 1-4 train, session 5 test (the paper's protocol); the validation set is every tenth
dialogue of sessions 1-4 (sorted by name), so no dialogue is split across train and val.
"""

from __future__ import annotations

import re
from pathlib import Path

from attsf.data.clips import ClipSource
from attsf.errors import AttsfError

LABELS = ["neutral", "happy", "sad", "angry"]
CODES = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
_EVAL = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\t(Ses\d\d[FM]_\S+_([FM])\d+\S*)\t(\w+)\t")
_TRANS = re.compile(r"^(Ses\d\d[FM]_\S+_[FM]\d+\S*) \[[\d.]+-[\d.]+\]: ?(.*)$")
_DIALOG = re.compile(r"^Ses(\d\d)([FM])_")


def read_transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _TRANS.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def sources(root: str | Path, val_every: int = 10) -> tuple[list[ClipSource], list[tuple[str, str]]]:
    root = Path(root)
    if not root.is_dir():
        raise AttsfError(f"{root}: folder not found")
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    if not sessions:
        raise AttsfError(f"{root}: no Session1..5 folders (the official IEMOCAP layout)")
    out: list[ClipSource] = []
    failures: list[tuple[str, str]] = []
    for session in sessions:
        evals = sorted((session / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not evals:
            failures.append((str(session), "no dialog/EmoEvaluation/*.txt"))
        for n_dialog, ev in enumerate(evals):
            dialog = ev.stem
            m = _DIALOG.match(dialog)
            if not m:
                failures.append((str(ev), "name does not follow the IEMOCAP scheme SesNN[FM]_..."))
                continue
            session_no, left_gender = int(m.group(1)), m.group(2)
            video = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            texts = read_transcripts(session / "dialog" / "transcriptions" / f"{dialog}.txt")
            split = "test" if session_no == 5 else ("val" if n_dialog % val_every == val_every - 1 else "train")
            for line in ev.read_text(errors="replace").splitlines():
                e = _EVAL.match(line)
                if not e:
                    continue
                start, end, utt, gender, code = float(e.group(1)), float(e.group(2)), e.group(3), e.group(4), e.group(5)
                if code not in CODES:
                    continue
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not video.is_file():
                    failures.append((str(video), f"dialogue video missing for {utt}"))
                    continue
                region = (0.0, 0.5) if gender == left_gender else (0.5, 1.0)
                out.append(ClipSource(media=video, clip_id=utt, label=CODES[code], speaker=f"Ses{session_no:02d}{gender}",
                                      split=split, text=texts.get(utt, ""), segment=(start, end), region=region,
                                      audio=wav, extra={"session": session_no, "dialog": dialog, "code": code}))
    return out, failures
