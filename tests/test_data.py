import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED

from attsf.config import load_config
from attsf.data import normalize
from attsf.data.audio import AudioConfig, fit_length, mel_filterbank, mfcc, mfcc_from_file, resample
from attsf.data.cache import ClipCache
from attsf.data.datamodule import ClipDataModule
from attsf.data.preprocess import run_jobs
from attsf.data.ravdess import LABELS, audio_au_jobs, parse_name
from attsf.errors import AttsfError

AUDIO = SHARED / "ravdess_audio16k"
AU = SHARED / "ravdess_openface_au" / "ravdess_openface_au.csv"
needs_shared = pytest.mark.skipif(not AUDIO.is_dir() or not AU.is_file(),
                                  reason=f"shared RAVDESS data not found at {SHARED}")


def test_mfcc_shape_and_lengths():
    cfg = AudioConfig()
    assert cfg.n_samples == 57600 and cfg.n_frames == 121
    assert mfcc(np.zeros(16000, np.float32)).shape == (12, 121)
    assert mfcc(np.random.default_rng(0).normal(size=90000).astype(np.float32)).shape == (12, 121)
    y = np.arange(10, dtype=np.float32)
    assert fit_length(y, 4).tolist() == [3, 4, 5, 6]
    assert fit_length(y, 14).tolist()[:3] == [0, 0, 0] and fit_length(y, 14, "right").tolist()[-4:] == [0, 0, 0, 0]


def _librosa_mfcc(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    import librosa

    win, hop = round(cfg.sample_rate * cfg.window_ms / 1000), round(cfg.sample_rate * cfg.hop_ms / 1000)
    y = fit_length(y, cfg.n_samples, cfg.pad)
    return librosa.feature.mfcc(y=y, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=win, hop_length=hop,
                                win_length=win, window="hamming").astype(np.float32)


@pytest.mark.parametrize("cfg", [AudioConfig(), AudioConfig(sample_rate=22050, n_mfcc=20, window_ms=25, hop_ms=10),
                                 AudioConfig(sample_rate=8000, duration=1.0, pad="right")])
def test_mfcc_is_librosas_bit_for_bit(cfg):
    """Caches built before the MFCC was written out (with librosa) and after must match byte for byte."""
    import librosa

    rng = np.random.default_rng(1)
    t = np.arange(int(cfg.sample_rate * 2.5)) / cfg.sample_rate
    voice = (np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(3 * t))) * np.exp(-((t - 1.2) ** 2))).astype(np.float32)
    for y in (voice, rng.normal(scale=0.1, size=len(t)).astype(np.float32), np.zeros(100, np.float32)):
        assert np.array_equal(mfcc(y, cfg), _librosa_mfcc(y, cfg))
    assert np.array_equal(mel_filterbank(cfg.sample_rate, 1024), librosa.filters.mel(sr=cfg.sample_rate, n_fft=1024))
    for sr in (8000, 22050, 44100):
        x = voice[: cfg.sample_rate]
        assert np.array_equal(resample(x, cfg.sample_rate, sr),
                              librosa.resample(x, orig_sr=cfg.sample_rate, target_sr=sr, res_type="soxr_hq"))


@needs_shared
def test_mfcc_of_real_clips_is_librosas_bit_for_bit():
    clips = sorted(AUDIO.glob("Actor_*/*.flac"))[::60]
    assert len(clips) >= 20
    for clip in clips:
        y, _ = sf.read(clip, dtype="float32")
        assert np.array_equal(mfcc(y), _librosa_mfcc(y, AudioConfig())), clip.name


def test_name_parsing():
    name = parse_name("03-01-05-02-01-02-17.flac")
    assert name.label == "angry" and name.actor == "17" and name.av_id == "01-01-05-02-01-02-17"
    with pytest.raises(AttsfError, match="RAVDESS scheme"):
        parse_name("clip.wav")


def test_corrupt_audio_is_a_one_line_error(tmp_path):
    bad = tmp_path / "03-01-01-01-01-01-01.wav"
    bad.write_bytes(b"RIFF\x00\x00not audio")
    with pytest.raises(AttsfError, match="cannot decode audio"):
        mfcc_from_file(bad)


@needs_shared
def test_48k_wav_and_16k_flac_give_the_same_mfcc(tmp_path):
    import librosa

    flac = next(AUDIO.glob("Actor_01/*.flac"))
    y, _ = sf.read(flac, dtype="float32")
    wav = tmp_path / flac.with_suffix(".wav").name
    sf.write(wav, librosa.resample(y, orig_sr=16000, target_sr=48000), 48000, subtype="PCM_16")
    a, b = mfcc_from_file(flac), mfcc_from_file(wav)
    assert a.shape == b.shape == (12, 121)
    assert np.corrcoef(a[1:].ravel(), b[1:].ravel())[0, 1] > 0.99


@needs_shared
def test_shared_ravdess_audio_au_cache(tmp_path):
    root = tmp_path / "ravdess"
    for actor in ("Actor_02", "Actor_07"):
        (root / actor).mkdir(parents=True)
        for f in sorted((AUDIO / actor).glob("*.flac"))[:12]:
            (root / actor / f.name).symlink_to(f)
    jobs, failures, visual, joined = audio_au_jobs(root, AU, AudioConfig())
    assert len(jobs) == 24 and not failures and visual["dim"] == 35
    assert joined.startswith("24 of 24 speech files joined the AU table of ") and joined.endswith(" rows")
    summary = run_jobs(jobs, tmp_path / "cache", dataset="ravdess", labels=LABELS, settings={"visual": visual},
                       workers=2, progress=False)
    assert summary.done == 24 and not summary.failures
    cache = ClipCache(tmp_path / "cache")
    assert {r.speaker for r in cache.records} == {"02", "07"}
    record = next(r for r in cache.records if r.id == "01-01-01-01-01-01-02")
    assert record.label == "neutral"
    item = cache.load(record)
    assert item["audio"].shape == (12, 121) and item["visual"].shape == (1, 35)
    row = open(AU).read().split("\n01-01-01-01-01-01-02,")[1].split("\n")[0]
    assert np.allclose(item["visual"][0].numpy(), [float(v) for v in row.split(",")], atol=1e-6)
    again = run_jobs(jobs, tmp_path / "cache", dataset="ravdess", labels=LABELS, settings={}, progress=False)
    assert again.skipped == 24 and again.done == 0


def test_speaker_normalisation_z_scores_each_speaker(tiny_overrides, tiny_cache):
    cfg = load_config(None, [*tiny_overrides, "data.normalize=speaker"])
    dm = ClipDataModule(cfg)
    raw = ClipCache(tiny_cache)
    for split in ("train", "test"):
        ds = dm.dataset(split)
        for speaker in {r.speaker for r in ds.records}:
            idx = [i for i, r in enumerate(ds.records) if r.speaker == speaker]
            audio = torch.cat([ds[i]["audio"] for i in idx], dim=1)  # (12, all frames of the speaker)
            visual = torch.cat([ds[i]["visual"] for i in idx])  # (clips, 6)
            torch.testing.assert_close(audio.mean(1), torch.zeros(12), atol=1e-4, rtol=0)
            torch.testing.assert_close(audio.std(1, unbiased=False), torch.ones(12), atol=1e-4, rtol=0)
            torch.testing.assert_close(visual.mean(0), torch.zeros(6), atol=1e-4, rtol=0)
            before = raw.load(ds.records[idx[0]])["audio"]
            assert not torch.allclose(before, ds[idx[0]]["audio"])
    fallback = normalize.from_json(dm.normalization()["fallback"])
    train = {r.speaker for r in dm.splits["train"]}
    expected = torch.stack([dm.speaker_stats[s]["audio"][0] for s in train]).mean(0)
    torch.testing.assert_close(fallback["audio"][0], expected)
    assert ClipDataModule(load_config(None, tiny_overrides)).normalization() == {}


def test_a_speaker_known_from_few_clips_is_shrunk_towards_the_pooled_statistics(tiny_overrides, tiny_cache):
    """Enrolment's statistics: ``k`` per feature from the training speakers (spread of clip means
    within a speaker over spread of speaker means), then ``n / (n + k)`` of the speaker's own."""
    dm = ClipDataModule(load_config(None, [*tiny_overrides, "data.normalize=speaker"]))
    prior = dm.normalization()["prior_clips"]
    assert set(prior) == {"audio", "visual"} and len(prior["audio"]) == 12 and len(prior["visual"]) == 6
    clip_means: dict[str, list[np.ndarray]] = {}
    for r in dm.splits["train"]:
        clip_means.setdefault(r.speaker, []).append(dm.cache.load(r, ["audio"])["audio"].double().mean(1).numpy())
    means = [np.stack(m) for m in clip_means.values()]
    within = np.mean([m.var(0, ddof=1) for m in means], 0)
    between = np.stack([m.mean(0) for m in means]).var(0, ddof=1) - within / np.mean([len(m) for m in means])
    np.testing.assert_allclose(prior["audio"], within / np.maximum(between, normalize.EPS), rtol=1e-4)
    # the tiny speakers differ by chance only: a few of their clips weigh less than the pool
    assert np.median(prior["audio"]) > 4
    own = {"audio": (torch.full((2,), 2.0), torch.full((2,), 2.0)), "visual": (torch.ones(1), torch.ones(1))}
    pooled = {"audio": (torch.zeros(2), torch.ones(2))}
    one, three = (normalize.shrink(own, n, pooled, {"audio": torch.tensor([1.0, 3.0])}) for n in (1, 3))
    torch.testing.assert_close(one["audio"][0], torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(one["audio"][1], torch.tensor([2.5, 0.25 * 4 + 0.75]).sqrt())
    torch.testing.assert_close(three["audio"][0], torch.tensor([1.5, 1.0]))
    assert one["visual"] is own["visual"]  # no prior for it: kept


def test_speaker_train_normalises_unseen_speakers_with_the_train_pool(tiny_overrides, tiny_cache):
    dm = ClipDataModule(load_config(None, [*tiny_overrides, "data.normalize=speaker_train"]))
    own = ClipDataModule(load_config(None, [*tiny_overrides, "data.normalize=speaker"]))
    pool = normalize.from_json(dm.normalization()["fallback"])
    train = {r.speaker for r in dm.splits["train"]}
    for split in ("val", "test"):
        for r in dm.splits[split]:
            assert r.speaker not in train
            torch.testing.assert_close(dm.speaker_stats[r.speaker]["audio"][0], pool["audio"][0])
    for s in train:  # train speakers keep their own statistics
        torch.testing.assert_close(dm.speaker_stats[s]["audio"][0], own.speaker_stats[s]["audio"][0])
    test = dm.dataset("test")
    raw = ClipCache(tiny_cache).load(test.records[0])["audio"]
    expected = (raw - pool["audio"][0][:, None]) / pool["audio"][1][:, None]
    torch.testing.assert_close(test[0]["audio"], expected)


def test_training_and_evaluation_frame_faces_at_the_same_scale(tmp_path):
    """MTCNN's face box in augmented training frames and in the evaluation frames of the
    same clip: the mean sizes agree within 5 % (a fixed 90 % centre crop made them 11 % apart)."""
    from facenet_pytorch import MTCNN

    from attsf.data.clips import PrepSettings, face_crops
    from attsf.data.datamodule import face_augmentation
    from attsf.data.faces import FaceCropper
    from attsf.data.synthetic import talking_clip

    clip = tmp_path / "talk.mp4"
    talking_clip(clip, seconds=2.0)
    prep = PrepSettings()
    frames = torch.from_numpy(face_crops(clip, prep, FaceCropper(prep.faces)).frames)  # (15, 224, 224, 3) uint8
    mtcnn = MTCNN(image_size=224, post_process=False, select_largest=True, device="cpu")

    def widths(batch: torch.Tensor) -> list[float]:
        """Square root of the face box area per frame where MTCNN finds the face."""
        out = []
        for imgs in (batch, batch.flip(1)):  # a vertically flipped face is found once flipped back
            for boxes in mtcnn.detect(imgs.numpy())[0]:
                if boxes is not None:
                    out.append(float(np.sqrt((boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]))))
        return out

    evaluation = widths(frames)
    torch.manual_seed(0)
    augment = face_augmentation(224)
    training = [w for _ in range(6) for w in widths(augment(frames.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))]
    assert len(evaluation) == 15 and len(training) >= 75
    ratio = np.mean(training) / np.mean(evaluation)
    assert abs(ratio - 1) < 0.05, ratio


def test_evaluation_batches_mix_classes_in_one_order_every_epoch(tiny_overrides):
    """The cache lists clips class by class; evaluation batches must mix them (L_sim fits a
    Gaussian over each batch), in the same order every epoch; nothing is dropped."""
    dm = ClipDataModule(load_config(None, [*tiny_overrides, "train.batch_size=8"]))
    loader = dm.loader("val")
    first = next(iter(loader))["label"].tolist()
    assert len(set(first)) >= 3  # in cache order a batch of 8 holds 2 of the 4 classes
    loader.sampler.set_epoch(5)
    order = [i for b in loader for i in b["index"].tolist()]
    assert next(iter(loader))["label"].tolist() == first
    assert sorted(order) == list(range(len(dm.dataset("val"))))


def test_cache_fingerprint_does_not_depend_on_where_the_raw_files_were(tmp_path):
    import numpy as np

    from attsf.data.cache import ClipRecord, write_clip, write_index
    from attsf.provenance import cache_fingerprint

    prints = []
    for root in ("/data/a", "../elsewhere/b"):
        cache = tmp_path / root.replace("/", "_")
        for i in range(3):
            arrays = {"audio": np.full((12, 121), i, np.float32)}
            write_clip(cache, ClipRecord(id=f"c{i}", label="x", speaker="s", source=f"{root}/c{i}.wav"), arrays)
        write_index(cache, "d", ["x"], {})
        prints.append(cache_fingerprint(cache))
    assert prints[0]["index_sha256"] == prints[1]["index_sha256"]
    assert prints[0]["tensors_sha256"] == prints[1]["tensors_sha256"]
    write_clip(cache, ClipRecord(id="c0", label="x", speaker="s"), {"audio": np.full((12, 121), 9, np.float32)})
    assert cache_fingerprint(cache)["tensors_sha256"] != prints[1]["tensors_sha256"]  # the data does count


def test_a_fold_file_naming_absent_speakers_is_said_once_per_process(tiny_overrides, tiny_cache, tmp_path, caplog):
    """RAVDESS's fold file names actors 23 and 24, absent from a cache of actors 01-22: the
    warning came once per run, 15 times from `attsf evaluate` on a cv folder."""
    import json

    from attsf.data.datamodule import split_records

    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [{"train": ["01", "02", "03", "04", "99"], "val": ["05"], "test": ["06"]}]}))
    data = load_config(None, [*tiny_overrides, f"data.folds={folds}"]).data
    records = ClipCache(tiny_cache).records
    with caplog.at_level("WARNING", logger="attsf"):
        for _ in range(3):
            assert {r.speaker for r in split_records(records, data)["train"]} == {"01", "02", "03", "04"}
    said = [r.getMessage() for r in caplog.records if "not in the cache" in r.getMessage()]
    assert said == [f"fold 0: speakers 99 of {folds} are not in the cache"]
