"""The PL-quality sweep's sets: the teacher's PLs with a fixed, unbiased share of true transcripts."""

import json

import pytest

from modeling_mlpl.pseudo_labeling import merge_with_stats
from modeling_mlpl.pseudo_labeling.mixing import mix_with_truth, truth_ids
from modeling_mlpl.pseudo_labeling.shards import LABEL_PREFIX
from modeling_mlpl.resumable import ShardWriter, read_shards, shard_path

IDS = [f"pt/rec{i:03d}" for i in range(40)]


def _write(directory, texts: dict[str, str], rank: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with ShardWriter(shard_path(directory, rank, LABEL_PREFIX)) as w:
        w.write({"id": uid, "audio": f"{uid}.ogg", "text": text, "language": "pt", "duration": 12.0, "offset": 0.0,
                 "token_times": [0.1 * k for k in range(len(text))], "confidence": 0.5} for uid, text in texts.items())


def test_the_truth_share_is_exact_deterministic_and_nested():
    quarter, half = truth_ids(IDS, 0.25), truth_ids(IDS, 0.5)
    assert len(quarter) == 10 and len(half) == 20
    assert quarter < half  # a larger share keeps the smaller share's recordings
    assert truth_ids(list(reversed(IDS)), 0.5) == half  # the order of the rows does not matter
    assert truth_ids(IDS, 0.0) == set() and truth_ids(IDS, 1.0) == set(IDS)
    assert half != set(IDS[:20])  # chosen by hash, not by position
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        truth_ids(IDS, 1.5)


def test_a_mix_keeps_every_recording_once_and_merges_like_a_labelling_run(tmp_path):
    pl, truth, out = tmp_path / "pl", tmp_path / "oracle", tmp_path / "mix"
    _write(pl, {uid: "pl text" for uid in IDS[:25]})
    _write(pl, {uid: "pl text" for uid in IDS[25:]}, rank=1)  # two processes' shards
    _write(truth, {uid: "true text" for uid in IDS if uid != "pt/rec007"})  # one recording without truth
    (pl / "failures-rank00000.jsonl").write_text(json.dumps({"id": "pt/broken", "error": "corrupt"}) + "\n")
    (pl / "load_report.json").write_text(json.dumps({"found": 41, "skipped": {}}))

    counts = mix_with_truth(pl, truth, out, 0.5)
    rows = {r["id"]: r for r in read_shards(out, LABEL_PREFIX)}
    chosen = truth_ids(IDS, 0.5)
    assert sorted(rows) == IDS  # nothing dropped, nothing duplicated
    assert {uid for uid, r in rows.items() if r["text"] == "true text"} == chosen - {"pt/rec007"}
    missing = int("pt/rec007" in chosen)
    assert counts == {"share": 0.5, "recordings": 40, "truth": 20 - missing, "truth_missing": missing,
                      "pl_dir": str(pl), "truth_dir": str(truth)}
    assert json.loads((out / "mix.json").read_text()) == counts

    dataset, stats = merge_with_stats(out)  # the teacher's failures and load report travel with the mix
    assert len(dataset) == 40 and stats["failures"] == 1 and stats["accounting"]["found"] == 41

    _write(out, {"pt/stale": "left over"}, rank=7)  # a re-run rebuilds the mix, it never appends
    mix_with_truth(pl, truth, out, 0.25)
    assert sorted(r["id"] for r in read_shards(out, LABEL_PREFIX)) == IDS


def test_a_mix_needs_the_teachers_labels(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no pseudo-label shards"):
        mix_with_truth(tmp_path / "empty", tmp_path / "empty", tmp_path / "mix", 0.5)
