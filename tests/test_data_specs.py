"""Data specs: every spelling the scripts accept parses to one DataSpec and opens the right data."""

from __future__ import annotations

import os

import pytest
from datasets import Audio, DatasetDict

from modeling_mlpl.data import DataSpec, DataSpecError, make_row, open_dataset, parse_data_spec, rows_to_dataset
from modeling_mlpl.data.specs import (
    EVAL_KINDS,
    KINDS,
    LABEL_INPUT_KINDS,
    PL_SET_KINDS,
    TRAINING_KINDS,
    UNLABELED_POOL_KINDS,
    accepted_forms,
)
from tests import helpers_data as h


@pytest.mark.parametrize(
    "spec, kinds, default_kind, expected",
    [
        ("cv:/d", EVAL_KINDS, None, DataSpec("cv", "/d", prefix="cv")),
        ("cv:/d@dev", EVAL_KINDS, None, DataSpec("cv", "/d", "dev", prefix="cv")),
        ("vp:/d", EVAL_KINDS, None, DataSpec("vp", "/d", prefix="vp")),
        ("voxpopuli:/d", LABEL_INPUT_KINDS, None, DataSpec("vp", "/d", prefix="voxpopuli")),
        ("voxpopuli:/d@test", EVAL_KINDS, None, DataSpec("vp", "/d", "test", prefix="voxpopuli")),
        ("librispeech:/d", EVAL_KINDS, None, DataSpec("librispeech", "/d", prefix="librispeech")),
        ("librispeech:/d@test-other", EVAL_KINDS, None,
         DataSpec("librispeech", "/d", "test-other", prefix="librispeech")),
        ("folder:/d", LABEL_INPUT_KINDS, None, DataSpec("folder", "/d", prefix="folder")),
        ("disk:/d", UNLABELED_POOL_KINDS, None, DataSpec("disk", "/d", prefix="disk")),
        ("disk:/d:validation", EVAL_KINDS, None, DataSpec("disk", "/d", "validation", prefix="disk")),
        ("disk:/d@pt", EVAL_KINDS, None, DataSpec("disk", "/d", None, "pt", prefix="disk")),
        ("disk:/d:train@pt", EVAL_KINDS, None, DataSpec("disk", "/d", "train", "pt", prefix="disk")),
        ("hub:org/name", LABEL_INPUT_KINDS, None, DataSpec("hub", "org/name", prefix="hub")),
        ("hub:org/name@train", LABEL_INPUT_KINDS, None, DataSpec("hub", "org/name", "train", prefix="hub")),
        ("cv:/d@train", TRAINING_KINDS, None, DataSpec("cv", "/d", "train", prefix="cv")),
        ("folder:/d", TRAINING_KINDS, None, DataSpec("folder", "/d", prefix="folder")),
        ("/d", PL_SET_KINDS, "disk", DataSpec("disk", "/d")),
        ("/d:dev@pt", PL_SET_KINDS, "disk", DataSpec("disk", "/d", "dev", "pt")),
        ("disk:/d:dev", PL_SET_KINDS, "disk", DataSpec("disk", "/d", "dev", prefix="disk")),
    ],
)
def test_every_accepted_spelling_parses_to_its_kind_path_split_and_language(spec, kinds, default_kind, expected):
    assert parse_data_spec(spec, kinds, default_kind) == expected


def test_a_separator_inside_an_existing_path_is_part_of_the_path(tmp_path):
    odd = tmp_path / "take@2:final"
    odd.mkdir()
    assert parse_data_spec(f"cv:{odd}").path == str(odd)
    assert parse_data_spec(f"{tmp_path}:final", PL_SET_KINDS, "disk") == DataSpec("disk", str(tmp_path), "final")
    assert parse_data_spec(f"{odd.parent}/take@2:final", PL_SET_KINDS, "disk").language == "2:final"  # @ is LANG


@pytest.mark.parametrize(
    "spec, kinds, default_kind",
    [
        ("nowhere:/x", EVAL_KINDS, None),
        ("/no/kind", EVAL_KINDS, None),
        ("cv:", EVAL_KINDS, None),
        ("", LABEL_INPUT_KINDS, None),
        ("hub:org/name", EVAL_KINDS, None),
        ("cv:/d", UNLABELED_POOL_KINDS, None),
        ("hub:org/name", TRAINING_KINDS, None),
        ("cv:/d", PL_SET_KINDS, "disk"),
    ],
)
def test_a_bad_spec_is_refused_in_one_line_naming_it_and_the_accepted_forms(spec, kinds, default_kind):
    with pytest.raises(DataSpecError) as err:
        parse_data_spec(spec, kinds, default_kind, flag="--data")
    message = str(err.value)
    assert message.startswith(f"--data {spec!r}: expected KIND:PATH with KIND one of ") and "\n" not in message
    for kind in kinds:
        assert KINDS[kind][1] in message
    for kind in set(KINDS) - set(kinds):
        assert KINDS[kind][1] not in message


def test_normalized_resolves_the_path_and_keeps_the_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_data_spec("voxpopuli:./a/../vp@dev").normalized() == f"voxpopuli:{os.path.realpath('vp')}@dev"
    assert parse_data_spec("disk:pl:train@pt").normalized() == f"disk:{os.path.realpath('pl')}:train@pt"
    assert parse_data_spec("pl", PL_SET_KINDS, "disk").normalized() == os.path.realpath("pl")
    assert parse_data_spec("hub:org/name").normalized() == "hub:org/name"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One small corpus of every kind on disk, and the ids each should give."""
    root = tmp_path_factory.mktemp("specs")
    cv = h.write_common_voice(root / "cv", "pt")
    vp = h.write_voxpopuli(root / "vp", "pl")
    ls = h.write_librispeech(root / "ls", "test-clean")
    h.write(root / "folder" / "one.wav", 1.0)
    h.write(root / "folder" / "two.wav", 2.0)
    # A saved dataset without a language column and with its text in `sentence`: the spec completes it.
    saved = rows_to_dataset([make_row(i, str(root / "folder" / f"{n}.wav"), t, "", 1.0)
                             for i, n, t in (("a", "one", "um"), ("b", "two", "dois"))])  # fmt: skip
    saved = saved.remove_columns("language").rename_column("text", "sentence")
    DatasetDict({"train": saved, "validation": saved.select([1])}).save_to_disk(str(root / "disk"))
    return root, {
        "cv": set(cv["texts"]),
        "cv_test": {"pt/common_voice_pt_1"},
        "vp": set(vp["transcribed"]),
        "vp_unlabelled": set(vp["unlabelled"]),
        "ls": set(ls),
        "folder": {"one", "two"},
        "disk": {"a", "b"},
        "disk_validation": {"b"},
    }


@pytest.mark.parametrize(
    "spec, options, expected",
    [
        ("cv:{root}/cv", dict(languages=["pt"]), "cv"),
        ("cv:{root}/cv@test", dict(languages=["pt"]), "cv_test"),
        ("cv:{root}/cv", dict(languages=["pt"], split="test"), "cv_test"),
        ("vp:{root}/vp", dict(languages=["pl"]), "vp"),
        ("voxpopuli:{root}/vp", dict(languages=["pl"], unlabelled=True), "vp_unlabelled"),
        ("librispeech:{root}/ls@test-clean", dict(), "ls"),
        ("folder:{root}/folder", dict(languages=["de"]), "folder"),
        ("disk:{root}/disk@pt", dict(), "disk"),
        ("disk:{root}/disk:validation@pt", dict(), "disk_validation"),
        ("{root}/disk@pt", dict(split="validation", kinds=PL_SET_KINDS, default_kind="disk"), "disk_validation"),
    ],
)
def test_open_dataset_gives_the_loaders_schema_for_every_kind(roots, spec, options, expected):
    root, ids = roots
    ds = open_dataset(spec.format(root=root), **options)
    assert set(ds["id"]) == ids[expected]
    assert {"id", "audio", "text", "language", "duration"} <= set(ds.column_names)
    assert isinstance(ds.features["audio"], Audio) and not ds.features["audio"].decode


def test_open_dataset_gives_a_folder_its_only_language(roots):
    root, _ = roots
    assert set(open_dataset(f"folder:{root}/folder", languages=["de"])["language"]) == {"de"}


def test_open_dataset_without_schema_returns_disk_rows_as_saved(roots):
    root, _ = roots
    ds = open_dataset(f"disk:{root}/disk", schema=False)
    assert sorted(ds.column_names) == ["audio", "duration", "id", "sentence"]


def test_open_dataset_without_schema_still_takes_the_language_of_the_spec(roots):
    root, _ = roots
    assert set(open_dataset(f"disk:{root}/disk@pt", schema=False)["language"]) == {"pt"}


def test_open_dataset_refuses_a_missing_path_in_one_line(tmp_path):
    with pytest.raises(DataSpecError, match=rf"^--data folder:{tmp_path}/gone: path does not exist$"):
        open_dataset(f"folder:{tmp_path}/gone")


def _evaluation(spec: str) -> None:
    from modeling_mlpl.evaluation.test_sets import load_eval_sets

    load_eval_sets([spec])


def _training(field: str):
    def entry(spec: str) -> None:
        from modeling_mlpl.training import DataArguments, resolve_data

        resolve_data(DataArguments(**{field: [spec] if field != "unlabeled_data" else spec}))

    return entry


@pytest.mark.parametrize(
    "entry, flag, kinds, spec",
    [(_evaluation, "--data", EVAL_KINDS, "nowhere:/x"),
     (_training("train_data"), "--train_data", TRAINING_KINDS, "nowhere:/x"),
     (_training("eval_data"), "--eval_data", TRAINING_KINDS, "hub:org/name"),
     (_training("unlabeled_data"), "--unlabeled_data", UNLABELED_POOL_KINDS, "cv:/x"),
     (_training("train_datasets"), "--train_datasets", PL_SET_KINDS, "cv:/x")],  # fmt: skip
)
def test_every_entry_point_refuses_a_bad_spec_with_the_same_message(entry, flag, kinds, spec):
    with pytest.raises(ValueError) as err:
        entry(spec)
    assert str(err.value) == f"{flag} {spec!r}: expected KIND:PATH with {accepted_forms(kinds)}"
