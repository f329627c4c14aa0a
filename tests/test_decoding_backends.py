"""The compiled flashlight backend behind LMDecoder: agrees with pyctcdecode, survives save/load."""

import numpy as np
import pytest
from helpers_lm import TOY_LM_SENTENCES, build_toy_lm, char_vocab, peaky_logits, simulated_dev_set

from modeling_mlpl import MLPLFeatureExtractor, MLPLProcessor, MLPLTokenizer
from modeling_mlpl.decoding.lm_decoder import LMDecoder

pytest.importorskip("flashlight.lib.text.decoder")

VOCAB = char_vocab(TOY_LM_SENTENCES + ["hat", "the hat sat on the hat"])


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    return {
        "cat": build_toy_lm(root / "cat").directory,
        "hat": build_toy_lm(root / "hat", [s.replace("cat", "hat") for s in TOY_LM_SENTENCES]).directory,
    }


def decoders(lm_dirs, **kwargs):
    return {backend: LMDecoder.from_lm_dirs(VOCAB, lm_dirs, backend=backend, beam_width=16,
                                            default_language="cat", **kwargs)
            for backend in ("pyctcdecode", "flashlight")}  # fmt: skip


def test_backends_give_the_best_path_when_the_lm_weight_is_zero(lm_dirs):
    logits = [peaky_logits(s, VOCAB, {1: (s[0], 0.3)}) for s in TOY_LM_SENTENCES[:8]]
    for decoder in decoders(lm_dirs, alpha=0.0, beta=0.0).values():
        assert decoder.decode_batch(logits) == decoder.greedy_decode(logits) == TOY_LM_SENTENCES[:8]


def test_flashlight_log_add_with_a_priced_unk_gives_the_best_path_when_the_lm_weight_is_zero(lm_dirs):
    logits = [peaky_logits(s, VOCAB, {1: (s[0], 0.3)}) for s in TOY_LM_SENTENCES[:8]]
    decoder = decoders(lm_dirs, alpha=0.0, beta=0.0, log_add=True, unk_score=-0.5, sil_score=-0.5)["flashlight"]
    assert decoder.decode_batch(logits) == TOY_LM_SENTENCES[:8]


def test_flashlight_merge_and_silence_options_survive_save_and_load(lm_dirs, tmp_path):
    decoder = decoders(lm_dirs, log_add=True, sil_score=-0.5)["flashlight"]
    decoder.save_pretrained(tmp_path / "processor")
    search = LMDecoder.from_pretrained(tmp_path / "processor")._decoder("cat").search
    assert (search.log_add, search.sil_score) == (True, -0.5)


def test_backends_agree_without_lm_on_simulated_logits(lm_dirs):
    logits, _ = simulated_dev_set(TOY_LM_SENTENCES[:8], VOCAB, seed=5, confusion_rate=0.2)
    texts = {name: d.decode_batch(logits, use_lm=False) for name, d in decoders(lm_dirs).items()}
    assert texts["flashlight"] == texts["pyctcdecode"]


def test_backends_agree_that_each_language_lm_repairs_its_own_word(lm_dirs):
    ambiguous = peaky_logits("the cat sat", VOCAB, {4: ("h", 0.45)})  # c 0.45 vs h 0.45
    for decoder in decoders(lm_dirs).values():
        assert decoder.decode_batch([ambiguous] * 2, languages=["cat", "hat"]) == ["the cat sat", "the hat sat"]


def test_backends_agree_on_most_of_a_simulated_dev_set(lm_dirs):
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:12], VOCAB, seed=6, confusion_rate=0.15)
    texts = {name: d.decode_batch(logits) for name, d in decoders(lm_dirs).items()}
    same = sum(a == b for a, b in zip(texts["flashlight"], texts["pyctcdecode"]))
    assert same >= 10


def test_set_params_changes_flashlight_weights_without_reloading(lm_dirs):
    decoder = decoders(lm_dirs)["flashlight"]
    logits = peaky_logits("the cat sat", VOCAB, {4: ("m", 0.5)})  # "mat" is a word of the LM too
    assert decoder.decode_batch([logits]) == ["the cat sat"]
    search = decoder._decoder("cat")
    decoder.set_params("cat", alpha=0.0, beta=0.0)
    assert decoder._decoder("cat") is search and decoder.decode_batch([logits]) == ["the mat sat"]


def test_backend_choice_survives_save_and_load(lm_dirs, tmp_path):
    logits, _ = simulated_dev_set(TOY_LM_SENTENCES[:4], VOCAB, seed=7)
    decoder = decoders(lm_dirs)["flashlight"]
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text("{" + ", ".join(f'"{t}": {i}' for i, t in enumerate(VOCAB)) + "}")
    processor = MLPLProcessor(MLPLFeatureExtractor(), MLPLTokenizer(str(vocab_file)))
    processor.lm_decoder = decoder
    processor.save_pretrained(tmp_path / "processor")
    loaded = MLPLProcessor.from_pretrained(str(tmp_path / "processor"))
    assert loaded.lm_decoder.config.backend == "flashlight"
    assert loaded.batch_decode(np.stack([logits[0]]), languages="cat") == decoder.decode_batch(logits[:1])
    assert LMDecoder.from_pretrained(tmp_path / "processor").decode_batch(logits) == decoder.decode_batch(logits)


def test_unknown_backend_is_a_one_line_error(lm_dirs):
    with pytest.raises(ValueError, match="backend 'kaldi'.*LMDecoderConfig.backend"):
        LMDecoder.from_lm_dirs(VOCAB, lm_dirs, backend="kaldi")


def test_reattaching_lms_keeps_the_saved_backend(lm_dirs, tmp_path):
    from modeling_mlpl.decoding.lm_decoder import attach_lms

    (tmp_path / "vocab.json").write_text("{" + ", ".join(f'"{t}": {i}' for i, t in enumerate(VOCAB)) + "}")
    assert attach_lms(tmp_path, {"cat": lm_dirs["cat"]}, backend="flashlight").config.backend == "flashlight"
    again = attach_lms(tmp_path, {"hat": lm_dirs["hat"]})
    assert again.config.backend == "flashlight" and again.languages == ["hat", "cat"]
