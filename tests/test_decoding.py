"""CTC decoding: greedy, beam search with KenLM LMs per language, save/load, alpha/beta tuning."""

import numpy as np
import pytest
from helpers_lm import TOY_LM_SENTENCES, build_toy_lm, char_vocab, peaky_logits, simulated_dev_set

from modeling_mlpl.decoding.lm_decoder import LMDecoder, greedy_decode, labels_from_vocab
from modeling_mlpl.decoding.tuning import alpha_beta_grid, load_logits, save_logits, tune_alpha_beta
from modeling_mlpl.evaluation.metrics import wer

VOCAB = char_vocab(TOY_LM_SENTENCES + ["hat", "the hat sat on the hat"])


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    cat_lm = build_toy_lm(root / "cat")
    hat_lm = build_toy_lm(root / "hat", [s.replace("cat", "hat") for s in TOY_LM_SENTENCES])
    return {"cat": cat_lm.directory, "hat": hat_lm.directory}


@pytest.fixture()
def decoder(lm_dirs):
    return LMDecoder.from_lm_dirs(VOCAB, lm_dirs, alpha=0.5, beta=1.0, beam_width=16, default_language="cat")


def test_labels_follow_pyctcdecode_conventions():
    labels = labels_from_vocab(["<pad>", "<unk>", "|", "a", "<s>"])
    assert labels[:4] == ["", "⁇", " ", "a"]
    assert len(set(labels)) == 5  # the extra special token gets a unique placeholder


def test_greedy_merges_repeats_and_splits_them_at_blanks():
    vocab = ["<pad>", "<unk>", "|", "a", "l", "o"]
    frames = [4, 4, 0, 4, 5, 2, 2, 3, 0, 0]  # l l _ l o | | a _ _
    logits = np.eye(len(vocab), dtype=np.float32)[frames] * 10
    assert greedy_decode([logits], vocab) == ["llo a"]


def test_greedy_batch_respects_lengths_and_drops_special_tokens():
    vocab = ["<pad>", "<unk>", "|", "a", "b", "<s>"]
    one_hot = np.eye(len(vocab), dtype=np.float32) * 10
    batch = np.stack([one_hot[[5, 3, 1, 4, 0]], one_hot[[4, 4, 3, 3, 3]]])  # (B=2, T=5, V=6)
    assert greedy_decode(batch, vocab, lengths=[5, 2]) == ["ab", "b"]
    assert greedy_decode(batch[:1], vocab, unk_text="?") == ["a?b"]


def test_lm_fixes_an_acoustically_ambiguous_word(decoder):
    # "c" of "cat" reads as "h" with p=0.5 > 0.4: greedy says "hat", the LM has only seen "cat".
    logits = peaky_logits("the cat sat", VOCAB, {4: ("h", 0.5)})
    assert decoder.greedy_decode([logits]) == ["the hat sat"]
    assert decoder.decode_batch([logits], use_lm=False) == ["the hat sat"]
    assert decoder.decode_batch([logits]) == ["the cat sat"]


def test_each_utterance_uses_its_own_language_lm(decoder):
    ambiguous = peaky_logits("the cat sat", VOCAB, {4: ("h", 0.45)})  # c 0.45 vs h 0.45
    texts = decoder.decode_batch([ambiguous, ambiguous, ambiguous], languages=["cat", "hat", "cat"])
    assert texts == ["the cat sat", "the hat sat", "the cat sat"]


def test_language_without_lm_falls_back_to_plain_beam_search(decoder):
    logits = peaky_logits("the cat sat", VOCAB, {4: ("h", 0.5)})
    assert decoder.decode_batch([logits], languages="xx") == ["the hat sat"]


def test_padded_batch_and_pool_give_the_same_text_as_serial(decoder):
    logits_list, _ = simulated_dev_set(TOY_LM_SENTENCES[:6], VOCAB, seed=1)
    serial = decoder.decode_batch(logits_list)
    t_max = max(x.shape[0] for x in logits_list)
    padded = np.stack([np.pad(x, ((0, t_max - x.shape[0]), (0, 0))) for x in logits_list])  # (B, T, V)
    lengths = [x.shape[0] for x in logits_list]
    assert decoder.decode_batch(padded, lengths=lengths) == serial
    assert decoder.decode_batch(logits_list, num_workers=2) == serial


def test_save_and_load_give_identical_output(decoder, tmp_path):
    logits_list, _ = simulated_dev_set(TOY_LM_SENTENCES, VOCAB, seed=2)
    decoder.set_params("hat", alpha=0.8, beta=0.5)
    decoder.save_pretrained(tmp_path / "processor")
    assert LMDecoder.has_lm(tmp_path / "processor")
    loaded = LMDecoder.from_pretrained(tmp_path / "processor")
    assert loaded.config.languages["hat"].alpha == 0.8
    assert (tmp_path / "processor/language_model/cat/lm.bin").exists()
    for lang in ("cat", "hat"):
        assert loaded.decode_batch(logits_list, lang) == decoder.decode_batch(logits_list, lang)
    # Saving a loaded decoder into its own folder must not lose the LM files.
    loaded.save_pretrained(tmp_path / "processor")
    assert LMDecoder.from_pretrained(tmp_path / "processor").decode_batch(logits_list[:2]) == loaded.decode_batch(
        logits_list[:2]
    )


def test_wrong_logit_width_is_a_clear_error(decoder):
    with pytest.raises(ValueError, match=f"\\(T, {len(VOCAB)}\\)"):
        decoder.decode_batch([np.zeros((5, len(VOCAB) + 1), dtype=np.float32)])


def test_tuning_improves_or_keeps_dev_wer_and_is_applied(decoder, tmp_path):
    sentences = TOY_LM_SENTENCES[:8]
    logits_list, refs = simulated_dev_set(sentences, VOCAB, seed=3, confusion_rate=0.2)
    decoder.set_params("cat", alpha=0.0, beta=-3.0)  # deliberately bad start: LM off, words penalised
    start = wer(refs, decoder.decode_batch(logits_list))
    result = tune_alpha_beta(decoder, logits_list, refs, "cat", alpha_beta_grid([0.5, 1.0], [0.0, 1.0]), num_workers=2)
    assert result.initial_score == pytest.approx(start)
    assert result.score <= result.initial_score
    assert result.score < result.greedy_score  # the LM repairs confusions greedy cannot
    assert len(result.trials) == 5
    assert (decoder.config.languages["cat"].alpha, decoder.config.languages["cat"].beta) == (result.alpha, result.beta)
    assert wer(refs, decoder.decode_batch(logits_list)) == pytest.approx(result.score)
    # A second run starts from the tuned point and cannot get worse.
    again = tune_alpha_beta(decoder, logits_list, refs, "cat", [(0.0, -3.0)])
    assert again.score == pytest.approx(result.score) and (again.alpha, again.beta) == (result.alpha, result.beta)


def test_saved_logits_round_trip(tmp_path):
    logits_list, refs = simulated_dev_set(TOY_LM_SENTENCES[:3], VOCAB, seed=4)
    path = save_logits(tmp_path / "dev.npz", logits_list, refs, ["cat"] * 3)
    loaded, refs2, langs, ids = load_logits(path)
    assert refs2 == refs and langs == ["cat"] * 3 and ids == ["0", "1", "2"]
    assert all(np.allclose(a, b, atol=1e-2) for a, b in zip(loaded, logits_list))
