import json
import os

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
    pipeline,
)

from modeling_mlpl import MLPLConfig, MLPLFeatureExtractor, MLPLForCTC, MLPLProcessor, MLPLTokenizer

from conftest import assert_loads_and_transcribes_without_mlpl, make_tone


def test_auto_classes_resolve_mlpl_checkpoints(tiny_checkpoint):
    assert isinstance(AutoConfig.from_pretrained(tiny_checkpoint), MLPLConfig)
    assert isinstance(AutoModelForCTC.from_pretrained(tiny_checkpoint), MLPLForCTC)
    assert isinstance(AutoFeatureExtractor.from_pretrained(tiny_checkpoint), MLPLFeatureExtractor)
    assert isinstance(AutoTokenizer.from_pretrained(tiny_checkpoint), MLPLTokenizer)
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    assert isinstance(processor, MLPLProcessor)
    assert len(processor.tokenizer) == AutoConfig.from_pretrained(tiny_checkpoint).vocab_size


def test_saved_checkpoint_has_safetensors_and_auto_map(tiny_checkpoint):
    files = set(os.listdir(tiny_checkpoint))
    assert {"model.safetensors", "config.json", "vocab.json", "modeling_mlpl.py", "configuration_mlpl.py"} <= files
    auto_map = json.load(open(os.path.join(tiny_checkpoint, "config.json")))["auto_map"]
    assert auto_map["AutoModelForCTC"] == "modeling_mlpl.MLPLForCTC"


def test_reloaded_model_gives_identical_logits(tiny_checkpoint):
    model = AutoModelForCTC.from_pretrained(tiny_checkpoint).eval()
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    inputs = processor(audio=make_tone(1.0), sampling_rate=16000)
    again = MLPLForCTC.from_pretrained(tiny_checkpoint).eval()
    assert torch.equal(model(**inputs).logits, again(**inputs).logits)


def test_processor_builds_labels_and_greedy_decodes(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    batch = processor(audio=[make_tone(0.5), make_tone(1.0)], text=["the cat", "Olá!"], sampling_rate=16000)
    assert batch["labels"].shape == (2, 7) and batch["labels"][1, 4:].eq(-100).all()
    vocab = processor.tokenizer.get_vocab()
    # frames spelling "caat" with blanks: c a a <blank> a t -> "caat"
    path = ["c", "a", "a", "<pad>", "a", "t", "t"]
    logits = torch.full((1, len(path) + 2, len(vocab)), -5.0)
    for t, tok in enumerate(path):
        logits[0, t, vocab[tok]] = 5.0
    logits[0, len(path):, vocab["x" if "x" in vocab else "<pad>"]] = 5.0  # beyond the valid length
    assert processor.batch_decode(logits, output_lengths=[len(path)]) == ["caat"]
    assert processor.decode(logits[0, : len(path)]) == "caat"


def test_pipeline_transcribes_paths_arrays_and_batches(tiny_checkpoint, tmp_path):
    import soundfile as sf

    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    audio = make_tone(1.5)
    path = tmp_path / "tone.wav"
    sf.write(path, audio, 16000)
    from_array = asr(audio)["text"]
    assert asr(str(path))["text"] == from_array
    assert asr({"raw": audio, "sampling_rate": 16000})["text"] == from_array
    assert [r["text"] for r in asr([audio, audio], batch_size=2)] == [from_array, from_array]
    chars = asr(audio, return_timestamps="char")["chunks"]
    assert "".join(c["text"] for c in chars).replace(" ", "") == from_array.replace(" ", "")


def test_pipeline_chunking_covers_a_two_minute_recording(tiny_checkpoint):
    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    model, processor = asr.model, AutoProcessor.from_pretrained(tiny_checkpoint)
    audio = np.concatenate([make_tone(10.0, frequency=100 + 10 * i, seed=i) for i in range(12)])  # 120 s
    chunked = asr(audio, chunk_length_s=10, stride_length_s=2, return_timestamps="word")
    assert chunked["chunks"][-1]["timestamp"][1] > 100.0  # reaches the end of the recording
    # Decoding the whole recording at once (relative positions are clipped, so any length works)
    with torch.no_grad():
        full = processor.batch_decode(model(**processor(audio=audio, sampling_rate=16000)).logits)[0]
    words_full, words_chunked = full.split(), chunked["text"].split()
    assert abs(len(words_chunked) - len(words_full)) <= 0.2 * len(words_full) + 2


def test_saved_folder_loads_with_remote_code_where_mlpl_is_not_installed(tiny_checkpoint, tmp_path):
    assert_loads_and_transcribes_without_mlpl(tiny_checkpoint, tmp_path)


def test_pipeline_resamples_other_rates_with_soxr_like_load_audio(tiny_checkpoint, tmp_path):
    import soundfile as sf

    from modeling_mlpl.audio import load_audio

    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    audio_8k = make_tone(1.5, sampling_rate=8000)
    sf.write(tmp_path / "tone8k.wav", audio_8k, 8000)
    expected = asr(load_audio(tmp_path / "tone8k.wav"))["text"]  # the project's own resampling path
    assert asr({"raw": audio_8k, "sampling_rate": 8000})["text"] == expected
    assert asr({"array": audio_8k, "sampling_rate": 8000, "path": "x.wav"})["text"] == expected
    chunked = asr({"raw": np.tile(audio_8k, 8), "sampling_rate": 8000}, chunk_length_s=4, stride_length_s=1)
    assert isinstance(chunked["text"], str)


def _padded_batch_and_alone(tiny_checkpoint):
    """A random model's output on a padded batch (0.4 s + 2 s tones) and each tone's text decoded alone."""
    model = AutoModelForCTC.from_pretrained(tiny_checkpoint).eval()
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    audios = [make_tone(0.4, seed=1), make_tone(2.0, frequency=330.0, seed=2)]
    with torch.no_grad():
        outputs = model(**processor(audio=audios, sampling_rate=16000))
        alone = [processor.batch_decode(model(**processor(audio=a, sampling_rate=16000)).logits)[0] for a in audios]
    # The test needs padding frames that decode to characters (else it could not fail).
    assert processor.batch_decode(outputs.logits)[0] != alone[0]
    return processor, outputs, alone


def test_batch_decode_with_the_outputs_lengths_reads_no_padding_frames(tiny_checkpoint):
    processor, outputs, alone = _padded_batch_and_alone(tiny_checkpoint)
    assert processor.batch_decode(outputs.logits, output_lengths=outputs.output_lengths) == alone


def test_batch_decode_of_the_model_output_takes_its_lengths(tiny_checkpoint):
    processor, outputs, alone = _padded_batch_and_alone(tiny_checkpoint)
    assert processor.batch_decode(outputs) == alone


def test_pipeline_refuses_a_zero_sampling_rate_in_a_dict_input(tiny_checkpoint):
    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    with pytest.raises(ValueError, match="sampling_rate must be a positive number"):
        asr({"raw": make_tone(0.5), "sampling_rate": 0})


def test_pipeline_refuses_a_zero_sampling_rate_argument(tiny_checkpoint):
    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    with pytest.raises(ValueError, match="sampling_rate must be a positive number"):
        asr(make_tone(0.5), sampling_rate=0)


def test_pipeline_sampling_rate_argument_is_the_arrays_rate(tiny_checkpoint):
    asr = pipeline("automatic-speech-recognition", model=tiny_checkpoint)
    audio_8k = make_tone(1.0, sampling_rate=8000)
    assert asr(audio_8k, sampling_rate=8000)["text"] == asr({"raw": audio_8k, "sampling_rate": 8000})["text"]
