"""Pseudo-labeling: sharding, resume, failures, LID routing, labels and merge (in-process, fast)."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch

import modeling_mlpl
from helpers_pl import (disk_dataset, pl_record, pooled_hidden, set_lid_head, varying_audio, write_audio_folder,
                        write_shard)
from modeling_mlpl.audio import write_audio
from modeling_mlpl.data import load_audio_folder
from modeling_mlpl.pseudo_labeling import (
    Item,
    MergeFilters,
    PseudoLabelConfig,
    PseudoLabeler,
    Span,
    forced_align,
    greedy_spans,
    label_dataset,
    label_from_log_probs,
    merge_pseudo_labels,
    merge_with_stats,
    plan_batches,
    shard_of,
)
from modeling_mlpl.pseudo_labeling.shards import FAILURE_PREFIX, LABEL_PREFIX
from modeling_mlpl.resumable import Accounting, completed_ids, read_shard, shard_path
from modeling_mlpl.tokenization_mlpl import transcript_characters


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    return root, write_audio_folder(root)


@pytest.fixture(scope="module")
def labeler(tiny_checkpoint):
    return PseudoLabeler.from_pretrained(tiny_checkpoint, PseudoLabelConfig(language="de", max_batch_seconds=20))


@pytest.fixture(scope="module")
def reference(folder, labeler, tmp_path_factory):
    """One uninterrupted single-process run over the folder, merged (no filters)."""
    out = tmp_path_factory.mktemp("reference")
    stats = label_dataset(load_audio_folder(folder[0], language="de"), out, labeler)
    return out, stats, merge_pseudo_labels(out, min_chars=0)


def _rows(dataset) -> dict[str, dict]:
    return {r["id"]: r for r in dataset}


def _assert_same_labels(a, b):
    a, b = _rows(a), _rows(b)
    assert sorted(a) == sorted(b)
    for uid in a:
        assert a[uid]["text"] == b[uid]["text"]
        assert a[uid]["token_times"] == b[uid]["token_times"]
        # Floats may differ in the last digits when a recording lands in a batch of another shape.
        assert a[uid]["confidence"] == pytest.approx(b[uid]["confidence"], abs=1e-5)
        assert a[uid]["duration"] == b[uid]["duration"]


def test_shard_of_is_stable_disjoint_and_balanced():
    ids = [f"de/{i:06d}" for i in range(4000)]
    owners = [shard_of(uid, 4) for uid in ids]
    assert owners == [shard_of(uid, 4) for uid in ids]
    assert shard_of("de/000000", 4) == shard_of("de/000000", 4) and shard_of("x", 1) == 0
    counts = Counter(owners)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900  # ~1000 each
    # Independent of order and of Python's per-process str hash salt: a fixed value.
    assert shard_of("de/20200101-0900-PLENARY", 1000) == shard_of("de/20200101-0900-PLENARY", 1000)
    with pytest.raises(ValueError):
        shard_of("x", 0)


def test_plan_batches_sorts_longest_first_within_the_budget():
    items = [Item(id=str(i), audio=None, path=None, duration=d) for i, d in enumerate([3, 30, 1, 8, 8, 2, 12])]
    batches = plan_batches(items, max_batch_seconds=20, window_s=10, overlap_s=2)
    flat = [i.duration for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)
    assert sorted(i.id for b in batches for i in b) == sorted(i.id for i in items)
    assert batches[0][0].duration == 30 and len(batches[0]) == 1  # 30 s -> 4 windows of 10 s: alone
    for b in batches[1:]:
        assert sum(min(i.duration, 10) if i.duration <= 10 else 20 for i in b) <= 20


def test_two_ranks_label_the_union_exactly_once(folder, labeler, reference, tmp_path):
    root, ids = folder
    ds = load_audio_folder(root, language="de")
    per_process = [label_dataset(ds, tmp_path, labeler, rank=rank, world_size=2) for rank in (0, 1)]
    assert all(stats.done > 0 and stats.elsewhere > 0 for stats in per_process)
    assert Accounting.over_processes(per_process) == Accounting(found=len(ids), done=len(ids))
    per_rank = [[r["id"] for r in read_shard(shard_path(tmp_path, r, LABEL_PREFIX))] for r in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(ids)
    _assert_same_labels(merge_pseudo_labels(tmp_path, min_chars=0), reference[2])


def test_resume_after_a_crash_mid_write_gives_the_uninterrupted_dataset(folder, labeler, reference, tmp_path):
    ds = load_audio_folder(folder[0], language="de")
    first = label_dataset(ds, tmp_path, labeler, max_batches=2)
    assert first.interrupted and 0 < first.done < len(folder[1])
    shard = shard_path(tmp_path, 0, LABEL_PREFIX)
    with open(shard, "ab") as f:  # what a kill during the next write leaves: a line without its end
        f.write(b'{"id": "rec03", "audio": "/x.wav", "text": "hal')
    assert "rec03" not in completed_ids(tmp_path, [LABEL_PREFIX])  # the partial line does not count as done
    second = label_dataset(ds, tmp_path, labeler, resume=True)
    assert second.already_done == first.done
    assert first.done + second.done == len(folder[1])
    lines = shard.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == len(folder[1])
    _assert_same_labels(merge_pseudo_labels(tmp_path, min_chars=0), reference[2])
    third = label_dataset(ds, tmp_path, labeler, resume=True)
    assert third.done == 0 and third.already_done == len(folder[1])


def test_refuses_to_append_to_an_existing_run_without_resume(folder, labeler, reference):
    with pytest.raises(FileExistsError, match="resume"):
        label_dataset(load_audio_folder(folder[0], language="de"), reference[0], labeler)


def test_unreadable_and_empty_audio_is_counted_and_the_job_continues(folder, labeler, tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    write_audio(root / "good.wav", varying_audio(2.0))
    write_audio(root / "silent_empty.wav", np.zeros(0, dtype=np.float32))
    bad = {"garbage.wav": b"RIFF not really a wav", "zero.flac": b"", "missing.ogg": None}
    ds = disk_dataset(root, bad=bad)
    out = tmp_path / "pl"
    stats = label_dataset(ds, out, labeler)
    failures = list(read_shard(shard_path(out, 0, FAILURE_PREFIX)))
    assert stats.done == 1 and stats.failed == 4
    assert sorted(f["id"] for f in failures) == ["garbage", "missing", "silent_empty", "zero"]
    assert all(f["error"] for f in failures)
    _, merged = merge_with_stats(out, tmp_path / "merged")
    assert merged["failures"] == 4 and merged["records"] == 1
    # Failed ids are done too: a resumed run does not retry them forever (nor count them twice).
    again = label_dataset(ds, out, labeler, resume=True)
    assert again.failed == 0 and again.already_done == 5
    # Unless asked to: the repaired file is labelled, the still-broken ones fail again, and the merge
    # counts each id once, a label winning over its older failure.
    write_audio(root / "garbage.wav", varying_audio(1.5))
    retried = label_dataset(disk_dataset(root, bad={"zero.flac": b"", "missing.ogg": None}), out, labeler,
                            resume=True, retry_failed=True)  # fmt: skip
    assert retried.done == 1 and retried.failed == 3 and retried.already_done == 1
    _, merged = merge_with_stats(out, tmp_path / "merged-again")
    assert merged["records"] == 2 and merged["failures"] == 3


def test_records_keep_the_training_contract(reference, folder):
    _, stats, dataset = reference
    assert stats.done == len(folder[1]) and stats.failed == 0
    for row in dataset:
        times = row["token_times"]
        assert len(times) == len(transcript_characters(row["text"]))
        assert times == sorted(times)
        assert all(0.0 <= t < row["duration"] for t in times)
        assert row["offset"] == 0.0 and row["audio"]["path"].endswith(".wav")
        assert row["language"] == "de" and row["language_source"] == "given"
        assert 0.0 < row["confidence"] <= 1.0 and row["ctc_score"] <= 0.0 and row["num_frames"] > 0
        assert [w["word"] for w in row["words"]] == row["text"].split()
        assert len(row["lid_top_k"]) == 3 and sum(x["prob"] for x in row["lid_top_k"]) <= 1.0 + 1e-6
    durations = sorted(round(r["duration"], 2) for r in dataset)
    assert durations[-1] == 22.0  # long recordings are labelled whole, in windows


def test_greedy_label_text_and_times_follow_the_alignment():
    vocab = ["<pad>", "<unk>", "|", "a", "b", "l"]
    id2token = dict(enumerate(vocab))
    token2id = {t: i for i, t in id2token.items()}
    #        frame:  0  1  2  3  4  5  6  7  8  9 10 11 12 13
    best = [0, 3, 3, 0, 5, 0, 5, 2, 2, 1, 4, 4, 0, 2]  # "a" "l" "l" "|" <unk> "b" "|"
    log_probs = np.log(np.full((len(best), len(vocab)), 0.02))
    log_probs[np.arange(len(best)), best] = np.log(0.9)
    assert [s.token for s in greedy_spans(log_probs)] == [3, 5, 5, 2, 1, 4, 2]
    label, scores = label_from_log_probs(log_probs, id2token, token2id, frame_seconds=0.03)
    assert label.text == "all b"  # <unk> dropped, trailing delimiter dropped
    assert label.token_times == [0.03, 0.12, 0.18, 0.21, 0.3]
    assert label.words == [{"word": "all", "start": 0.03, "end": 0.21}, {"word": "b", "start": 0.3, "end": 0.36}]
    assert scores["confidence"] == pytest.approx(0.9)  # rows are 0.9 + 5 x 0.02: already normalised
    assert scores["path_score"] == pytest.approx(np.log(0.9))
    assert scores["ctc_score"] < 0


def test_force_aligned_lm_text_gets_the_greedy_times_when_it_is_the_greedy_text():
    vocab = ["<pad>", "<unk>", "|", "a", "b", "l"]
    id2token = dict(enumerate(vocab))
    token2id = {t: i for i, t in id2token.items()}
    best = [0, 3, 3, 0, 5, 0, 5, 2, 2, 0, 4, 4, 0]
    log_probs = np.log(np.full((len(best), len(vocab)), 0.02))
    log_probs[np.arange(len(best)), best] = np.log(0.9)
    greedy, _ = label_from_log_probs(log_probs, id2token, token2id, frame_seconds=0.03)
    forced, scores = label_from_log_probs(log_probs, id2token, token2id, frame_seconds=0.03, text="all b")
    assert greedy.text == forced.text == "all b"
    assert forced.token_times == greedy.token_times == [0.03, 0.12, 0.18, 0.21, 0.3]
    assert forced.words == greedy.words
    assert scores["path_score"] <= scores["ctc_score"] <= 0  # all alignments of a text >= its best one


def test_forced_align_respects_repeats_and_rejects_impossible_texts():
    log_probs = np.log(np.full((4, 3), 1 / 3))
    spans = forced_align(log_probs, [1, 1])  # a repeated token needs a blank between: 3 frames min
    assert spans[0].last < spans[1].first - 1
    with pytest.raises(ValueError):
        forced_align(np.log(np.full((2, 3), 1 / 3)), [1, 1])


def test_auto_language_routes_each_recording_by_the_lid_argmax(tiny_checkpoint, tmp_path):
    from conftest import build_tiny_checkpoint

    base = modeling_mlpl.MLPLForCTC.from_pretrained(tiny_checkpoint).eval()
    processor = modeling_mlpl.MLPLProcessor.from_pretrained(tiny_checkpoint)
    fe = processor.feature_extractor
    low = [varying_audio(2.0, seed=s, piece_s=2.0) * 0 + _tone(150, s) for s in range(3)]
    high = [_tone(2500, s) for s in range(3)]
    h_low = torch.stack([pooled_hidden(base, a, fe) for a in low]).mean(0)
    h_high = torch.stack([pooled_hidden(base, a, fe) for a in high]).mean(0)
    set_lid_head(base, {"pt": h_low - h_high, "ru": h_high - h_low})  # a LID head that "hears" pitch
    root = tmp_path / "mixed"
    root.mkdir()
    for i, a in enumerate(low + high):
        write_audio(root / f"clip{i}.wav", a)
    # Fine-tuned models for pt only: ru recordings fall back to the base model.
    build_tiny_checkpoint(str(tmp_path / "ft-pt"), seed=7)
    config = PseudoLabelConfig(language="auto", models_per_language=str(tmp_path / "ft-{lang}"))
    labeler = PseudoLabeler(base, processor, config)
    out = tmp_path / "pl"
    label_dataset(load_audio_folder(root), out, labeler)
    rows = {r["id"]: r for r in read_shard(shard_path(out, 0, LABEL_PREFIX))}
    expected = base.identify_language(**fe([*low, *high], return_tensors="pt"), top_k=4)
    pt_model = modeling_mlpl.MLPLForCTC.from_pretrained(str(tmp_path / "ft-pt")).eval()
    for i in range(6):
        row = rows[f"clip{i}"]
        assert row["language"] == ("pt" if i < 3 else "ru") == expected[i][0][0]
        assert row["language_source"] == "lid"
        assert row["lid_top_k"][0]["language"] == row["language"]
        assert row["lid_top_k"][0]["prob"] == pytest.approx(expected[i][0][1], abs=1e-3)
        assert row["model"] == (str(tmp_path / "ft-pt") if i < 3 else "base")
        decoder = pt_model if i < 3 else base
        with torch.no_grad():
            logits = decoder(**fe([*low, *high][i], return_tensors="pt")).logits
        ids = logits.argmax(-1)[0].tolist()
        text = processor.tokenizer.decode(ids, group_tokens=True, skip_special_tokens=True)
        assert row["text"] == " ".join(text.split())


def _tone(frequency: float, seed: int) -> np.ndarray:
    from conftest import make_tone

    return make_tone(2.0, frequency=frequency, seed=seed)


def test_unknown_language_is_a_clear_error(tiny_checkpoint):
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        PseudoLabeler.from_pretrained(tiny_checkpoint, PseudoLabelConfig(language="xx"))


def test_merge_filters_apply_at_merge_time(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")  # save_to_disk stats every referenced file
    records = [pl_record(f"de{i}", "ab cd", 0.1 * i) for i in range(1, 9)]
    records += [pl_record("empty", "", 0.9), pl_record("short", "a", 0.9), pl_record("tiny", "abc", 0.9, duration=0.2)]
    records += [pl_record(f"pt{i}", "xy", 0.05 * i, language="pt") for i in range(1, 5)]
    for r in records:
        r["audio"] = str(audio)
    write_shard(tmp_path / "pl", records)
    everything = merge_pseudo_labels(tmp_path / "pl", min_chars=0)
    assert len(everything) == len(records)
    confident, stats = merge_with_stats(tmp_path / "pl", tmp_path / "m1", MergeFilters(min_confidence=0.45))
    assert sorted(confident["id"]) == ["de5", "de6", "de7", "de8", "short", "tiny"]
    assert stats["dropped"] == {"empty": 1, "low_confidence": 8}
    top, stats = merge_with_stats(tmp_path / "pl", None, MergeFilters(top_percent=50, min_chars=2, min_duration_s=0.5))
    # Per language: de keeps 4 of its 8 eligible, pt 2 of 4.
    assert sorted(top["id"]) == ["de5", "de6", "de7", "de8", "pt3", "pt4"]
    assert stats["dropped"] == {"empty": 1, "too_short_text": 1, "too_short_audio": 1, "below_top_percent": 6}
    for name in ("stats.json", "stats.md", "confidence_hist.png"):
        assert (tmp_path / "m1" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "m1" / "stats.json").read_text())
    assert saved["hours_in"] == pytest.approx(sum(r["duration"] for r in records) / 3600)
    assert saved["empty_outputs"] == 1
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "m1" / "dataset"))["id"] == confident["id"]


def test_merge_drops_duplicate_ids_and_partial_lines(tmp_path):
    write_shard(tmp_path, [pl_record("a", "xx", 0.5), pl_record("b", "yy", 0.5)])
    with open(shard_path(tmp_path, 1, LABEL_PREFIX), "w") as f:
        f.write(json.dumps(pl_record("a", "zz", 0.9)) + "\n" + '{"id": "c", "te')
    dataset, stats = merge_with_stats(tmp_path, None)
    assert sorted(dataset["id"]) == ["a", "b"] and stats["duplicates"] == 1


def test_beam_search_labels_are_force_aligned_to_the_frames(tiny_checkpoint, folder, tmp_path):
    from modeling_mlpl.decoding.lm_decoder import LMDecoder, LMDecoderConfig

    processor = modeling_mlpl.MLPLProcessor.from_pretrained(tiny_checkpoint)
    vocab = processor.tokenizer.convert_ids_to_tokens(list(range(len(processor.tokenizer))))
    decoder = LMDecoder(LMDecoderConfig(vocab=vocab, beam_width=4))  # no LM for "de": plain beam search
    model = modeling_mlpl.MLPLForCTC.from_pretrained(tiny_checkpoint).eval()
    labeler = PseudoLabeler(model, processor, PseudoLabelConfig(language="de"), lm_decoder=decoder)
    ds = load_audio_folder(folder[0], language="de").select(range(4))
    label_dataset(ds, tmp_path, labeler)
    rows = list(read_shard(shard_path(tmp_path, 0, LABEL_PREFIX)))
    assert len(rows) == 4
    for row in rows:
        assert row["decoder"] == "lm"
        assert len(row["token_times"]) == len(transcript_characters(row["text"]))
        assert row["token_times"] == sorted(row["token_times"])


def test_audio_embedded_as_bytes_is_written_out_and_referenced(labeler, tmp_path):
    import io

    import soundfile as sf

    from modeling_mlpl.data.common import rows_to_dataset

    buffer = io.BytesIO()
    sf.write(buffer, varying_audio(1.5), 16000, format="WAV")
    rows = [{"id": "cv/clip1", "audio": {"bytes": buffer.getvalue(), "path": "clip1.wav"}, "text": "",
             "language": "de", "duration": 1.5}]  # fmt: skip
    label_dataset(rows_to_dataset(rows), tmp_path, labeler)
    (row,) = read_shard(shard_path(tmp_path, 0, LABEL_PREFIX))
    assert row["audio"].startswith(str(tmp_path / "embedded_audio")) and os.path.getsize(row["audio"]) > 0
    assert row["duration"] == pytest.approx(1.5)


def test_known_transcripts_are_force_aligned_instead_of_decoded(tiny_checkpoint, folder, tmp_path):
    """The oracle path: known long-form text gets token times (so it is cropped like a PL); a text
    the frames cannot hold is kept without times; a recording without a transcript is an error."""
    ds = load_audio_folder(folder[0], language="de").select(range(3))
    ids = list(ds["id"])
    letters = [t for t in modeling_mlpl.MLPLProcessor.from_pretrained(tiny_checkpoint).tokenizer.get_vocab()
               if len(t) == 1 and t.isalpha()][:3]  # fmt: skip
    short = f"{letters[0]}{letters[1]} {letters[2]}"
    transcripts = {ids[0]: short, ids[1]: short[::-1], ids[2]: letters[0] * 100_000}  # last: longer than the frames
    model = modeling_mlpl.MLPLForCTC.from_pretrained(tiny_checkpoint).eval()
    processor = modeling_mlpl.MLPLProcessor.from_pretrained(tiny_checkpoint)
    labeler = PseudoLabeler(model, processor, PseudoLabelConfig(language="de"), transcripts=transcripts)
    label_dataset(ds, tmp_path / "ok", labeler)
    rows = _rows(read_shard(shard_path(tmp_path / "ok", 0, LABEL_PREFIX)))
    for uid in ids[:2]:
        assert rows[uid]["text"] == transcripts[uid] and rows[uid]["decoder"] == "transcript"
        times = rows[uid]["token_times"]
        assert len(times) == len(transcripts[uid]) and times == sorted(times)
        assert 0 <= times[0] and times[-1] < rows[uid]["duration"]
    assert rows[ids[2]]["text"] == transcripts[ids[2]] and rows[ids[2]]["token_times"] == []
    assert rows[ids[2]]["decoder"] == "transcript_unaligned"

    labeler.transcripts = {ids[0]: short}
    with pytest.raises(KeyError, match="no transcript"):
        label_dataset(ds, tmp_path / "missing", labeler)
