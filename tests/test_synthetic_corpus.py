import hashlib
import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from modeling_mlpl.audio import load_audio
from modeling_mlpl.data import load_common_voice, load_unlabelled_truth, load_voxpopuli_unlabelled, read_clip_durations
from modeling_mlpl.data.synthetic import PRESETS, AudioJob, espeak, generate_corpus, render

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make setup)")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_corpus")
    manifest = generate_corpus(root, "tiny", seed=0, jobs=2)
    return root, manifest


def _text_files(root: Path) -> dict[str, str]:
    skip = {"clip_durations.tsv", "manifest.json"}
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.suffix in (".tsv", ".txt", ".json") and p.name not in skip
    }


def test_layout_is_read_by_the_common_voice_and_voxpopuli_loaders(tiny):
    root, manifest = tiny
    langs = PRESETS["tiny"].languages
    for split in ("train", "dev", "test"):
        ds = load_common_voice(root / "cv", split=split)
        assert set(ds["language"]) == set(langs)
        assert ds.load_report.n_skipped == 0
        assert len(ds) == sum(manifest["counts"][lang][split]["utterances"] for lang in langs)
    vp = load_voxpopuli_unlabelled(root / "voxpopuli")
    truth = load_unlabelled_truth(root / "voxpopuli")
    assert set(vp["id"]) == set(truth) and len(vp) >= 2
    assert set(vp["language"]) == set(PRESETS["tiny"].low_resource)
    validated = load_common_voice(root / "cv", split="validated")
    assert len(validated) == sum(len(load_common_voice(root / "cv", split=s)) for s in ("train", "dev", "test"))


def test_clip_durations_match_the_decoded_audio(tiny):
    root, _ = tiny
    durations = read_clip_durations(root / "cv" / "ru")
    assert len(durations) > 5
    for clip, seconds in list(durations.items())[:5]:
        audio = load_audio(root / "cv" / "ru" / "clips" / clip)
        assert len(audio) / 16000 == pytest.approx(seconds, abs=0.002)
        assert 1.0 < seconds < 10.0  # CV-like utterances


def test_synthesised_speech_keeps_its_duration_through_resampling():
    # The prototype's pitfall: resampling 22.05 kHz with the wrong ratio halves the duration.
    speech, rate = espeak("Dies ist ein kurzer Satz.", "de", 175, 50)
    assert rate == 22050
    job = AudioJob("x.mp3", ["Dies ist ein kurzer Satz."], "de", 175, 50, 0.0, 30.0, 0, pauses=[0.2, 0.3])
    audio = render(job)
    expected = len(speech) / rate + 0.5
    assert len(audio) / 16000 == pytest.approx(expected, abs=0.01)
    # and it sounds like speech at a normal rate: 25 characters in about 1-4 seconds
    assert 1.0 < len(speech) / rate < 4.0


def test_unlabelled_recordings_are_long_form_and_their_truth_is_real_text(tiny):
    root, _ = tiny
    vp = load_voxpopuli_unlabelled(root / "voxpopuli")
    truth = load_unlabelled_truth(root / "voxpopuli")
    for row in vp:
        assert 10.0 < row["duration"] < 50.0
        words = truth[row["id"]].split()
        assert row["duration"] / len(words) == pytest.approx(0.45, rel=0.6)  # seconds per word


def _sentences(root: Path, lang: str, split: str) -> set[str]:
    return {row["text"] for row in load_common_voice(root / "cv", lang, split=split)}


def test_test_sentences_appear_nowhere_else(tiny):
    root, _ = tiny
    for lang in PRESETS["tiny"].languages:
        test = _sentences(root, lang, "test")
        others = _sentences(root, lang, "train") | _sentences(root, lang, "dev")
        lm_text = set((root / "text" / f"{lang}.txt").read_text(encoding="utf-8").splitlines())
        assert test and not test & others and not test & lm_text
        assert not (_sentences(root, lang, "train") & lm_text)
        truth_file = root / "voxpopuli" / "unlabelled_truth" / f"{lang}.tsv"
        if truth_file.exists():
            truth = truth_file.read_text(encoding="utf-8")
            assert not any(s in truth for s in test)


def test_text_is_real_words_in_each_language_script(tiny):
    root, _ = tiny
    scripts = {"en": "LATIN", "ru": "CYRILLIC", "el": "GREEK"}
    for lang, script in scripts.items():
        lines = (root / "text" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == PRESETS["tiny"].text_sentences
        letters = [c for line in lines for c in line if c.isalpha()]
        assert all(unicodedata.name(c).startswith(script) for c in letters)
        words = [w.strip(".,?").lower() for line in lines for w in line.split()]
        top = max(set(words), key=words.count)
        assert words.count(top) > 0.02 * len(words)  # Zipfian: frequent function words dominate
    greek = (root / "text" / "el.txt").read_text(encoding="utf-8")
    assert "ς " in greek or "ς." in greek  # final sigma restored after wordfreq's case folding


def test_dev_and_test_speakers_are_held_out(tiny):
    root, manifest = tiny
    assert not set(manifest["voices"]["train_variants"]) & set(manifest["voices"]["heldout_variants"])
    for lang in PRESETS["tiny"].languages:
        rows = {}
        for split in ("train", "dev", "test"):
            lines = (root / "cv" / lang / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
            rows[split] = {line.split("\t")[0] for line in lines}
        assert not rows["train"] & (rows["dev"] | rows["test"])


def test_manifest_records_what_was_generated(tiny):
    root, manifest = tiny
    on_disk = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert manifest["preset"] == "tiny" and manifest["seed"] == 0
    assert manifest["versions"]["espeak_ng"].startswith("eSpeak NG")
    total = sum(s["hours"] for c in manifest["counts"].values() for s in c.values())
    assert total == pytest.approx(manifest["total_hours"], abs=1e-3)


def _digest(root: Path) -> dict[str, str]:
    """File bytes, except Ogg: libsndfile gives each Ogg stream a random serial number, so the
    decoded samples are compared there."""

    def content(p: Path) -> bytes:
        return load_audio(p).tobytes() if p.suffix == ".ogg" else p.read_bytes()

    return {str(p.relative_to(root)): hashlib.sha1(content(p)).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_corpus_whatever_the_jobs_and_resume_repairs(tiny, tmp_path):
    root, manifest = tiny
    again = tmp_path / "again"
    assert generate_corpus(again, "tiny", seed=0, jobs=1) == manifest
    assert _text_files(again) == _text_files(root)
    assert _digest(again) == _digest(root)  # the audio is deterministic too
    # a killed run leaves a missing file and a truncated one: re-running repairs only those
    clips = sorted((again / "cv" / "en" / "clips").glob("*.mp3"))
    clips[0].unlink()
    clips[1].write_bytes(clips[1].read_bytes()[:100])
    untouched = clips[2].stat().st_mtime_ns
    generate_corpus(again, "tiny", seed=0, jobs=2)
    assert _digest(again) == _digest(root)
    assert clips[2].stat().st_mtime_ns == untouched


def test_another_seed_gives_other_text(tiny, tmp_path):
    root, _ = tiny
    other = generate_corpus(tmp_path / "s1", PRESETS["tiny"].replace(high_resource=("en",), low_resource=()), seed=1, jobs=2)
    assert other["languages"]["high_resource"] == ["en"]
    assert _sentences(tmp_path / "s1", "en", "train") != _sentences(root, "en", "train")


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    from run_scripts.make_synthetic_corpus import main

    assert main(["--preset", "tiny", "--out", str(tmp_path), "--languages", "xx"]) == 2
    assert "not in preset" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--out", str(tmp_path), "--set", "nonsense=1"]) == 2
    assert "--set expects" in capsys.readouterr().err
