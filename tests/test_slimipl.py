"""Semi-supervised (slimIPL) fine-tuning: the PL cache, its refreshes, the update schedule and resume."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_mlpl import MLPLConfig, MLPLFeatureExtractor, MLPLForCTC, MLPLProcessor, MLPLTokenizer
from modeling_mlpl.audio import load_audio
from modeling_mlpl.augment import crop_transcript
from modeling_mlpl.training import ConfigError, TrainerState, list_checkpoints, read_log, train, validate_arguments
from modeling_mlpl.tokenization_mlpl import transcript_characters
from modeling_mlpl.data import open_dataset, parse_data_spec
from modeling_mlpl.training.slimipl import CacheEntry, SlimIPL, SlimIPLConfig

from helpers_training import tiny_training_args, write_pl_dataset, write_tone_cv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("slimipl_corpus")
    write_tone_cv(str(root / "cv"), n_train=6, n_dev=2)
    write_pl_dataset(str(root / "unlabelled"), language="pt", n=8, words=8, seed=3)
    return root


def truth_labels(self, rows):
    """Stands in for the model's greedy PLs: the recordings' true transcripts and character times, so
    that cache entries are never empty whatever an untrained model emits."""
    self.state.labelled += len(rows)
    return [CacheEntry(r, self.pool[r]["text"], list(self.pool[r]["token_times"])) for r in rows]


def make_cache(corpus, refresh_prob: float, cache_size: int = 4, **overrides) -> SlimIPL:
    pool = open_dataset(f"disk:{corpus / 'unlabelled'}")
    tokenizer = MLPLTokenizer.build_from_texts(pool["text"])
    model = MLPLForCTC(MLPLConfig.from_preset("tiny", vocab_size=len(tokenizer), languages=["pt"]))
    settings = dict(start_step=0, labeled_updates=1, unlabeled_updates=1, cache_size=cache_size, refresh_prob=refresh_prob,
                    dropout=0.05, crop_seconds=1.0, max_batch_seconds=2.5, max_batch_size=None, seed=0) | overrides  # fmt: skip
    return SlimIPL(SlimIPLConfig(**settings), pool, MLPLProcessor(MLPLFeatureExtractor(), tokenizer), model, {"pt": 0})


@pytest.mark.parametrize("refresh_prob", [0.0, 1.0])
def test_cache_entries_are_refreshed_never_at_p0_and_after_every_use_at_p1(corpus, monkeypatch, refresh_prob):
    monkeypatch.setattr(SlimIPL, "label", truth_labels)
    cache = make_cache(corpus, refresh_prob)
    cache.fill()
    for _ in range(6):
        before = [e.row for e in cache.state.entries]
        batch = cache.next_batch()
        after = [e.row for e in cache.state.entries]
        assert batch["kind"] == "unlabeled" and len(batch["ids"]) >= 1
        changed = {slot for slot in range(len(before)) if before[slot] != after[slot]}
        # p=0: nothing changes; p=1: every used entry now holds another recording (the pool has 8, the cache 4)
        assert changed == (set() if refresh_prob == 0.0 else set(cache.last_slots))
    refreshed = cache.state.labelled - 4  # beyond the initial fill
    assert refreshed == cache.state.refreshes == (0 if refresh_prob == 0.0 else cache.state.refreshes)
    assert (cache.state.refreshes == 0) == (refresh_prob == 0.0)


def test_refresh_rate_follows_the_probability(corpus, monkeypatch):
    monkeypatch.setattr(SlimIPL, "label", truth_labels)
    cache = make_cache(corpus, 0.3)
    while cache.state.draws < 300:
        cache.next_batch()
    assert 0.2 < cache.state.refreshes / cache.state.draws < 0.4


def test_unlabeled_batches_are_crops_cut_by_the_pl_times_and_packed_to_the_budget(corpus, monkeypatch):
    monkeypatch.setattr(SlimIPL, "label", truth_labels)
    cache = make_cache(corpus, 0.0)
    batch = cache.next_batch()
    assert len(batch["ids"]) == 2  # 2 crops of 1 s fit in 2.5 s, a third would not
    assert batch["audio_seconds"] == pytest.approx(2.0)
    assert batch["specaugment"] is True
    # The first crop's transcript: the PL's characters whose times fall in the drawn window.
    entry = cache.state.entries[cache.state.order[0]]
    row = cache.pool[entry.row]
    start = float(np.random.default_rng((0, 104, 0, 0)).uniform(0.0, row["duration"] - 1.0))
    expected = crop_transcript(entry.text, entry.token_times, start, start + 1.0)
    ids = [int(i) for i in batch["labels"][0] if i >= 0]
    decoded = "".join(cache.collator.processor.tokenizer.convert_ids_to_tokens(ids)).replace("|", " ")
    assert decoded == expected and len(expected) >= 2


def test_empty_pls_are_not_trained_on_but_count_as_used(corpus, monkeypatch):
    def empty_labels(self, rows):
        self.state.labelled += len(rows)
        return [CacheEntry(r, "", []) for r in rows]

    monkeypatch.setattr(SlimIPL, "label", empty_labels)
    cache = make_cache(corpus, 0.0)
    batch = cache.next_batch()
    assert batch["ids"] == [] and "input_features" not in batch  # the trainer's zero-loss path
    assert cache.state.draws == cache.state.empty_draws == 4
    assert cache.log_fields()["pl_empty_fraction"] == 1.0


def test_pl_dropout_is_set_on_every_dropout_of_the_model(corpus):
    cache = make_cache(corpus, 0.0)
    cache.apply_dropout(cache.model)
    probs = [m.p for m in cache.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert probs and all(p == 0.05 for p in probs)
    assert all(m.dropout == 0.05 for m in cache.model.modules() if isinstance(getattr(m, "dropout", None), float))


def _kinds_by_step(out: str) -> dict[int, str]:
    with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
        return {r["step"]: r["kind"] for r in map(json.loads, f)}


def semi_args(out: str, corpus, **overrides):
    common = dict(cv_root=str(corpus / "cv"), unlabeled_data=f"disk:{corpus / 'unlabelled'}", pl_start_step=3,
                  pl_cache_size=4, crop_seconds=1.0, max_batch_seconds=3.0, log_batch_ids=True, logging_steps=3)  # fmt: skip
    return tiny_training_args(out, **(common | overrides))


def test_labeled_to_unlabeled_ratio_is_honoured_after_the_start_step(corpus, tmp_path):
    out = str(tmp_path / "ratio")
    train(*semi_args(out, corpus, max_steps=12, pl_labeled_updates=1, pl_unlabeled_updates=2))
    kinds = _kinds_by_step(out)
    assert [kinds[s] for s in range(12)] == ["labeled"] * 3 + ["labeled", "unlabeled", "unlabeled"] * 3
    train_records = [r for r in read_log(out) if r["type"] == "train"]
    assert sum(r["unlabeled_batches"] for r in train_records) == 6
    assert sum(r["labeled_batches"] for r in train_records) == 6
    assert {"pl_refreshes", "pl_mean_length", "pl_empty_fraction"} <= set(train_records[-1])
    results = json.load(open(os.path.join(out, "train_results.json")))
    assert results["mode"] == "semi_supervised" and results["slimipl"]["unlabeled_batches"] == 6
    assert json.load(open(os.path.join(out, "training_args.json")))["training_mode"] == "semi_supervised"


class Interrupt(Exception):
    pass


def test_killed_semi_supervised_run_resumes_with_the_same_cache_step_and_weights(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(SlimIPL, "label", truth_labels)  # non-empty PLs, so unlabelled batches really train
    common = dict(max_steps=10, save_steps=3, pl_cache_refresh_prob=0.5, pl_start_step=2, specaugment_start_step=-1)
    full = str(tmp_path / "full")
    train(*semi_args(full, corpus, **common))

    killed = str(tmp_path / "killed")

    def die_at_step_8(state):
        if state.step == 8:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(*semi_args(killed, corpus, **common), step_callback=die_at_step_8)
    last = list_checkpoints(killed)[-1]
    assert TrainerState.load(last).step == 6 and os.path.isfile(os.path.join(last, "pl_cache.rank0.json"))
    result = train(*semi_args(killed, corpus, resume=True, **common))
    assert result.step == 10

    caches = [json.load(open(os.path.join(list_checkpoints(d)[-1], "pl_cache.rank0.json"))) for d in (full, killed)]
    assert caches[0] == caches[1] and caches[0]["refreshes"] > 0
    a, b = load_file(os.path.join(full, "model.safetensors")), load_file(os.path.join(killed, "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(full, "batch_ids.rank0.jsonl")) as f:
        full_ids = {r["step"]: r["ids"] for r in map(json.loads, f)}
    with open(os.path.join(killed, "batch_ids.rank0.jsonl")) as f:
        killed_ids = {r["step"]: r["ids"] for r in map(json.loads, f)}
    assert full_ids == killed_ids


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(unlabeled_data="youtube:/x"), "expected KIND:PATH with KIND one of"),
        (dict(unlabeled_data="disk:/does/not/exist"), "--unlabeled_data disk:/does/not/exist: path does not exist"),
        (dict(pl_cache_refresh_prob=1.5), "--pl_cache_refresh_prob must be in [0, 1]"),
        (dict(pl_unlabeled_updates=0), "--pl_unlabeled_updates >= 1"),
        (dict(pl_dropout=1.0), "--pl_dropout must be in [0, 1)"),
    ],
)
def test_bad_semi_supervised_values_are_rejected_in_one_line(corpus, tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate_arguments(*semi_args(str(tmp_path / "o"), corpus, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_help_documents_every_semi_supervised_flag_with_its_default(capsys):
    from modeling_mlpl.commands.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [("unlabeled_data", "None"), ("unlabeled_languages", "None"), ("pl_start_step", "20000"),
                          ("pl_labeled_updates", "1"), ("pl_unlabeled_updates", "1"), ("pl_cache_size", "100"),
                          ("pl_cache_refresh_prob", "0.1"), ("pl_dropout", "0.1"), ("pl_specaugment", "True")]:  # fmt: skip
        entry = text[text.index("--" + flag.replace("_", "-")):]  # the dashed alias appears in the option list only
        assert entry[entry.index("(default:"):].startswith(f"(default: {default})"), flag


@pytest.mark.parametrize("mode", ["supervised", "semi_supervised"])
def test_stage2_model_card_says_how_the_model_was_fine_tuned(tmp_path, mode):
    from modeling_mlpl.hub.model_card import CardInfo, render_model_card

    args = {"training_mode": mode, "pl_start_step": 100, "pl_labeled_updates": 1, "pl_unlabeled_updates": 4,
            "pl_cache_size": 50, "pl_cache_refresh_prob": 0.1, "pl_dropout": 0.1}  # fmt: skip
    text = render_model_card(CardInfo(stage="stage2-ft-pt", repo_id="me/mlpl", hyperparameters=args)).text
    if mode == "supervised":
        assert "This model: fine-tuned supervised (labelled data only)." in text
    else:
        assert ("This model: fine-tuned semi-supervised (slimIPL: PLs from update 100, 1 labelled : 4 unlabelled "
                "updates, cache of 50 recordings refreshed with probability 0.1, dropout 0.1 from the PL start).") in text


def test_voxpopuli_unlabeled_data_is_read_for_the_requested_languages(tmp_path):
    import soundfile as sf

    from modeling_mlpl.training.slimipl import load_unlabeled_pool

    for lang, n in (("pt", 2), ("nl", 1)):
        folder = tmp_path / "vp" / "unlabelled_data" / lang / "2020"
        folder.mkdir(parents=True)
        for i in range(n):
            sf.write(folder / f"{lang}_{i}.ogg", np.zeros(16000, np.float32), 16000)
    pool = load_unlabeled_pool(parse_data_spec(f"voxpopuli:{tmp_path / 'vp'}"), ["pt"])
    assert sorted(pool["id"]) == ["pt/pt_0", "pt/pt_1"] and set(pool["language"]) == {"pt"}
    assert pool["duration"] == pytest.approx([1.0, 1.0])


def test_cache_pls_are_the_models_greedy_eval_mode_labels_with_token_times(corpus, tmp_path):
    out = str(tmp_path / "teacher")
    train(*tiny_training_args(out, cv_root=str(corpus / "cv"), max_steps=40, max_batch_seconds=3.0))
    model, processor = MLPLForCTC.from_pretrained(out), MLPLProcessor.from_pretrained(out)
    pool = open_dataset(f"disk:{corpus / 'unlabelled'}")
    config = SlimIPLConfig(start_step=0, labeled_updates=1, unlabeled_updates=1, cache_size=4, refresh_prob=0.0,
                           dropout=None, crop_seconds=1.0, max_batch_seconds=3.0, max_batch_size=None, seed=0)  # fmt: skip
    cache = SlimIPL(config, pool, processor, model.train(), model.config.lang2id)
    entries = cache.label([0, 1, 2])
    assert model.training  # back in training mode after labelling in eval mode
    model.eval()
    for entry in entries:  # recordings shorter than one 10 s window: the plain forward pass gives the same PL
        inputs = processor(audio=load_audio(pool[entry.row]["audio"], 16000), sampling_rate=16000)
        with torch.no_grad():
            expected = processor.batch_decode(model(**inputs).logits)[0]
        assert entry.text == expected
        assert len(entry.token_times) == len(transcript_characters(entry.text))
    assert any(entry.text for entry in entries)


def test_resume_with_other_unlabeled_data_is_refused_in_one_line(corpus, tmp_path):
    out = str(tmp_path / "run")
    train(*semi_args(out, corpus, max_steps=4, save_steps=4))
    write_pl_dataset(str(tmp_path / "other"), language="pt", n=5, words=8, seed=9)
    with pytest.raises(ConfigError) as err:
        train(*semi_args(out, corpus, max_steps=6, resume=True, unlabeled_data=f"disk:{tmp_path / 'other'}"))
    message = str(err.value)
    assert "\n" not in message and "was made from other unlabelled recordings" in message


def test_with_gradient_accumulation_every_batch_of_an_update_has_the_updates_kind(corpus, tmp_path):
    out = str(tmp_path / "accumulate")
    train(*semi_args(out, corpus, max_steps=7, gradient_accumulation_steps=2, pl_start_step=3))
    with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
        records = [json.loads(line) for line in f]
    kinds: dict[int, list[str]] = {}
    for r in records:
        kinds.setdefault(r["step"], []).append(r["kind"])
    assert kinds == {s: ["labeled"] * 2 for s in (0, 1, 2, 3, 5)} | {s: ["unlabeled"] * 2 for s in (4, 6)}
