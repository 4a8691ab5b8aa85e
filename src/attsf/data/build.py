"""``attsf preprocess``: from a dataset folder (or manifest, or feature pickle) to a cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attsf.data.audio import AudioConfig
from attsf.data.clips import ClipJob, ClipSource, PrepSettings, read_features
from attsf.data.faces import FaceConfig
from attsf.data.media import probe
from attsf.data.preprocess import Summary, run_jobs
from attsf.errors import AttsfError

DATASETS = ("ravdess", "iemocap", "mosi", "manifest")


@dataclass(frozen=True)
class BuildOptions:
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    pad: str = "centre"
    visual_features: str = "frames"  # "frames" (224x224 face crops) or "efficientface" (1024-d per frame)
    weights: str | None = None
    text: str | None = None  # "minilm" or a BERT folder
    audio_only: bool = False
    au_csv: str | None = None  # RAVDESS: OpenFace AU table as the visual input
    allow_no_face: bool = False
    detect_height: int = 288
    min_face: int = 40
    progress: bool = True
    device: str = "auto"  # where MTCNN runs: "auto" (CUDA when there is one), "cpu", "cuda", "cuda:1"


def _device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise AttsfError(f"--device {spec}: no CUDA device here")
    return spec


def _settings(opts: BuildOptions, visual: str) -> PrepSettings:
    if visual == "faces" and opts.visual_features == "efficientface":
        if not opts.weights:
            raise AttsfError("--visual-features efficientface needs --weights (from `attsf convert-weights`)")
        if not Path(opts.weights).is_file():
            raise AttsfError(f"{opts.weights}: EfficientFace weights not found")
        visual = "efficientface"
    faces = FaceConfig(detect_height=opts.detect_height, min_face=opts.min_face, require_face=not opts.allow_no_face)
    return PrepSettings(audio=AudioConfig(pad=opts.pad), faces=faces, visual=visual, weights=opts.weights,
                        text=opts.text)


def _manifest_visual(sources: list[ClipSource], opts: BuildOptions) -> str:
    if opts.audio_only:
        return "none"
    if any(s.features is not None for s in sources):
        return "features"
    first = sources[0].media
    try:
        return "faces" if probe(first).has_video else "none"
    except AttsfError:
        return "faces"  # the clip's own job reports what is wrong with it


def build_cache(dataset: str, root: str | Path, out: str | Path, opts: BuildOptions = BuildOptions(),
                labels: list[str] | None = None) -> Summary:
    if dataset not in DATASETS:
        raise AttsfError(f"unknown dataset '{dataset}' (choose from {', '.join(DATASETS)})")
    common = {"workers": opts.workers, "shard": opts.shard, "progress": opts.progress, "device": _device(opts.device)}
    if dataset == "ravdess" and opts.au_csv:
        from attsf.data.ravdess import LABELS, audio_au_jobs

        audio_cfg = AudioConfig(pad=opts.pad)
        jobs, failures, visual, joined = audio_au_jobs(root, opts.au_csv, audio_cfg)
        settings = PrepSettings(audio=audio_cfg, visual="features").index_entry() | {"visual": visual}
        return run_jobs(jobs, out, dataset=dataset, labels=LABELS, settings=settings, failures=failures,
                        found=joined, **common)
    if dataset == "mosi" and Path(root).suffix == ".pkl":
        from attsf.data.mosi import LABELS, pickle_jobs

        jobs, dims = pickle_jobs(root)
        settings = {"audio": {"kind": "features", "dim": dims["audio"]},
                    "visual": {"kind": "features", "dim": dims["visual"]}, "source": str(root)}
        if dims["text"]:
            settings["text"] = {"model": "pickle", "dim": dims["text"]}
        return run_jobs(jobs, out, dataset=dataset, labels=LABELS, settings=settings, **common)
    visual = "none" if opts.audio_only else "faces"
    if dataset == "ravdess":
        from attsf.data.ravdess import LABELS as names
        from attsf.data.ravdess import media_sources

        sources, failures = media_sources(root, opts.audio_only)
        if sources and sources[0].media.suffix.lower() != ".mp4":
            visual = "none"
    elif dataset == "iemocap":
        from attsf.data.iemocap import LABELS as names
        from attsf.data.iemocap import sources as iemocap_sources

        sources, failures = iemocap_sources(root)
    elif dataset == "mosi":
        from attsf.data.mosi import LABELS as names
        from attsf.data.mosi import raw_sources

        sources, failures = raw_sources(root)
    else:
        from attsf.data.manifest import sources as manifest_sources

        sources, failures, names = manifest_sources(root)
        visual = _manifest_visual(sources, opts)
    names = labels or names
    unknown = sorted({s.label for s in sources} - set(names))
    if unknown:
        raise AttsfError(f"{root}: label(s) {', '.join(unknown)} are not in --labels {','.join(names)}")
    if not sources:
        raise AttsfError(f"{root}: no usable clips")
    settings = _settings(opts, visual)
    visual_dim = 0
    if visual == "features":
        with_features = next(s.features for s in sources if s.features is not None)
        visual_dim = read_features(with_features, settings.n_frames).shape[1]
    jobs = [ClipJob(s, settings) for s in sources]
    return run_jobs(jobs, out, dataset=dataset, labels=list(names), settings=settings.index_entry(visual_dim),
                    failures=failures, **common)
