"""attsf tune: settings chosen on validation speakers with the test clips out of reach."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from attsf.config import load_config, with_values
from attsf.errors import AttsfError
from attsf.train import train
from attsf.tune import load_space, trial_config, tune

SPACE = "train.max_epochs: [1, 2]\naugment.feature_noise: [0.0, 0.5]\n"


@pytest.fixture(scope="module")
def no_test_clips(tiny_cache, tmp_path_factory) -> Path:
    """The tiny cache without the clip files of speaker 06, the test speaker of both its
    folds: reading any test clip fails."""
    root = tmp_path_factory.mktemp("no_test") / "cache"
    shutil.copytree(tiny_cache, root)
    for clip in root.glob("clips/06-*.safetensors"):
        clip.unlink()
    folds = [{"train": ["01", "02", "03", "04"], "val": ["05"], "test": ["06"]},
             {"train": ["02", "03", "04", "05"], "val": ["01"], "test": ["06"]}]
    (root / "folds.json").write_text(json.dumps({"folds": folds}))
    return root


def _cfg(cache: Path, *extra: str):
    from conftest import TINY

    return load_config(None, TINY + [f"data.cache={cache}", f"data.folds={cache / 'folds.json'}", "train.seed=0",
                                     "data.train_on=train+val", "train.select=last", *extra])


def test_a_run_that_reads_the_test_split_fails_on_that_cache(no_test_clips, tmp_path):
    """The control: an ordinary run opens the test clips, so the cache above catches any read."""
    with pytest.raises(AttsfError, match="06-"):
        train(_cfg(no_test_clips, "train.max_epochs=1"), tmp_path / "run")


def test_tuning_trials_never_read_a_test_clip_and_the_study_resumes(no_test_clips, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "study"
    summary = tune(_cfg(no_test_clips), space, 3, out, folds=[0, 1])
    assert summary["test_split_loaded"] is False and "validation speakers" in summary["inner_split"]
    finished = [t for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    for t in summary["trials"]:
        if t["state"] == "COMPLETE" and t["same_as"] is None:
            accs = list(t["val_accuracy"].values())
            assert len(accs) == 2 and t["value"] == pytest.approx(sum(accs) / 2)
    metrics = json.loads(next(out.glob("trials/trial0/fold0/metrics.json")).read_text())
    assert "test" not in metrics and metrics["provenance"]["config"]["data"]["train_on"] == "train"
    assert summary["best"]["overrides"].keys() == {"train.max_epochs", "augment.feature_noise"}
    # the best trial as a config to train: the study's config (its refit too) with the trial's overrides
    best = load_config(out / "best.yaml")
    want = with_values(_cfg(no_test_clips), summary["best"]["overrides"])
    assert best.to_dict() == {**want.to_dict(), "name": "attsf_best"} and best.data.train_on == "train+val"
    # the same command with more trials continues the study: the first three are kept
    again = tune(_cfg(no_test_clips), space, 4, out, folds=[0, 1])
    assert [t["number"] for t in again["trials"]][:3] == [t["number"] for t in summary["trials"]]
    assert len([t for t in again["trials"] if t["state"] in ("COMPLETE", "PRUNED")]) == 4
    # a study that already has its trials: summarised again, no trial started
    assert len(tune(_cfg(no_test_clips), space, 4, out, folds=[0, 1])["trials"]) == len(again["trials"])
    with pytest.raises(AttsfError, match="another folds"):
        tune(_cfg(no_test_clips), space, 4, out, folds=[0])


def test_the_study_files_follow_a_running_study(tiny_cache, tmp_path):
    """A study runs for hours: each worker rewrites study.json and study.md after every
    trial it finishes, so they can be read before the study ends (they were written only
    at the end)."""
    from attsf.tune import Study, _worker, load_space

    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [1]\n")
    cfg = _cfg(tiny_cache, "train.threads=2", "train.progress=true")  # the worker trains with 1, no bar
    study = Study(cfg, load_space(space, cfg), [0], tmp_path / "s", f"sqlite:///{tmp_path / 'study.db'}", "s")
    _worker(study, 1, 1)
    metrics = json.loads((tmp_path / "s" / "trials" / "trial0" / "fold0" / "metrics.json").read_text())
    assert metrics["provenance"]["config"]["train"]["threads"] == 1
    summary = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"] and summary["best"]["number"] == 0
    assert "| 0 | complete |" in (tmp_path / "s" / "study.md").read_text()
    # best.yaml keeps the user's config: not the worker's threads or its progress bar turned off
    best = load_config(tmp_path / "s" / "best.yaml")
    assert (best.train.threads, best.train.progress) == (cfg.train.threads, cfg.train.progress) and best.name == "s_best"


def test_a_small_space_is_tried_whole_and_studies_do_not_share_runs(tiny_cache, tmp_path):
    """A space of choices no larger than --trials: each combination once (random draws
    repeated some and left others out). A second study given the same --out found the
    first one's trials/trial0 and took its finished run as its own trial's score."""
    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [1]\naugment.feature_noise: [0.0, 0.5]\naugment.mixup: [0.0, 0.4]\n")
    out = tmp_path / "study"
    summary = tune(_cfg(tiny_cache), space, 6, out, folds=[0])
    combos = [(t["params"]["augment.feature_noise"], t["params"]["augment.mixup"]) for t in summary["trials"]]
    assert sorted(combos) == [(0.0, 0.0), (0.0, 0.4), (0.5, 0.0), (0.5, 0.4)]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in summary["trials"])
    other = tmp_path / "other.yaml"
    other.write_text("train.max_epochs: [2]\n")
    clash = r"trial0/fold0: this run has other settings \(.*train.max_epochs=1 there.*another study used this --out"
    with pytest.raises(AttsfError, match=clash):
        tune(_cfg(tiny_cache), other, 1, out, folds=[0], name="another")


@pytest.mark.parametrize("url", ["bad://x", "postgresql://nobody@127.0.0.1:1/none"])
def test_a_storage_that_cannot_be_opened_is_one_line(tiny_cache, tmp_path, url):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    with pytest.raises(AttsfError, match=r"^--storage .*: cannot open it as an Optuna storage \(.+\)$"):
        tune(_cfg(tiny_cache), space, 1, tmp_path / "s", folds=[0], storage=url)


def test_a_study_resumes_across_attsf_versions_and_machines_but_not_other_settings(tiny_cache, tmp_path):
    """The base config recorded by an older attsf lacks keys added since: they take their
    defaults and the study resumes (it was refused as 'another base config'); a machine
    with its copy of the cache at another path joins (it was refused); another set of
    clips, or a setting that differs, is refused, named."""
    from attsf.tune import Study, _check_same_study

    cfg = _cfg(tiny_cache)
    study = Study(cfg, {}, [0], tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "s")
    _check_same_study(study)
    st = study.load()
    old = st.user_attrs["base_config"]
    del old["train"]["validate"]
    st.set_user_attr("base_config", old)
    _check_same_study(study)
    # another machine: its own copy of the cache elsewhere, the same clips
    copy = tmp_path / "elsewhere" / "cache"
    shutil.copytree(tiny_cache, copy)
    study.cfg = with_values(cfg, {"data.cache": str(copy)})
    _check_same_study(study)
    index = json.loads((copy / "index.json").read_text())
    index["clips"] = index["clips"][1:]
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(AttsfError, match=r"another cache \(clip index \w+ there, \w+ here\)"):
        _check_same_study(study)
    study.cfg = with_values(cfg, {"train.lr": 0.01})
    with pytest.raises(AttsfError, match=r"another base config \(train.lr=0.003 there, 0.01 here\)"):
        _check_same_study(study)


def test_trials_of_a_last_epoch_config_validate_at_the_end_only(tiny_cache):
    cfg = _cfg(tiny_cache)
    assert trial_config(cfg).train.validate == "end" and cfg.train.validate == "epoch"


def test_refit_configs_are_tuned_on_an_inner_split(tiny_cache):
    cfg = _cfg(tiny_cache)
    assert trial_config(cfg).data.train_on == "train" and cfg.data.train_on == "train+val"


@pytest.mark.parametrize("text, message", [
    ("model.no_such_key: [1, 2]", "unknown config key 'model.no_such_key'"),
    ("train.lr: {low: 1, high: 0.1}", "low < high"),
    ("train.schedule: [step, linear]", "not one of"),
    ("[1, 2]", "non-empty mapping"),
])
def test_bad_search_spaces_are_one_line_errors(tiny_cache, tmp_path, text, message):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    with pytest.raises(AttsfError, match=message):
        load_space(space, _cfg(tiny_cache))


def test_packaged_spaces_fit_their_configs():
    for name, config in (("au_only", "ravdess_au_only"), ("audio_only", "ravdess_audio_only"), ("fused", "ravdess_au"),
                         ("au_capacity", "ravdess_au_only_recipe")):
        from attsf.config import resolve_config_path

        assert load_space(name, load_config(resolve_config_path(config)))


def test_a_dead_trial_is_retried_once_before_workers_start(tiny_cache, tmp_path):
    """SQLite let two workers that both found one dead trial retry it twice, and the two
    retries trained in one folder at once (a study resumed with --jobs 2 failed). The
    parent now settles dead trials and duplicate retries before its workers start."""
    import optuna

    from attsf.tune import Study, settle_retries, summarise

    study = Study(_cfg(tiny_cache), {}, [0], tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "s", grace_period=1)
    st = study.load()
    dead = st.ask()
    dead.set_user_attr("runs", "trial0")
    st._storage.record_heartbeat(dead._trial_id)
    for runs in ("trial5", "trial5", "trial6"):  # what the race left: two retries of trial5
        st.enqueue_trial({}, user_attrs={"runs": runs})
    time.sleep(2)
    assert settle_retries(study) == [2]
    waiting = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert sorted(t.user_attrs["runs"] for t in waiting) == ["trial0", "trial5", "trial6"]
    assert st.trials[0].state == optuna.trial.TrialState.FAIL
    assert settle_retries(study) == []  # nothing left to settle
    # the study's table says what became of the dead trial (it read "fail", as a trial that failed)
    retry = next(t.number for t in waiting if t.user_attrs["runs"] == "trial0")
    summarise(study)
    table = (tmp_path / "study.md").read_text()
    assert f"| 0 | died, retried as {retry} |" in table and f"| {retry} | waiting (retry of 0) |" in table


def test_a_grid_keeps_one_order_of_its_combinations_across_workers_and_sessions(tiny_cache, tmp_path):
    """A grid study numbers the combinations in an order drawn from the sampler's seed, and
    that seed differed per worker and per session: the study of 8 combinations resumed in a
    new session trained one combination twice and would have left another out."""
    from attsf.tune import Study, _worker

    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [1]\naugment.feature_noise: [0.0, 0.5]\naugment.mixup: [0.0, 0.4]\n")
    cfg = _cfg(tiny_cache)
    study = Study(cfg, load_space(space, cfg), [0], tmp_path / "s", f"sqlite:///{tmp_path / 'study.db'}", "s",
                  grid=True)
    _worker(study, 1, 1, worker=0)  # a first session stops after one trial
    _worker(study, 4, 1, worker=1)  # another worker, in a later session, finishes the study
    summary = json.loads((tmp_path / "s" / "study.json").read_text())
    trained = [(t["params"]["augment.feature_noise"], t["params"]["augment.mixup"]) for t in summary["trials"]
               if t["state"] == "COMPLETE" and t["same_as"] is None]
    assert sorted(trained) == [(0.0, 0.0), (0.0, 0.4), (0.5, 0.0), (0.5, 0.4)]


def test_a_retry_that_fails_for_a_reason_of_its_own_is_not_retried_again(tiny_cache, tmp_path):
    """The retry of an interrupted trial inherits its marks: when it then failed (a missing
    cache here), every resumed study retried it again."""
    import optuna

    from attsf.tune import Study, _worker, settle_retries

    study = Study(_cfg(tiny_cache, f"data.cache={tmp_path / 'gone'}"), {}, [0], tmp_path / "s",
                  f"sqlite:///{tmp_path / 'study.db'}", "s")
    st = study.load()
    first = st.ask()
    first.set_user_attr("runs", "trial0")
    first.set_user_attr("interrupted", True)
    st.tell(first, state=optuna.trial.TrialState.FAIL)
    settle_retries(study)
    with pytest.raises(AttsfError, match="gone"):
        _worker(study, 1, 1)  # the retry fails: its cache is not there
    settle_retries(study)
    assert [(t.number, t.state.name) for t in st.get_trials(deepcopy=False)] == [(0, "FAIL"), (1, "FAIL")]


def test_a_trial_under_the_median_at_a_later_fold_is_pruned(tiny_cache, tmp_path):
    """Optuna's median pruner compared the best running mean a trial had reported (its first
    fold's) with the median: a trial with a good first fold and poor later ones trained on."""
    import optuna

    from attsf.tune import Study

    study = Study(_cfg(tiny_cache), {}, [0, 2, 4], tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "s")
    st = study.load()
    for first, second in ((64.3, 62.6), (66.7, 65.2), (63.3, 60.6), (62.7, 61.5)):  # the audio study's trials 4-7
        st.add_trial(optuna.create_trial(value=second, intermediate_values={0: first, 1: second},
                                         distributions={}, params={}))
    trial = st.ask()
    trial.report(66.33, 0)
    assert not trial.should_prune()  # above the median after the first fold
    trial.report(60.04, 1)
    assert trial.should_prune()  # under the median (62.06) after the second
    early = st.ask()
    early.report(60.0, 0)
    assert early.should_prune()


def test_a_study_continues_from_its_record_without_training_its_trials_again(tiny_cache, tmp_path):
    """A study's database lost with its machine (or a study moved to another storage): its
    study.json starts a new study with the finished and pruned trials as they were scored,
    and only the rest are trained; a grid goes on with the combinations not yet tried."""
    import optuna

    space = tmp_path / "space.yaml"
    space.write_text("train.max_epochs: [1]\naugment.feature_noise: [0.0, 0.5]\naugment.mixup: [0.0, 0.4]\n")
    first = tune(_cfg(tiny_cache), space, 2, tmp_path / "a", folds=[0])  # 2 of 4 combinations: TPE
    record = tmp_path / "a" / "study.json"
    scored = {t["number"]: t for t in first["trials"] if t["state"] in ("COMPLETE", "PRUNED")}
    summary = tune(_cfg(tiny_cache), space, 4, tmp_path / "b", folds=[0], record=record)  # now a grid
    kept = [t for t in summary["trials"] if t["from_record"] is not None]
    assert [(t["from_record"], t["params"], t["value"], t["val_accuracy"]) for t in kept] == [
        (n, t["params"], t["value"], t["val_accuracy"]) for n, t in scored.items()]
    assert not any((tmp_path / "b" / "trials" / f"trial{t['number']}").exists() for t in kept)
    combos = {(t["params"]["augment.feature_noise"], t["params"]["augment.mixup"]) for t in summary["trials"]}
    assert combos == {(0.0, 0.0), (0.0, 0.4), (0.5, 0.0), (0.5, 0.4)}
    assert "(trial 0 of the record)" in (tmp_path / "b" / "study.md").read_text()
    # the same command again resumes the study: nothing added, nothing trained
    assert len(tune(_cfg(tiny_cache), space, 4, tmp_path / "b", folds=[0], record=record)["trials"]) == len(
        summary["trials"])
    with pytest.raises(AttsfError, match=r"study.json: study '\w+' in .* has trials already"):
        tune(_cfg(tiny_cache), space, 4, tmp_path / "a", folds=[0], record=tmp_path / "b" / "study.json")
    with pytest.raises(AttsfError, match=r"study.json: the record's study has another folds than this one"):
        tune(_cfg(tiny_cache), space, 4, tmp_path / "c", folds=[1], record=record)
    with pytest.raises(AttsfError, match=r"space.yaml: not a study record \(JSONDecodeError\)"):
        tune(_cfg(tiny_cache), space, 4, tmp_path / "d", folds=[0], record=space)
    # a TPE study's trial that was stopped unfinished there is trained first, with its parameters
    doc = json.loads(record.read_text())
    missing = next(c for c in ((0.0, 0.0), (0.0, 0.4), (0.5, 0.0), (0.5, 0.4)) if c not in {
        (t["params"]["augment.feature_noise"], t["params"]["augment.mixup"]) for t in doc["trials"]})
    doc["trials"].append({"number": 2, "state": "FAIL", "interrupted": True, "value": None,
                          "val_accuracy": {"fold0": 12.5},  # its fold 0 had finished there
                          "params": {"train.max_epochs": 1, "augment.feature_noise": missing[0],
                                     "augment.mixup": missing[1]}})
    (tmp_path / "stopped.json").write_text(json.dumps(doc))
    more = tune(_cfg(tiny_cache), space, 3, tmp_path / "e", folds=[0], record=tmp_path / "stopped.json")
    retrained = next(t for t in more["trials"] if t["from_record"] is None)
    assert (retrained["params"]["augment.feature_noise"], retrained["params"]["augment.mixup"]) == missing
    st = optuna.load_study(study_name=more["study"], storage=f"sqlite:///{tmp_path / 'e' / 'study.db'}")
    assert st.trials[retrained["number"]].system_attrs.get("fixed_params") == doc["trials"][-1]["params"]
    assert retrained["value"] == 12.5 and not (tmp_path / "e" / "trials" / f"trial{retrained['number']}").exists()


def test_a_waiting_trial_is_recorded_with_its_parameters(tiny_cache, tmp_path):
    """A trial enqueued (the retry of an interrupted one, a record's unfinished one) had its
    parameters in Optuna's fixed_params only: the record listed it without them, and a study
    continued from that record trained it with parameters drawn afresh."""
    from attsf.tune import Study, summarise

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    cfg = _cfg(tiny_cache)
    study = Study(cfg, load_space(space, cfg), [0], tmp_path / "s", f"sqlite:///{tmp_path / 'study.db'}", "s")
    study.load().enqueue_trial({"train.max_epochs": 2, "augment.feature_noise": 0.5})
    assert summarise(study)["trials"][0]["params"] == {"train.max_epochs": 2, "augment.feature_noise": 0.5}


def _at_once(workers: list, work) -> None:
    """``work(study)`` in one thread per worker, all released at the same moment."""
    import threading

    start = threading.Barrier(len(workers))

    def run(st) -> None:
        start.wait()
        work(st)

    threads = [threading.Thread(target=run, args=(st,)) for st in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_workers_asking_at_once_each_take_another_waiting_trial(tiny_cache, tmp_path):
    """Optuna takes a waiting trial under SELECT ... FOR UPDATE, which SQLite ignores: two
    workers of a resumed study both took the retry of one interrupted trial and the second
    failed on the first one's run lock (CI, test_an_interrupted_study_retries...[2])."""
    from attsf.tune import Study

    study = Study(_cfg(tiny_cache), {}, [0], tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "s")
    for i in range(24):
        study.load().enqueue_trial({}, user_attrs={"runs": f"trial{i}"})
    workers = [study.load(w) for w in range(4)]  # each its own storage, as each worker process has
    taken = []
    _at_once(workers, lambda st: taken.extend(st.ask().number for _ in range(6)))
    assert sorted(taken) == list(range(24))


def test_workers_that_find_one_dead_trial_at_once_retry_it_once(tiny_cache, tmp_path):
    """The same race when dead trials are failed: every worker that found one failed it and
    queued a retry of its own (27 retries of 24 dead trials)."""
    import optuna

    from attsf.tune import Study

    study = Study(_cfg(tiny_cache), {}, [0], tmp_path, f"sqlite:///{tmp_path / 'study.db'}", "s", grace_period=1)
    st = study.load()
    for _ in range(24):
        st._storage.record_heartbeat(st.ask()._trial_id)
    time.sleep(2)
    _at_once([study.load(w) for w in range(4)], optuna.storages.fail_stale_trials)
    assert len(st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))) == 24
