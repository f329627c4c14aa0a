import hashlib
import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from modeling_mlpl.audio import load_audio
from modeling_mlpl.data import load_common_voice, load_unlabelled_truth, load_voxpopuli_unlabelled, read_clip_durations
from modeling_mlpl.synthetic.corpus import (
    HELDOUT_VARIANTS,
    PRESETS,
    TRAIN_VARIANTS,
    AudioJob,
    espeak,
    generate_corpus,
    plan_digest,
    plan_language,
    render,
    voice_pools,
    voices_manifest,
)

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
    from modeling_mlpl.commands.make_synthetic_corpus import main

    assert main(["--preset", "tiny", "--output_dir", str(tmp_path), "--languages", "xx"]) == 2
    assert "not in preset" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--output_dir", str(tmp_path), "--set", "nonsense=1"]) == 2
    assert "--set expects" in capsys.readouterr().err


# --- speakers: few labelled, many unlabelled (planning only, no synthesis) -------------------
FEW = PRESETS["tiny"].replace(low_train_variants=4)
VARIANTS = (TRAIN_VARIANTS, HELDOUT_VARIANTS)


def _variant(voice: str) -> str:
    return voice.split("+", 1)[1]


def test_target_labels_unlabelled_pool_and_heldout_speakers_are_disjoint():
    clips, recordings, _ = plan_language("el", FEW, 0, VARIANTS)
    used = {split: {_variant(c.job.voice) for c in clips if c.split == split} for split in ("train", "dev", "test")}
    used["unlabelled"] = {_variant(r.job.voice) for r in recordings}
    pools = voice_pools("el", FEW, 0, *VARIANTS)
    for split, variants in used.items():
        assert variants and variants <= set(pools[split].variants)
    assert len(pools["train"].variants) == 4
    assert set(pools["unlabelled"].variants) == set(TRAIN_VARIANTS) - set(pools["train"].variants)
    assert not used["train"] & used["unlabelled"]
    assert not (used["dev"] | used["test"]) & (used["train"] | used["unlabelled"])


def test_target_labels_are_narrow_and_the_unlabelled_pool_is_wide():
    clips, recordings, _ = plan_language("el", FEW, 0, VARIANTS)
    pools = voice_pools("el", FEW, 0, *VARIANTS)
    labelled, wide = pools["train"], pools["unlabelled"]
    assert wide.speed_wpm[0] < labelled.speed_wpm[0] and labelled.speed_wpm[1] < wide.speed_wpm[1]
    assert wide.pitch[0] < labelled.pitch[0] and labelled.pitch[1] < wide.pitch[1]
    assert wide.snr_db[0] < pools["test"].snr_db[0]
    for c in clips:
        if c.split == "train":
            assert labelled.speed_wpm[0] <= c.job.speed <= labelled.speed_wpm[1]
            assert labelled.pitch[0] <= c.job.pitch <= labelled.pitch[1]
    for r in recordings:
        assert wide.snr_db[0] <= r.job.snr_db <= wide.snr_db[1]


def test_high_resource_labels_keep_every_train_speaker():
    pools = voice_pools("en", FEW, 0, *VARIANTS)
    assert pools["train"].variants == TRAIN_VARIANTS == pools["unlabelled"].variants
    assert pools["test"].variants == HELDOUT_VARIANTS


def test_the_manifest_says_which_speakers_each_split_uses():
    splits = voices_manifest(PRESETS["demo"], 0, *VARIANTS)
    for lang in PRESETS["demo"].low_resource:
        entry = splits[lang]
        assert entry["unlabelled_speakers_are_new"] and entry["heldout_speakers_are_unseen"]
        assert len(entry["train"]["variants"]) == PRESETS["demo"].low_train_variants
        assert not set(entry["train"]["variants"]) & set(entry["unlabelled"]["variants"])
    for lang in PRESETS["demo"].high_resource:
        assert not splits[lang]["unlabelled_speakers_are_new"]
        assert splits[lang]["heldout_speakers_are_unseen"]


def test_same_seed_same_plan_and_another_seed_other_labelled_speakers():
    assert plan_digest(*plan_language("el", FEW, 0, VARIANTS)) == plan_digest(*plan_language("el", FEW, 0, VARIANTS))
    speakers = {seed: voice_pools("el", FEW, seed, *VARIANTS)["train"].variants for seed in range(4)}
    assert len(set(speakers.values())) > 1


def test_labelled_speakers_do_not_depend_on_the_other_languages():
    alone = FEW.replace(high_resource=())
    assert voice_pools("el", alone, 0, *VARIANTS) == voice_pools("el", FEW, 0, *VARIANTS)


def test_without_low_train_variants_targets_share_the_train_speakers(tiny):
    root, manifest = tiny
    entry = manifest["voices"]["splits"]["el"]
    assert entry["train"] == entry["unlabelled"] and not entry["unlabelled_speakers_are_new"]
    assert entry["train"]["variants"] == manifest["voices"]["train_variants"]
    assert manifest["sizes"]["low_train_variants"] is None


def test_clips_use_the_speakers_the_manifest_lists(tiny):
    root, manifest = tiny
    for lang in PRESETS["tiny"].languages:
        for split in ("train", "dev", "test"):
            voices = manifest["voices"]["espeak"][lang]
            allowed = {
                hashlib.sha1(f"{lang}:{voices}+{v}".encode()).hexdigest()
                for v in manifest["voices"]["splits"][lang][split]["variants"]
            }
            lines = (root / "cv" / lang / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
            assert lines and {line.split("\t")[0] for line in lines} <= allowed


def test_a_folder_from_another_plan_is_refused(tiny, tmp_path):
    root, _ = tiny
    shutil.copy(root / "plan.json", tmp_path / "plan.json")
    with pytest.raises(ValueError, match="another plan.*--out"):
        generate_corpus(tmp_path, "tiny", seed=1, jobs=1)
    assert not any(tmp_path.rglob("*.mp3"))


def _as_generator_1_0(manifest: dict, folder: Path) -> None:
    """`folder` as generator 1.0 left it: a manifest without low_train_variants and no plan.json."""
    old = json.loads(json.dumps(manifest))
    del old["sizes"]["low_train_variants"], old["voices"]["splits"]
    old["versions"]["generator"] = "1.0"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(old), encoding="utf-8")


def test_a_generator_1_0_folder_with_another_plan_is_refused(tiny, tmp_path):
    _, manifest = tiny
    _as_generator_1_0(manifest, tmp_path)
    with pytest.raises(ValueError, match="generator 1.0.*--out.*low_train_variants=none"):
        generate_corpus(tmp_path, FEW, seed=0, jobs=1)
    with pytest.raises(ValueError, match="generator 1.0"):
        generate_corpus(tmp_path, "tiny", seed=1, jobs=1)
    assert not any(tmp_path.rglob("*.mp3"))


def test_a_generator_1_0_folder_with_the_same_plan_is_completed(tiny, tmp_path):
    root, manifest = tiny
    shutil.copytree(root, tmp_path / "old")
    (tmp_path / "old" / "plan.json").unlink()
    _as_generator_1_0(manifest, tmp_path / "old")
    assert generate_corpus(tmp_path / "old", "tiny", seed=0, jobs=1)["counts"] == manifest["counts"]
    assert (tmp_path / "old" / "plan.json").read_text() == (root / "plan.json").read_text()


def test_cli_sets_or_clears_low_train_variants():
    from modeling_mlpl.commands.make_synthetic_corpus import _parse_override

    assert _parse_override(PRESETS["tiny"], "low_train_variants=3").low_train_variants == 3
    assert _parse_override(PRESETS["demo"], "low_train_variants=none").low_train_variants is None
