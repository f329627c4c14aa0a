"""The one CTC text rule (modeling_mlpl/ctc_text.py): every public decoding path renders the same text."""

import json

import numpy as np
import pytest
import torch

from modeling_mlpl import MLPLFeatureExtractor, MLPLProcessor, MLPLTokenizer
from modeling_mlpl.decoding import lm_decoder as decoding
from modeling_mlpl.ctc_text import CTCVocab, normalize_text
from modeling_mlpl.decoding.lm_decoder import LMDecoder, LMDecoderConfig
from modeling_mlpl.pseudo_labeling import alignment

ACUTE = "\u0301"  # combining acute: NFC composes "e" + it into "é"
VOCAB = ["<pad>", "<unk>", "|", "<s>", "a", "b", "e", ACUTE]
# Leading delimiters; a repeat (a a); a repeat split by a blank (a _ a); a special token between
# two equal characters (b <s> b); <unk> between delimiters; e + combining mark; trailing delimiters.
FRAMES = ["|", "|", "a", "a", "<pad>", "a", "b", "<s>", "b", "|", "<unk>", "|", "|", "e", ACUTE, "<unk>", "a", "|", "|"]
EXPECTED = "aabb éa"


def rule_logits() -> np.ndarray:
    """(T, V) logits whose best path is FRAMES."""
    index = {tok: i for i, tok in enumerate(VOCAB)}
    return (np.eye(len(VOCAB), dtype=np.float32)[[index[f] for f in FRAMES]] * 10.0).astype(np.float32)


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rule_tokenizer")
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}, ensure_ascii=False))
    return MLPLProcessor(MLPLFeatureExtractor(), MLPLTokenizer(str(directory / "vocab.json")))


def test_every_public_decoding_path_renders_the_same_text(processor):
    logits = rule_logits()
    batch = torch.from_numpy(logits)[None]  # (1, T, V)
    id2token = dict(enumerate(VOCAB))
    token2id = {t: i for i, t in id2token.items()}
    texts = {
        "processor.greedy_decode": processor.greedy_decode(batch)[0],
        "processor.batch_decode(use_lm=False)": processor.batch_decode(batch, use_lm=False)[0],
        "LMDecoder.greedy_decode": LMDecoder(LMDecoderConfig(vocab=VOCAB)).greedy_decode([logits])[0],
        "decoding.greedy_decode": decoding.greedy_decode([logits], VOCAB)[0],
        "alignment.label_from_log_probs": alignment.label_from_log_probs(
            decoding.log_softmax(logits), id2token, token2id, frame_seconds=0.03
        )[0].text,
    }
    assert texts == dict.fromkeys(texts, EXPECTED)


def test_padded_batches_decode_each_row_to_its_valid_length(processor):
    logits = rule_logits()
    padded = np.concatenate([logits, np.tile(logits[2:3], (4, 1))])  # 4 "a" frames after the final delimiters
    batch = np.stack([padded, padded])  # (2, T + 4, V)
    assert processor.greedy_decode(batch, [len(FRAMES), len(FRAMES) + 4]) == [EXPECTED, EXPECTED + " a"]


@pytest.mark.parametrize("backend", ["pyctcdecode", "flashlight"])
def test_plain_beam_search_without_lm_follows_the_rule(backend):
    if backend == "flashlight":
        pytest.importorskip("flashlight.lib.text.decoder")
    decoder = LMDecoder(LMDecoderConfig(vocab=VOCAB, beam_width=8, backend=backend))
    assert decoder.decode_batch([rule_logits()], use_lm=False) == [EXPECTED]


def test_unk_text_can_make_unknown_characters_visible():
    table = CTCVocab.from_tokens(VOCAB, unk_text="?")
    assert table.renders[VOCAB.index("<unk>")] == "?" and table.renders[VOCAB.index("<s>")] == ""


def test_normalized_beam_text_collapses_spaces_and_composes_marks():
    assert normalize_text("  ab   e" + ACUTE + "  ") == "ab é"
    assert normalize_text(" " + ACUTE + "x") == ACUTE + "x"  # a mark after a space stays
