"""``attsf tune``: settings chosen on the validation actors alone, with Optuna.

A study is a set of trials; each trial is one set of overrides drawn from a search space
(a YAML file) and is scored by its accuracy on the validation speakers, averaged over the
folds it is told to use. A trial trains each fold with ``train(splits=("train", "val"))``:
the test split is never loaded, so no test clip is read, normalised or hashed.

A config that refits on the validation speakers (``data.train_on=train+val``) cannot be
scored on them; its trials train on the fold's train speakers only and are scored on the
validation speakers, which are then an inner validation set held out of the refit's
training speakers (train + val). The chosen overrides are then used with the config as it
is, refit included.

The study lives in an Optuna storage: an SQLite file in the output folder by default, or
any storage URL (``postgresql://...``) so that several machines work on one study. Runs
are kept in ``OUT/trials/trial{n}/fold{k}``; a study interrupted at any point resumes with
the same command (a trial whose process died is retried with its parameters and its runs
resume from their last checkpoint). After each fold a trial reports its running mean, and a
trial whose mean falls below the median of the finished trials' at the same fold is
stopped (``attsf.pruning``).

Space file: one entry per dotted config key, a list of choices or a range::

    augment.feature_noise: [0.0, 0.4, 0.8]
    train.weight_decay: {low: 1.0e-5, high: 1.0e-1, log: true}
    train.max_epochs: {low: 15, high: 60, step: 15}
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from attsf.config import Config, with_values
from attsf.errors import AttsfError, Interrupted, interrupts_raise
from attsf.io import atomic_write_text, write_json

log = logging.getLogger("attsf")
trial_log = logging.getLogger("attsf.tune")  # one line per fold a trial finishes, from every worker
TUNING_SPLITS = ("train", "val")
STUDY_JSON = "study.json"
BEST_YAML = "best.yaml"  # the best trial as a config to train


@dataclass(frozen=True)
class Param:
    """One dimension of a search space."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        import optuna.distributions as d

        if self.choices is not None:
            return d.CategoricalDistribution(list(self.choices))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and (
                self.step is None or isinstance(self.step, int)):
            return d.IntDistribution(self.low, self.high, step=self.step or 1, log=self.log)
        return d.FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)

    def suggest(self, trial: Any) -> Any:
        import optuna.distributions as d

        dist = self.distribution()
        if isinstance(dist, d.CategoricalDistribution):
            return trial.suggest_categorical(self.key, list(dist.choices))
        if isinstance(dist, d.IntDistribution):
            return trial.suggest_int(self.key, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial.suggest_float(self.key, dist.low, dist.high, step=dist.step, log=dist.log)


def load_space(path: str | Path, cfg: Config) -> dict[str, Param]:
    """A search space file, each key checked against ``cfg`` (an unknown key or a choice of
    the wrong type is a one-line error naming the file)."""
    path = Path(path)
    spaces = resources.files("attsf") / "configs" / "spaces"
    packaged = spaces / f"{path}.yaml"
    if not path.is_file() and path.suffix not in (".yaml", ".yml") and packaged.is_file():
        path = Path(str(packaged))
    if not path.is_file():
        names = ", ".join(sorted(p.name.removesuffix(".yaml") for p in spaces.iterdir() if p.name.endswith(".yaml")))
        raise AttsfError(f"{path}: search space file not found (give a path or a packaged name: {names})")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise AttsfError(f"{path}: not valid YAML") from None
    if not isinstance(doc, dict) or not doc:
        raise AttsfError(f"{path}: a search space is a non-empty mapping of config keys to choices or ranges")
    space = {}
    for key, spec in doc.items():
        if isinstance(spec, list) and spec:
            param = Param(str(key), choices=tuple(spec))
            probes = spec
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log", "step"}:
            if not all(isinstance(spec[k], (int, float)) and not isinstance(spec[k], bool) for k in ("low", "high")) \
                    or not spec["low"] < spec["high"]:
                raise AttsfError(f"{path}: {key}: low and high must be numbers with low < high")
            param = Param(str(key), low=spec["low"], high=spec["high"], log=bool(spec.get("log", False)),
                          step=spec.get("step"))
            probes = [spec["low"], spec["high"]]
        else:
            raise AttsfError(f"{path}: {key}: expected a list of choices or {{low, high[, log][, step]}}")
        for value in probes:
            try:
                with_values(cfg, {str(key): value})
            except AttsfError as exc:
                raise AttsfError(f"{path}: {exc}") from None
        space[str(key)] = param
    return space


def trial_config(cfg: Config) -> Config:
    """What a trial trains: ``cfg``, with a refit on train + val replaced by training on the
    train speakers alone (the validation speakers are the inner validation set). A trial
    that keeps its last epoch scores the validation speakers once, at the end
    (``train.validate=end``: the same weights, a pass per epoch less)."""
    if cfg.data.train_on == "train+val":
        cfg = replace(cfg, data=replace(cfg.data, train_on="train"))
    if cfg.train.select == "last":
        cfg = replace(cfg, train=replace(cfg.train, validate="end"))
    return cfg


@dataclass
class Study:
    """What a tuning worker needs: the base config, its space and folds, and the storage."""

    cfg: Config
    space: dict[str, Param]
    folds: list[int]
    out: Path
    storage: str
    name: str
    sampler_seed: int = 0
    grid: bool = False  # every combination once (a space of choices no larger than --trials)
    grace_period: int = 90
    owner: str = ""  # the process whose workers run the trials (its trials, when it is interrupted)
    threads: int = 0  # a worker's threads per run (0: the config's); the study's config stays the user's

    def storage_obj(self) -> Any:
        import warnings

        import optuna

        if not self.storage.startswith(("sqlite", "postgresql", "mysql")):
            return self.storage

        def open_rdb() -> Any:
            from attsf.sqlite_storage import SQLiteStorage

            rdb = SQLiteStorage if self.storage.startswith("sqlite") else optuna.storages.RDBStorage
            with warnings.catch_warnings():  # the heartbeat is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return rdb(
                    self.storage, heartbeat_interval=min(30, self.grace_period), grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))

        for attempt in range(4):
            try:
                return open_rdb()
            except Exception as exc:  # noqa: BLE001 - only the race below is retried
                if not _tables_race(exc):
                    raise
                time.sleep(0.5 * (attempt + 1))
        return open_rdb()

    def load(self, worker: int = 0) -> Any:
        """The study; each worker's sampler is seeded apart (and apart from earlier sessions),
        so that parallel workers do not draw the same trials. A grid study tries each
        combination once (Optuna's grid sampler, whose order of the combinations must be the
        same in every worker and session); otherwise TPE after 8 random trials."""
        import optuna

        from attsf.pruning import FoldMedianPruner

        storage = self.storage_obj()
        if self.grid:  # one order of the combinations for every worker and session: a trial's grid id means one set
            sampler = optuna.samplers.GridSampler({k: list(p.choices) for k, p in self.space.items()},
                                                  seed=self.sampler_seed)
        else:
            seed = self.sampler_seed + 1000 * worker + _n_trials(storage, self.name)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
        return optuna.create_study(study_name=self.name, storage=storage, direction="maximize",
                                   sampler=sampler, pruner=FoldMedianPruner(n_startup_trials=4), load_if_exists=True)

    def objective(self, trial: Any) -> float:
        import optuna

        params = {key: p.suggest(trial) for key, p in self.space.items()}
        same = [t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.params == params]
        if same:  # the sampler drew a finished set again: its score, without training it twice
            trial.set_user_attr("same_as", same[0].number)
            for k, v in same[0].user_attrs.items():
                if k.startswith("val_accuracy_fold"):
                    trial.set_user_attr(k, v)
            return same[0].value
        runs = trial.user_attrs.get("runs", f"trial{trial.number}")  # a retried trial inherits it: runs resume
        trial.set_user_attr("runs", runs)
        trial.set_user_attr("owner", self.owner)
        trial.set_user_attr("interrupted", False)  # a retry starts afresh (it inherits its trial's marks)
        tree = trial_config(with_values(self.cfg, params))
        if self.threads:
            tree = replace(tree, train=replace(tree.train, threads=self.threads, progress=False))
        trial_log.info("trial %d: %s", trial.number, overrides_text(params))
        try:
            return self._score(trial, tree, runs)
        except Interrupted:  # failed by Optuna; retried, its runs resumed, when the study resumes
            trial.set_user_attr("interrupted", True)
            raise

    def _score(self, trial: Any, tree: Config, runs: str) -> float:
        """The trial's mean validation accuracy over the folds, reported after each (pruning).
        A fold the trial has a score for already (a retried trial's finished folds, or those
        of an unfinished trial of the record the study continues) is not trained again."""
        import optuna

        from attsf.reuse import resumable
        from attsf.train import train

        accs = []
        for step, k in enumerate(self.folds):
            scored = trial.user_attrs.get(f"val_accuracy_fold{k}")
            if scored is None:
                run_dir = self.out / "trials" / runs / f"fold{k}"
                fold_cfg = replace(tree, data=replace(tree.data, fold=k))
                resume = resumable(run_dir, fold_cfg, "another study used this --out: give each study its own --out")
                metrics = train(fold_cfg, run_dir, resume=resume, splits=TUNING_SPLITS)
                scored = metrics["val"]["accuracy"] * 100
                trial.set_user_attr(f"val_accuracy_fold{k}", scored)
            accs.append(scored)
            mean = sum(accs) / len(accs)
            trial.report(mean, step)
            trial_log.info("trial %d fold %d: val accuracy %.2f %% (mean so far %.2f)", trial.number, k, accs[-1], mean)
            if trial.should_prune():
                trial_log.info("trial %d pruned: under the median of earlier trials after %d fold(s)", trial.number,
                               step + 1)
                raise optuna.TrialPruned()
        return sum(accs) / len(accs)


def _tables_race(exc: Exception) -> bool:
    """Whether opening a storage failed because another machine was creating Optuna's tables
    in the same empty database at that moment (PostgreSQL: a duplicate key in its catalogue,
    or "already exists"); the tables are there a moment later."""
    import sqlalchemy.exc

    text = str(exc)
    return isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                            sqlalchemy.exc.OperationalError)) and ("already exists" in text or "duplicate key" in text)


def _n_trials(storage: Any, name: str) -> int:
    import optuna

    try:
        return len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:  # a new study
        return 0


def settle_retries(study: Study) -> list[int]:
    """Fail the trials whose process died (each is retried once, as a waiting trial with
    its parameters and runs), retry the trials stopped by SIGINT / SIGTERM (Optuna failed
    them: a grid study would lose their combination, any study their runs), and fail all
    but one waiting retry of the same runs (left by an attsf before ``sqlite_storage``'s
    lock, or a storage without row locks: two retries would train in one folder at once).
    Done once by the parent before its workers start. Returns the trial numbers failed as
    duplicates."""
    import warnings

    import optuna

    st = study.load()
    with warnings.catch_warnings():  # marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(st)
        retried = {t.system_attrs.get("failed_trial") for t in st.get_trials(deepcopy=False)}
        for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
            if t.user_attrs.get("interrupted") and t.number not in retried:
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(st, t)
    seen, dropped = set(), []
    for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        runs = t.user_attrs.get("runs")
        if runs in seen:
            st._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
            dropped.append(t.number)
        elif runs:
            seen.add(runs)
    return dropped


def _worker(study: Study, n_trials: int, threads: int, worker: int = 0) -> int:
    """One process's share of a study: trials until ``n_trials`` have finished or been pruned."""
    import optuna

    from attsf.errors import quiet_library_warnings

    quiet_library_warnings()
    # a failed trial's error reaches the user as one line (Optuna's warning carries its traceback)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = replace(study, threads=threads)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    st = study.load(worker)
    if len(st.get_trials(deepcopy=False, states=done)) < n_trials:  # the callback stops only after a trial
        # study.json / study.md follow the study: a user reads them while it runs (hours)
        st.optimize(study.objective, callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=done),
                                                lambda *_: summarise(study)])
    return len(st.trials)


def _worker_process(study: Study, n_trials: int, threads: int, worker: int) -> int:
    """``_worker`` in a process of its own (``--jobs`` > 1): its trial lines reach the
    terminal as a single process's do (a spawned process has no log handler)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[worker {worker}] %(message)s"))
    trial_log.addHandler(handler)
    trial_log.setLevel(logging.INFO)
    trial_log.propagate = False
    return _worker(study, n_trials, threads, worker)


def tune(cfg: Config, space_path: str | Path, n_trials: int, out: str | Path, folds: list[int] | None = None,
         jobs: int = 1, storage: str | None = None, name: str | None = None, sampler_seed: int = 0,
         record: str | Path | None = None) -> dict:
    """Run (or resume) a study to ``n_trials`` finished or pruned trials; write
    ``study.json`` (every trial, the best overrides, provenance) and ``study.md``.
    ``record``: a new study starts with that study.json's scored trials (``continue_from``)."""
    import optuna

    from attsf.data.datamodule import check_folds, fold_count

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "study created / loaded": attsf says it below
    out = Path(out)
    space = load_space(space_path, cfg)
    if cfg.model.task == "regression":
        raise AttsfError(f"{cfg.name}: attsf tune scores validation accuracy; a regression config (model.task="
                         "regression) has none to score")
    folds = list(range(fold_count(cfg.data))) if folds is None else folds
    check_folds(cfg.data, folds)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    choices_only = all(p.choices is not None for p in space.values())
    combinations = math.prod(len(p.choices) for p in space.values()) if choices_only else None
    study = Study(cfg, space, folds, out, storage, name or cfg.name, sampler_seed,
                  grid=combinations is not None and combinations <= n_trials)
    if study.grid:
        n_trials = combinations
    try:
        study.load()
    except Exception as exc:  # noqa: BLE001 - a URL Optuna cannot open, a driver missing, a server down
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AttsfError(f"--storage {storage}: cannot open it as an Optuna storage ({reason})") from None
    if record is not None:
        added = continue_from(study, record)
        if added:
            log.info("study %s starts with the %d scored trials of %s (not trained again)", study.name, added, record)
    _check_same_study(study)
    if cfg.data.train_on == "train+val":
        log.info("data.train_on=train+val: each trial trains on the fold's train speakers and is scored on its "
                 "validation speakers (an inner validation set held out of train + val); the test split is not loaded")
    else:
        log.info("each trial is scored on the validation speakers; the test split is not loaded")
    log.info("study %s: %d trials%s, folds %s, %d job(s) -> %s", study.name, n_trials,
             " (every combination of the space once)" if study.grid else "", folds, jobs, storage)
    settle_retries(study)
    study.owner = f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"
    try:
        with interrupts_raise():
            if jobs > 1:
                from attsf.pool import run_jobs

                threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // jobs)
                workers = [(f"tuning worker {i}", _worker_process, (study, n_trials, threads, i)) for i in range(jobs)]
                for _ in run_jobs(workers, jobs):
                    pass
            else:
                _worker(study, n_trials, cfg.train.threads)
    except Interrupted as exc:  # a pool has ended its workers by now
        stop_own_trials(study)
        summarise(study)  # the record of a study stopped before any trial finished, too
        raise exc.resumed_by(f"the same `attsf tune` command retries the unfinished trials of study "
                             f"'{study.name}' and resumes their runs") from None
    except AttsfError:  # a trial's error ended the pool: the other worker's trial is retried on resume
        stop_own_trials(study)
        summarise(study)
        raise
    return summarise(study)


def stop_own_trials(study: Study) -> None:
    """Mark the trials this process's workers were running as interrupted (failed, to be
    retried when the study resumes), at once: left running, they would wait for Optuna's
    heartbeat to go stale before a resumed study retried them, and a resumed study that
    ended first would list them as running for ever."""
    import optuna

    st = study.load()
    for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("owner") == study.owner:
            st._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            st._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)


def _settings(study: Study) -> dict:
    """What a study is of, as recorded in its storage and compared when it resumes."""
    from attsf.data.cache import ClipCache
    from attsf.provenance import cache_fingerprint

    ClipCache(study.cfg.data.cache)  # a cache that is not there: its one-line error
    index = cache_fingerprint(study.cfg.data.cache, content=False)["index_sha256"]
    return json.loads(json.dumps({"base_config": study.cfg.to_dict(), "folds": study.folds, "cache_index": index,
                                  "space": {k: _param_doc(p) for k, p in study.space.items()}}))


def _other_settings(study: Study, have: dict) -> str | None:
    """What differs between the settings a study was started with (``have``) and this one,
    as "another space", "another base config (train.lr=0.003 there, 0.01 here)"; None when
    nothing does. The base config is compared as settings: keys added to attsf since take
    their defaults; threads, devices and the like may differ between machines and sessions,
    and so may the cache's path (each machine its own copy), as long as the clips are the
    same (its index)."""
    from attsf.config import config_from_dict
    from attsf.reuse import config_differences

    want = _settings(study)
    diff = []
    if have.get("base_config"):
        diff = [d for d in config_differences(config_from_dict(have["base_config"]), study.cfg)
                if not d.startswith("data.cache=")]
    problems = {"base_config": diff or not have.get("base_config"),
                "space": want["space"] != have.get("space"),
                "folds": want["folds"] != have.get("folds"),
                "cache_index": have.get("cache_index") not in (None, want["cache_index"])}
    for k, bad in problems.items():
        if bad:
            detail = {"base_config": f" ({'; '.join(diff)})" if diff else "",
                      "cache_index": f" (clip index {have.get('cache_index')} there, {want['cache_index']} here)"}.get(k, "")
            return f"another {'cache' if k == 'cache_index' else k.replace('_', ' ')}{detail}"
    return None


def _check_same_study(study: Study) -> None:
    """A study resumed with another base config, space or folds would mix trials."""
    st = study.load()
    have = {k: st.user_attrs.get(k) for k in ("base_config", "space", "folds", "cache_index")}
    if all(v is None for v in have.values()):
        for k, v in _settings(study).items():
            st.set_user_attr(k, v)
        return
    other = _other_settings(study, have)
    if other:
        raise AttsfError(f"study '{study.name}' in {study.storage} was started with {other}; "
                         "give another --study name or --out")


def _read_record(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise AttsfError(f"{path}: study record not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AttsfError(f"{path}: not a study record ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trials"), list) or not isinstance(
            doc.get("provenance"), dict) or "space" not in doc or "folds" not in doc:
        raise AttsfError(f"{path}: not a study record (an attsf tune study.json has trials, space, folds, provenance)")
    return doc


def continue_from(study: Study, record: str | Path) -> int:
    """Start ``study`` from a record (the ``study.json`` of a study of the same settings),
    e.g. on another machine, or after its database was lost: the record's finished and
    pruned trials join the study as they were scored (parameters, per-fold validation
    accuracy, running means for the pruner; a grid study's combinations marked as tried)
    and are not trained again; its unfinished trials are trained first, with their
    parameters and without the folds they had finished. Only a new study starts from a
    record; the same command run again resumes it. Returns the number of trials added."""
    import hashlib

    import optuna

    record = Path(record)
    doc = _read_record(record)
    digest = hashlib.sha256(record.read_bytes()).hexdigest()[:16]
    st = study.load()
    if st.user_attrs.get("continued_from", {}).get("sha256") == digest:
        return 0
    if st.trials:
        raise AttsfError(f"{record}: study '{study.name}' in {study.storage} has trials already; a study starts "
                         "from a record only when it is new (give another --study name or --out)")
    prov = doc["provenance"]
    have = {"base_config": prov.get("config"), "space": doc["space"], "folds": doc["folds"],
            "cache_index": (prov.get("cache") or {}).get("index_sha256")}
    other = _other_settings(study, have)
    if other:
        raise AttsfError(f"{record}: the record's study has {other} than this one")
    dists = {k: p.distribution() for k, p in study.space.items()}
    grid_space = {k: list(study.space[k].choices) for k in sorted(study.space)} if study.grid else None
    grid = list(itertools.product(*grid_space.values())) if grid_space else []  # Optuna's order of the combinations
    numbers: dict[int, int] = {}
    added = 0
    for t in doc["trials"]:
        state = getattr(optuna.trial.TrialState, str(t.get("state")), None)
        if state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue  # failed, interrupted or running there: trained here
        accs = [t["val_accuracy"][f"fold{k}"] for k in study.folds if f"fold{k}" in t.get("val_accuracy", {})]
        attrs = {f"val_accuracy_fold{k}": t["val_accuracy"][f"fold{k}"] for k in study.folds
                 if f"fold{k}" in t.get("val_accuracy", {})}
        attrs |= {"from_record": t["number"], "minutes": t.get("minutes")}
        if t.get("same_as") in numbers:
            attrs["same_as"] = numbers[t["same_as"]]
        system = {}
        if grid_space is not None:
            combo = tuple(t["params"][k] for k in grid_space)
            system = {"search_space": grid_space, "grid_id": grid.index(combo)}
        try:
            frozen = optuna.trial.create_trial(
                state=state, value=t["value"], params=t["params"], distributions=dists, user_attrs=attrs,
                system_attrs=system, intermediate_values={i: sum(accs[:i + 1]) / (i + 1) for i in range(len(accs))})
        except (KeyError, ValueError, TypeError) as exc:
            raise AttsfError(f"{record}: trial {t.get('number')} does not fit the space ({exc})") from None
        numbers[t["number"]] = len(st.trials)
        st.add_trial(frozen)
        added += 1
    if grid_space is None:  # a grid trains the combinations it has not scored anyway
        retried = {t.get("retry_of") for t in doc["trials"]}
        for t in doc["trials"]:  # unfinished there (and not retried there): its parameters are trained first here
            if t.get("state") in ("RUNNING", "WAITING") or (t.get("state") == "FAIL" and t.get("interrupted")):
                if t["number"] not in retried:  # with the folds it finished there
                    st.enqueue_trial(t["params"], user_attrs={f"val_accuracy_{f}": v for f, v in
                                                              (t.get("val_accuracy") or {}).items()})
    for k, v in have.items():
        st.set_user_attr(k, v)
    st.set_user_attr("continued_from", {"record": str(record), "sha256": digest, "trials": added})
    return added


def _param_doc(p: Param) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items() if v not in (None, False)}


def summarise(study: Study) -> dict:
    """``study.json`` and ``study.md``: every trial's overrides, per-fold validation
    accuracy, state and time; the best trial; the provenance of the code and cache."""
    import optuna

    from attsf.provenance import provenance

    st = study.load()
    trials = []
    for t in st.get_trials(deepcopy=False):
        per_fold = {k.removeprefix("val_accuracy_"): v for k, v in t.user_attrs.items() if k.startswith("val_accuracy")}
        params = t.params or t.system_attrs.get("fixed_params", {})  # a waiting trial's are still to be drawn
        trials.append({"number": t.number, "state": t.state.name, "params": params, "value": t.value,
                       "val_accuracy": per_fold, "same_as": t.user_attrs.get("same_as"), "runs": t.user_attrs.get("runs"),
                       "retry_of": t.system_attrs.get("failed_trial"),  # a trial whose process died, run again
                       "interrupted": t.state == optuna.trial.TrialState.FAIL and bool(t.user_attrs.get("interrupted")),
                       "from_record": t.user_attrs.get("from_record"),  # scored in the study a record holds
                       "minutes": t.user_attrs.get("minutes") if t.user_attrs.get("from_record") is not None
                       else round(t.duration.total_seconds() / 60, 1) if t.duration else None})
    complete = [t for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    best = max(complete, key=lambda t: t.value) if complete else None
    refit = study.cfg.data.train_on == "train+val"
    summary = {
        "study": study.name, "storage": study.storage if not study.storage.startswith("sqlite") else "sqlite",
        "config": study.cfg.name, "folds": study.folds, "objective": "mean validation-speaker accuracy (%) over the folds",
        "inner_split": ("trials train on the fold's train speakers and are scored on its validation speakers "
                        "(the refit config trains on both)") if refit else None,
        "test_split_loaded": False,
        "space": {k: _param_doc(p) for k, p in study.space.items()},
        "trials": trials,
        "best": {"number": best.number, "value": best.value, "overrides": best.params,
                 "val_accuracy": {k.removeprefix("val_accuracy_"): v for k, v in best.user_attrs.items()
                                  if k.startswith("val_accuracy")}} if best else None,
        "provenance": provenance(study.cfg.to_dict(), study.cfg.data.cache, content=False),
    }
    write_json(study.out / STUDY_JSON, summary)
    atomic_write_text(study.out / "study.md", study_markdown(summary))
    if best:
        atomic_write_text(study.out / BEST_YAML, best_config_text(study, summary["best"]))
    return summary


def best_config_text(study: Study, best: dict) -> str:
    """``best.yaml``: the study's config with the best trial's overrides, whole (a refit
    config refits), named ``STUDY_best``: ``attsf cv OUT/best.yaml`` trains it."""
    cfg = with_values(study.cfg, best["overrides"])
    cfg = replace(cfg, name=f"{study.name}_best")
    head = (f"# study {study.name} of {study.cfg.name}, trial {best['number']}: {best['value']:.2f} % mean "
            f"validation-speaker accuracy over folds {', '.join(map(str, study.folds))} (test split never loaded)\n"
            f"# its overrides: {overrides_text(best['overrides'])}\n")
    return head + yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def study_markdown(summary: dict) -> str:
    keys = list(summary["space"])
    lines = [f"Study `{summary['study']}` of `{summary['config']}`: {summary['objective']}, folds "
             f"{', '.join(map(str, summary['folds']))}; the test split is never loaded.", ""]
    if summary["inner_split"]:
        lines += [f"Inner split: {summary['inner_split']}.", ""]
    lines += ["| trial | state | val acc % | " + " | ".join(keys) + " | min |",
              "| --- | --- | --- | " + " | ".join("---" for _ in keys) + " | --- |"]
    retried = {t["retry_of"]: t["number"] for t in summary["trials"] if t.get("retry_of") is not None}

    def state(t: dict) -> str:
        if t["state"] == "FAIL" and t["number"] in retried:
            return f"{'interrupted' if t.get('interrupted') else 'died'}, retried as {retried[t['number']]}"
        label = t["state"].lower()
        if t.get("retry_of") is not None:
            label += f" (retry of {t['retry_of']})"
        if t.get("same_as") is not None:
            label += f" (= trial {t['same_as']}, not trained again)"
        if t.get("from_record") is not None:
            label += f" (trial {t['from_record']} of the record)"
        return label

    ranked = sorted(summary["trials"], key=lambda t: (t["value"] is None, -(t["value"] or 0)))
    for t in ranked:
        value = f"{t['value']:.2f}" if t["value"] is not None else "-"
        lines.append(f"| {t['number']} | {state(t)} | {value} | "
                     + " | ".join(str(t["params"].get(k, "")) for k in keys) + f" | {t['minutes'] or ''} |")
    if summary["best"]:
        b = summary["best"]
        lines += ["", f"Best: trial {b['number']}, {b['value']:.2f} %: "
                  + " ".join(f"{k}={v}" for k, v in b["overrides"].items())]
    return "\n".join(lines) + "\n"


def overrides_text(params: dict[str, Any]) -> str:
    """``key=value`` overrides that ``attsf cv`` reads back as the same values."""
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else v}"
                    for k, v in params.items())
