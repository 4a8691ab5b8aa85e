"""From the clip cache to batches: fold files, the dataset, and the LightningDataModule."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from attsf.config import Config, DataConfig
from attsf.data import normalize
from attsf.data.cache import ClipCache, ClipRecord
from attsf.errors import AttsfError

log = logging.getLogger("attsf")
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- folds
def load_folds(name_or_path: str) -> dict:
    """A fold file: packaged by name (``ravdess_actor_5fold``) or a JSON path."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise AttsfError(f"{path}: fold file not found")
        text = path.read_text()
    else:
        pkg = resources.files("attsf.data") / "folds" / f"{name_or_path}.json"
        if not pkg.is_file():
            raise AttsfError(f"unknown fold file '{name_or_path}' (give a packaged name or a .json path)")
        text = pkg.read_text()
    doc = json.loads(text)
    if not isinstance(doc.get("folds"), list) or not doc["folds"]:
        raise AttsfError(f"{name_or_path}: a fold file needs a non-empty 'folds' list")
    return doc


def fold_count(data: DataConfig) -> int:
    """The runs a cross-validation of ``data`` trains per seed: one per fold of its fold
    file, or one with a predefined split (the cache's split field: IEMOCAP, CMU-MOSI)."""
    return 1 if data.protocol == "predefined" else len(load_folds(data.folds)["folds"])


def check_folds(data: DataConfig, folds: Sequence[int]) -> None:
    """A one-line error for a ``--folds`` entry that ``data`` does not have."""
    n_folds = fold_count(data)
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        have = ("a predefined split (data.protocol=predefined) is one fold, 0" if data.protocol == "predefined"
                else f"{data.folds} has {n_folds} folds")
        raise AttsfError(f"--folds: fold {bad[0]} is out of range ({have})")


def split_records(records: Sequence[ClipRecord], data: DataConfig) -> dict[str, list[ClipRecord]]:
    """Train/val/test records of ``data.fold`` (speaker folds) or of the cache's split field;
    with ``data.train_on=train+val`` the train split also holds the val records."""
    if data.protocol == "predefined":
        splits = {s: [r for r in records if r.split == s] for s in SPLITS}
    else:
        doc = load_folds(data.folds)
        if not 0 <= data.fold < len(doc["folds"]):
            raise AttsfError(f"data.fold={data.fold} is out of range: {data.folds} has {len(doc['folds'])} folds")
        fold = doc["folds"][data.fold]
        _check_disjoint(fold, data)
        present = {r.speaker for r in records}
        listed = {s for split in SPLITS for s in fold[split]}
        missing = sorted(listed - present)
        if missing:
            _warn_once(f"fold {data.fold}: speakers {' '.join(missing)} of {data.folds} are not in the cache")
        unlisted = sorted(present - listed)
        if unlisted:
            _warn_once(f"fold {data.fold}: cached speakers {' '.join(unlisted)} are in no split of {data.folds} "
                       "and are left out")
        splits = {s: [r for r in records if r.speaker in set(fold[s])] for s in SPLITS}
    for name, items in splits.items():
        if not items:
            raise AttsfError(f"the {name} split is empty (protocol={data.protocol}, folds={data.folds}, fold={data.fold})")
    if data.train_on == "train+val":
        splits["train"] = splits["train"] + splits["val"]
    return splits


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning about the data said once per process (a cv folder's 15 runs read 5 folds)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _check_disjoint(fold: dict, data: DataConfig) -> None:
    """A speaker in two splits of a fold would be trained or selected on and then tested."""
    for split in SPLITS:
        if not isinstance(fold.get(split), list):
            raise AttsfError(f"{data.folds}: fold {data.fold} needs a '{split}' list of speakers")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(map(str, fold[a])) & set(map(str, fold[b])))
        if both:
            raise AttsfError(f"{data.folds}: fold {data.fold} lists speaker {both[0]} in both {a} and {b}; "
                             "the splits of a fold must not share speakers")


# --------------------------------------------------------------------------- dataset
def face_augmentation(size: int):
    """The paper's training-time augmentation of face crops (§III-A): random horizontal and
    vertical flips, a random rotation (±10°) and a random zoom of 0.9-1.1x about the centre
    (the paper's crop), in one affine map that keeps the ``size`` x ``size`` frame. The zoom
    averages 1, so a face in training has the same expected scale as in evaluation, which
    sees the crops unchanged. One random draw per clip, applied to all its frames."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomAffine(degrees=10, scale=(0.9, 1.1)),
    ])


class ClipDataset(Dataset):
    """Items ``{"audio", "visual", "text", "label", "index"}`` for the records of one split;
    ``label`` is the class index, or with ``regression`` the record's ``extra["score"]``.
    ``speaker_stats`` (speaker -> feature statistics) z-scores each clip's features."""

    def __init__(self, cache: ClipCache, records: Sequence[ClipRecord], augment: bool = False,
                 preload: bool | None = None, regression: bool = False,
                 speaker_stats: dict[str, normalize.Stats] | None = None) -> None:
        self.cache, self.records, self.regression = cache, list(records), regression
        self.speaker_stats = speaker_stats
        if regression:
            unscored = [r.id for r in self.records if "score" not in r.extra]
            if unscored:
                raise AttsfError(f"{cache.root}: clip {unscored[0]} has no regression score (extra.score); "
                                 f"task=regression needs a cache with scores (e.g. MOSI)")
        visual = cache.settings.get("visual", {})
        kind = visual.get("kind", "none")
        self.augment = face_augmentation(visual.get("size", 224)) if augment and kind == "frames" else None
        preload = kind != "frames" if preload is None else preload
        self._items = [self._read(i) for i in range(len(self.records))] if preload else None

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, i: int) -> dict:
        record = self.records[i]
        item = dict(self.cache.load(record))
        if self.speaker_stats is not None:
            item = normalize.apply(item, self.speaker_stats[record.speaker])
        item["label"] = float(record.extra["score"]) if self.regression else self.cache.label_index(record)
        item["index"] = i
        return item

    def __getitem__(self, i: int) -> dict:
        item = dict(self._items[i]) if self._items is not None else self._read(i)
        if self.augment is not None and "visual" in item:
            frames = item["visual"].permute(0, 3, 1, 2)  # (T, 3, H, W), one random draw for all T
            item["visual"] = self.augment(frames).permute(0, 2, 3, 1).contiguous()
        if "visual" in item and item["visual"].dtype == torch.uint8:
            item["visual"] = item["visual"].permute(0, 3, 1, 2)  # (T, 3, H, W) for the encoder
        return item


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class MixedOrderSampler(EpochShuffleSampler):
    """One seeded order for every epoch, for evaluation batches: the cache lists a speaker's
    clips class by class, and L_sim fits a Gaussian over each batch, which a batch of one
    class and speaker turns into a near-zero variance and a loss of ~100 (it is ~0.5 on
    mixed batches of the same clips)."""

    def set_epoch(self, epoch: int) -> None:
        pass


class ClipDataModule(L.LightningDataModule):
    """The clips of ``cfg.data.fold``. ``splits`` names the splits the module holds at all:
    a tuning trial passes ``("train", "val")``, so that no test clip is ever read."""

    def __init__(self, cfg: Config, splits: tuple[str, ...] = SPLITS) -> None:
        super().__init__()
        self.cfg = cfg
        self.cache = ClipCache(cfg.data.cache)
        self.splits = {s: r for s, r in split_records(self.cache.records, cfg.data).items() if s in splits}
        self.datasets: dict[str, ClipDataset] = {}
        self._speaker_stats: dict[str, normalize.Stats] | None = None

    @property
    def labels(self) -> list[str]:
        return self.cache.labels

    @property
    def speaker_stats(self) -> dict[str, normalize.Stats] | None:
        """Per-speaker feature statistics (no labels used). ``normalize=speaker``: every
        speaker's own, over all splits (transductive: test speakers by their own clips);
        ``speaker_train``: the train speakers' own, and for validation and test speakers the
        pooled statistics of the train speakers, as ``attsf predict`` does for a new clip."""
        mode = self.cfg.data.normalize
        if mode != "none" and self._speaker_stats is None:
            if mode == "speaker":
                records = [r for rs in self.splits.values() for r in rs]
                self._speaker_stats = normalize.speaker_stats(self.cache, records)
            else:
                stats = normalize.speaker_stats(self.cache, self.splits["train"])
                fallback = normalize.pooled(stats.values())
                for r in (r for split in ("val", "test") for r in self.splits.get(split, [])):
                    stats.setdefault(r.speaker, fallback)
                self._speaker_stats = stats
        return self._speaker_stats

    def check_clips(self) -> None:
        """A one-line error naming the first clip file of the splits that does not read back."""
        records = [r for rs in self.splits.values() for r in rs]
        bad = self.cache.unreadable(records)
        if bad:
            path, reason = bad[0]
            more = f" (and {len(bad) - 1} more unreadable clip files)" if len(bad) > 1 else ""
            raise AttsfError(f"{path}: {reason}{more}; list them with `attsf inspect {self.cache.root} --verify` "
                             "and preprocess again (finished clips are kept)")

    def normalization(self) -> dict:
        """What a checkpoint needs to normalise a clip of an unknown speaker alike (the pooled
        statistics), and a speaker known from a few clips (``prior_clips``)."""
        if self.speaker_stats is None:
            return {}
        train = {r.speaker for r in self.splits["train"]}
        fallback = normalize.pooled(self.speaker_stats[s] for s in sorted(train))
        prior = normalize.prior_clips(self.cache, self.splits["train"])
        return {"kind": "speaker", "fallback": normalize.to_json(fallback),
                "prior_clips": {name: k.tolist() for name, k in prior.items()}}

    def dataset(self, split: str) -> ClipDataset:
        if split not in self.datasets:
            augment = split == "train" and self.cfg.data.augment
            self.datasets[split] = ClipDataset(self.cache, self.splits[split], augment=augment,
                                               regression=self.cfg.model.task == "regression",
                                               speaker_stats=self.speaker_stats)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in self.splits:
            self.dataset(split)

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self.dataset(split)
        bs = self.cfg.train.batch_size
        if shuffle and len(ds) < bs:
            raise AttsfError(f"the train split has {len(ds)} clips, fewer than one batch of {bs}")
        sampler = (EpochShuffleSampler if shuffle else MixedOrderSampler)(len(ds), self.cfg.train.seed)
        workers = self.cfg.data.num_workers if self.cfg.data.num_workers is not None else self.auto_workers()
        return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def auto_workers(self) -> int:
        """Loader processes when ``data.num_workers`` is unset: face frames on a GPU need
        several (each clip is 15 JPEG-sized crops to augment); feature caches sit in memory."""
        frames = self.cache.settings.get("visual", {}).get("kind") == "frames"
        return min(8, os.cpu_count() or 1) if frames and torch.cuda.is_available() else 0

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
