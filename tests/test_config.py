"""Every config key's valid values: ranges of numeric keys and choices of string keys,
rejected with one-line errors from config files and from Python alike."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Literal

import pytest
from conftest import ROOT, cli

from attsf.config import Config, load_config
from attsf.errors import AttsfError
from attsf.model import ATTSFConfig, attsf_net


def _leaves() -> list[tuple[str, dataclasses.Field, typing.Any]]:
    out = []
    for section in dataclasses.fields(Config):
        if not dataclasses.is_dataclass(section.default_factory if section.default_factory is not dataclasses.MISSING
                                        else None):
            continue
        cls = section.default_factory
        hints = typing.get_type_hints(cls)
        out += [(f"{section.name}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(cls)]
    return out


def _out_of_range(f: dataclasses.Field, tp: typing.Any) -> list:
    meta = f.metadata
    bad = []
    if meta.get("ge") is not None:
        bad.append(meta["ge"] - 1)
    if meta.get("gt") is not None:
        bad.append(meta["gt"])
    if meta.get("le") is not None:
        bad.append(meta["le"] + 1)
    if typing.get_origin(tp) is tuple:
        bad = [[v] for v in bad]
    return bad


def _numeric(tp: typing.Any) -> bool:
    """int, float, a tuple of them, or one of them or None."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp in (int, float) or (typing.get_origin(tp) in (tuple, types.UnionType) and args[0] in (int, float))


NUMERIC = [(k, f, tp) for k, f, tp in _leaves() if _numeric(tp)]
CHOICES = [(k, f, tp) for k, f, tp in _leaves() if typing.get_origin(tp) is Literal]


def test_every_numeric_key_declares_a_range():
    assert len(NUMERIC) > 40
    assert [k for k, f, _ in NUMERIC if not f.metadata] == []


@pytest.mark.parametrize("key,f,tp", NUMERIC, ids=[k for k, _, _ in NUMERIC])
def test_numeric_key_out_of_range_is_a_one_line_error(key, f, tp):
    for value in _out_of_range(f, tp):
        with pytest.raises(AttsfError, match=rf"config key '{key}': .* is out of range \(must be "):
            load_config(None, [f"{key}={value}"])
    default = list(f.default) if isinstance(f.default, tuple) else "null" if f.default is None else f.default
    load_config(None, [f"{key}={default}"])  # the default is valid


@pytest.mark.parametrize("key,f,tp", CHOICES, ids=[k for k, _, _ in CHOICES])
def test_choice_key_rejects_an_unknown_value(key, f, tp):
    with pytest.raises(AttsfError, match=rf"config key '{key}': 'bogus' is not one of "):
        load_config(None, [f"{key}=bogus"])


@pytest.mark.parametrize("field", ["fusion", "temporal", "auxiliary", "cross_block", "visual_mode", "modalities", "task"])
def test_python_construction_rejects_unknown_variants(field):
    with pytest.raises(ValueError, match=rf"ATTSFConfig.{field}: 'concat' is not one of "):
        ATTSFConfig(**{field: "concat"})
    with pytest.raises(ValueError, match="ATTSFConfig.fusion: 'concat' is not one of sum | l2 | gate"):
        attsf_net(fusion="concat")


def test_exponent_without_a_dot_is_a_float(tmp_path):
    """YAML 1.1 reads 1e-5 as a string; a float key takes it as the number."""
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-4\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.weight_decay=1e-5"])
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 1e-5
    with pytest.raises(AttsfError, match="config key 'train.lr': expected float, got 'fast'"):
        load_config(None, ["train.lr=fast"])


def _flat(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value) if isinstance(value, (list, bool)) or value is None else value}")
    return out


def test_a_packaged_config_is_named_as_its_file():
    """`attsf cv ravdess_au_only_recipe` writes runs/ravdess_au_only_recipe, a study and a
    model card name the config a user can pass, and the fallback config finds the unimodal
    runs where `attsf cv` put them."""
    files = sorted((ROOT / "src/attsf/configs").glob("*.yaml"))
    assert len(files) >= 14
    for path in files:
        assert load_config(path).name == path.stem, path.name
    fallback = load_config(ROOT / "src/attsf/configs/ravdess_au_fallback.yaml").train
    assert fallback.fallback_audio.startswith("runs/ravdess_audio_only_recipe/")
    assert fallback.fallback_visual.startswith("runs/ravdess_au_only_recipe/")


def test_a_config_with_a_base_is_its_parent_plus_its_own_keys(tmp_path):
    import yaml

    from attsf.config import resolve_config_path

    children = [p for p in (ROOT / "src/attsf/configs").glob("*.yaml") if "base" in yaml.safe_load(p.read_text())]
    assert {p.stem for p in children} >= {"ravdess_au_recipe", "ravdess_au_fallback", "ravdess_au_l2", "ravdess_au_gat",
                                         "ravdess_audio_only_recipe", "ravdess_au_only_recipe"}
    for child in children:
        own = yaml.safe_load(child.read_text())
        parent = own.pop("base")
        expected = load_config(resolve_config_path(parent), _flat(own))
        assert load_config(child) == expected, child.name
    # a user's file beside its base, and a base that leads back to itself
    (tmp_path / "mine.yaml").write_text("base: ravdess_au_recipe\nname: mine\ntrain:\n  max_epochs: 3\n")
    (tmp_path / "child.yaml").write_text("base: mine.yaml\nmodel:\n  fusion: gate\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.name, cfg.train.max_epochs, cfg.model.fusion, cfg.data.train_on) == ("mine", 3, "gate", "train+val")
    (tmp_path / "loop.yaml").write_text("base: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(AttsfError, match="leads back to itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("base: [1, 2]\n")
    with pytest.raises(AttsfError, match="'base' names one config"):
        load_config(tmp_path / "bad.yaml")


def test_keys_that_do_nothing_are_named(tmp_path):
    out = cli("summary", "ravdess_au_recipe", "train.patience=5", "train.lr_decay=0.5").stdout
    assert "note: train.patience=5 does nothing with train.select=last" in out
    assert "note: train.lr_decay=0.5 does nothing with train.schedule=cosine" in out
    assert "note:" not in cli("summary", "ravdess_au_recipe").stdout
