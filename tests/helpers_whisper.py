"""A tiny random Whisper checkpoint built offline: a byte-level BPE trained on a few sentences plus
Whisper's special tokens, saved as a `WhisperProcessor` folder with a multilingual `GenerationConfig`.

The token layout follows the real checkpoints (text tokens, then `<|endoftext|>`,
`<|startoftranscript|>`, the language tokens, the task tokens, `<|nospeech|>`, `<|notimestamps|>` and
the 1501 timestamps `<|0.00|>`..`<|30.00|>` in 0.02 s steps), because transformers derives the
timestamp ids from `no_timestamps_token_id + 1` and the seek of long-form decoding from them.
"""

from __future__ import annotations

import os

import torch

TEXTS = [
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dog",
    "o gato sentou no tapete",
    "de kat zat op de mat",
    "speech recognition with pseudo labels in many languages",
]
LANGUAGES = ["en", "pt", "nl", "de", "fr"]  # the languages this tiny checkpoint knows (fy is not one)
TEXT_VOCAB_SIZE = 300
TEXT_LOGIT_SCALE = 3.0


def build_tiny_whisper(directory: str | os.PathLike, seed: int = 0, alignment_heads: bool = False,
                       max_target_positions: int = 40) -> str:  # fmt: skip
    """Save a random tiny `WhisperForConditionalGeneration` + `WhisperProcessor` to `directory`.

    d_model 32, one encoder and one decoder layer; `alignment_heads=True` also writes
    `generation_config.alignment_heads` (word times). `max_target_positions` bounds each window's
    decode: random weights rarely emit `<|endoftext|>`, so every window runs to it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizerFast)  # fmt: skip

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # Only the texts' own (ASCII) bytes: random weights then emit readable text, never broken UTF-8.
    trainer = trainers.BpeTrainer(vocab_size=TEXT_VOCAB_SIZE, show_progress=False)
    bpe.train_from_iterator(TEXTS, trainer)
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{lang}|>" for lang in LANGUAGES]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                   "<|notimestamps|>"] + [f"<|{i * 0.02:.2f}|>" for i in range(1501)])  # fmt: skip
    bpe.add_special_tokens(specials)
    bpe_path = os.path.join(directory, "bpe.json")
    bpe.save(bpe_path)
    tokenizer = WhisperTokenizerFast(tokenizer_file=bpe_path, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                                     eos_token="<|endoftext|>", pad_token="<|endoftext|>")  # fmt: skip
    os.remove(bpe_path)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials[:13]}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=max_target_positions,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        begin_suppress_tokens=None, suppress_tokens=None,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # text logits large enough to beat the 1501 timestamps' summed probability, so
        model.model.decoder.embed_tokens.weight[:eot] *= TEXT_LOGIT_SCALE  # random weights write text
    generation = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        max_length=max_target_positions, is_multilingual=True,
        lang_to_id={f"<|{lang}|>": ids[f"<|{lang}|>"] for lang in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50, begin_suppress_tokens=[eot], suppress_tokens=[],
    )  # fmt: skip
    if alignment_heads:
        generation.alignment_heads = [[0, 0], [0, 1]]
    model.generation_config = generation
    model.save_pretrained(directory)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(directory)
    return directory
