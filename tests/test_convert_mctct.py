import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_mlpl import MLPLFeatureExtractor, MLPLForCTC, MLPLProcessor
from modeling_mlpl.hub.convert_mctct import (
    convert_mctct_checkpoint,
    convert_state_dict,
    map_vocabulary,
    mctct_key_to_mlpl,
)

from helpers_hub import (
    REPO_ROOT,
    TINY_MCTCT_SHAPES,
    TINY_MCTCT_TOKENS,
    build_fake_mctct_dir,
    build_reference_mctct,
    ensure_reference_transformers,
)


def test_every_mctct_tensor_maps_onto_an_mlpl_tensor_of_the_same_shape(tmp_path):
    out = convert_mctct_checkpoint(build_fake_mctct_dir(tmp_path / "src"), tmp_path / "dst")
    model = MLPLForCTC.from_pretrained(out)
    ours = model.state_dict()
    mapped = {mctct_key_to_mlpl(k): shape for k, shape in TINY_MCTCT_SHAPES.items()}
    assert None not in mapped and len(set(mapped)) == len(TINY_MCTCT_SHAPES)  # injective, total
    assert set(ours) - set(mapped) == {"lid_head.weight", "lid_head.bias"}  # the only new tensors
    for key, shape in mapped.items():
        if key.startswith("ctc_head"):
            continue  # rows re-ordered (and possibly extended): checked below
        assert tuple(ours[key].shape) == shape, key


def test_ctc_rows_follow_their_tokens_and_blank_moves_to_id_0(tmp_path):
    src = build_fake_mctct_dir(tmp_path / "src")
    out = convert_mctct_checkpoint(src, tmp_path / "dst")
    old = load_file(src / "model.safetensors")
    new = MLPLForCTC.from_pretrained(out).state_dict()
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["<pad>"] == 0 and vocab["<s>"] == 1 and vocab["<unk>"] == 3 and vocab["|"] == 4
    for old_id, token in enumerate(TINY_MCTCT_TOKENS):
        assert torch.equal(new["ctc_head.weight"][vocab[token]], old["ctc_head.weight"][old_id]), token
        assert new["ctc_head.bias"][vocab[token]] == old["ctc_head.bias"][old_id]
    assert not new["lid_head.weight"].any() and MLPLForCTC.from_pretrained(out).config.lid_loss_weight == 0.0
    report = json.loads((out / "conversion.json").read_text())
    assert report["source_blank_id"] == 1 and report["new_id_to_source_id"][:3] == [1, 0, 2]


def test_converted_checkpoint_transcribes_through_the_processor(tmp_path):
    out = convert_mctct_checkpoint(build_fake_mctct_dir(tmp_path / "src"), tmp_path / "dst")
    processor = MLPLProcessor.from_pretrained(out)
    model = MLPLForCTC.from_pretrained(out).eval()
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    with torch.no_grad():
        out_ = model(**processor(audio=audio, sampling_rate=16000))
    assert out_.logits.shape[-1] == len(processor.tokenizer) == 33
    assert torch.allclose(out_.lid_logits, torch.zeros_like(out_.lid_logits))  # untrained head: uniform
    assert isinstance(processor.batch_decode(out_.logits)[0], str)


def test_vocabulary_without_unk_or_delimiter_gets_never_emitted_rows():
    mapping = map_vocabulary(["a", "<blank>", "b"], blank_id=1, tokenizer_config={"unk_token": None})
    assert mapping.tokens == ["<pad>", "a", "b", "<unk>", "|"] and mapping.old_ids == [1, 0, 2, -1, -1]
    state = {"ctc_head.weight": torch.randn(3, 4), "ctc_head.bias": torch.randn(3)}
    converted = convert_state_dict(state, mapping, num_languages=2)
    hidden = torch.randn(5, 4)
    logits = hidden @ converted["ctc_head.weight"].T + converted["ctc_head.bias"]
    assert (logits.argmax(-1) < 3).all()  # the added rows never win
    with pytest.raises(ValueError, match="no MLPL counterpart"):
        convert_state_dict({**state, "mctct.encoder.extra.weight": torch.ones(1)}, mapping, 2)


def test_cli_reports_a_missing_source_in_one_line(tmp_path):
    script = REPO_ROOT / "run_scripts" / "convert_mctct_checkpoint.py"
    result = subprocess.run([sys.executable, str(script), "--source", str(tmp_path / "nowhere"), "--output_dir",
                             str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "nowhere" in result.stderr


@pytest.mark.slow
def test_converted_logits_equal_transformers_446_mctct(tmp_path):
    """A random MCTCTForCTC from the real transformers 4.46.3, converted: same logits, same features."""
    reference = ensure_reference_transformers()
    if reference is None:
        pytest.skip("could not pip-install transformers==4.46.3 into .tools/ (no PyPI access)")
    src = tmp_path / "mctct"
    result = build_reference_mctct(src, reference)
    assert result.returncode == 0, result.stderr[-3000:]
    out = convert_mctct_checkpoint(src, tmp_path / "mlpl")
    model = MLPLForCTC.from_pretrained(out).eval()
    old_ids = json.loads((out / "conversion.json").read_text())["new_id_to_source_id"]
    extractor = MLPLFeatureExtractor()
    for i in range(2):
        features = torch.from_numpy(np.load(src / f"features_{i}.npy"))  # (1, T, 80) from MCTCTFeatureExtractor
        expected = torch.from_numpy(np.load(src / f"logits_{i}.npy"))  # (1, T_out, V)
        with torch.no_grad():
            logits = model(features).logits
        assert logits.shape == expected.shape
        assert (logits - expected[..., old_ids]).abs().max() < 1e-4
        ours = extractor(np.load(src / f"audio_{i}.npy"), sampling_rate=16000, return_tensors="np")["input_features"]
        # measured 1.8e-4 / 4.1e-4 on unit-variance features (float32 rounding of the port's numpy path)
        assert np.abs(ours - np.load(src / f"features_{i}.npy")).max() < 1e-3


def test_a_missing_path_like_source_is_folder_not_found_not_a_hub_lookup(tmp_path, monkeypatch, capsys):
    from test_evaluation import load_script

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("asked the Hub"))
    (tmp_path / "exp").mkdir()
    monkeypatch.chdir(tmp_path)
    code = load_script("convert_mctct_checkpoint").main(["--source", "exp/missing", "--output_dir", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("error: exp/missing: folder not found (a local M-CTC-T checkpoint "
                                               "folder, or a Hub id like speechbrain/m-ctc-t-large)")  # fmt: skip


def test_only_owner_slash_name_without_a_local_owner_folder_is_taken_for_a_hub_id(tmp_path, monkeypatch):
    from modeling_mlpl.hub.convert_mctct import looks_like_path

    monkeypatch.chdir(tmp_path)
    assert not looks_like_path("speechbrain/m-ctc-t-large")
    assert all(looks_like_path(s) for s in ("./m", "../m", "/abs/m", "~/m", "a/b/c", "single", "dir/"))
