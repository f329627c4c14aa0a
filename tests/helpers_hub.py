"""Fixtures for the Hub, model-card and M-CTC-T conversion tests (plain functions)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# transformers 4.46 (the last with MCTCTForCTC) installed apart from the venv (git-ignored).
REFERENCE_DIR = REPO_ROOT / ".tools" / "transformers-4.46.3"
REFERENCE_PACKAGES = [
    "transformers==4.46.3", "huggingface_hub<1.0", "tokenizers>=0.20,<0.21",
    # transformers 4.x imports requests (huggingface_hub >= 1 no longer pulls it in)
    "requests", "urllib3", "charset-normalizer", "certifi", "idna",
]  # fmt: skip

# State-dict keys and shapes of `MCTCTForCTC(MCTCTConfig(**TINY_MCTCT_CONFIG))`, recorded from
# transformers 4.46.3 (the fast tests use them without that version installed).
TINY_MCTCT_CONFIG = dict(vocab_size=33, hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                         num_attention_heads=2, attention_head_dim=16, max_position_embeddings=64)  # fmt: skip
_LAYER_SHAPES = {
    "attention.output.LayerNorm.bias": (32,),
    "attention.output.LayerNorm.weight": (32,),
    "attention.output.dense.weight": (32, 32),
    "attention.self.distance_embedding.weight": (127, 16),
    "attention.self.key.weight": (32, 32),
    "attention.self.query.weight": (32, 32),
    "attention.self.value.weight": (32, 32),
    "intermediate.dense.weight": (64, 32),
    "output.LayerNorm.bias": (32,),
    "output.LayerNorm.weight": (32,),
    "output.dense.weight": (32, 64),
}
TINY_MCTCT_SHAPES: dict[str, tuple[int, ...]] = {
    "ctc_head.bias": (33,),
    "ctc_head.weight": (33, 32),
    "mctct.encoder.conv.conv_layers.0.bias": (64,),
    "mctct.encoder.conv.conv_layers.0.weight": (64, 80, 7),
    "mctct.encoder.layer_norm.singleton_bias": (1,),
    "mctct.encoder.layer_norm.singleton_weight": (1,),
    **{f"mctct.encoder.layers.{i}.{k}": v for i in range(2) for k, v in _LAYER_SHAPES.items()},
}
# A Wav2Vec2CTCTokenizer-style vocabulary as the port has it: blank = <pad> at id 1, not 0.
TINY_MCTCT_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "|"] + list("abcdefghijklmnopqrstuvwxyzé'")


def write_mctct_tokenizer(directory: Path, tokens=TINY_MCTCT_TOKENS) -> None:
    json.dump({t: i for i, t in enumerate(tokens)}, open(directory / "vocab.json", "w", encoding="utf-8"),
              ensure_ascii=False)  # fmt: skip
    tok_config = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
                  "word_delimiter_token": "|", "tokenizer_class": "Wav2Vec2CTCTokenizer"}  # fmt: skip
    json.dump(tok_config, open(directory / "tokenizer_config.json", "w"))


def build_fake_mctct_dir(directory: str | os.PathLike, seed: int = 0) -> Path:
    """An M-CTC-T checkpoint folder as transformers 4.46 saves it (config, safetensors, tokenizer), random weights."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: torch.randn(shape, generator=generator) * 0.5 for k, shape in TINY_MCTCT_SHAPES.items()}
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    config = {"model_type": "mctct", "architectures": ["MCTCTForCTC"], "pad_token_id": 1, "bos_token_id": 0,
              "eos_token_id": 2, "conv_kernel": [7], "conv_stride": [3], "num_conv_layers": 1, "conv_glu_dim": 1,
              "hidden_act": "relu", "layer_norm_eps": 1e-5, **TINY_MCTCT_CONFIG}  # fmt: skip
    json.dump(config, open(directory / "config.json", "w"))
    write_mctct_tokenizer(directory)
    return directory


def ensure_reference_transformers() -> Path | None:
    """Install transformers 4.46.3 into REFERENCE_DIR once (pip --target; None if pip cannot reach PyPI)."""
    marker = REFERENCE_DIR / ".complete"
    if marker.is_file():
        return REFERENCE_DIR
    staging = REFERENCE_DIR.with_name(REFERENCE_DIR.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(staging), *REFERENCE_PACKAGES],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    shutil.rmtree(REFERENCE_DIR, ignore_errors=True)
    staging.rename(REFERENCE_DIR)
    (REFERENCE_DIR / ".complete").write_text("transformers 4.46.3 reference for tests/test_convert_mctct.py\n")
    return REFERENCE_DIR


# Run with PYTHONPATH=REFERENCE_DIR: a random tiny MCTCTForCTC saved with its features and logits.
REFERENCE_SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np, torch
import transformers
from transformers import MCTCTConfig, MCTCTFeatureExtractor, MCTCTForCTC
assert transformers.__version__ == "4.46.3", transformers.__version__
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
config = json.loads(sys.argv[2]); tokens = json.loads(sys.argv[3])
torch.manual_seed(0)
model = MCTCTForCTC(MCTCTConfig(**config)).eval()
with torch.no_grad():  # default init leaves biases at 0 and LayerNorms at 1: randomise all to test every mapping
    for p in model.parameters():
        p.normal_(0.0, 0.5)
model.save_pretrained(out, safe_serialization=True)
MCTCTFeatureExtractor().save_pretrained(out)
rng = np.random.default_rng(0)
for i, seconds in enumerate((0.7, 1.9)):  # 23 and 63 output frames (<= max_position_embeddings 64)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    features = MCTCTFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        logits = model(features).logits
    np.save(out / f"audio_{i}.npy", audio)
    np.save(out / f"features_{i}.npy", features.numpy())
    np.save(out / f"logits_{i}.npy", logits.numpy())
print("saved", out)
"""


def build_reference_mctct(directory: Path, reference_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(reference_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", REFERENCE_SCRIPT, str(directory), json.dumps(TINY_MCTCT_CONFIG),
         json.dumps(TINY_MCTCT_TOKENS)],
        cwd=directory.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode == 0:
        write_mctct_tokenizer(directory)
    return result


class FakeHfApi:
    """Records Hub calls; `upload_folder` copies into `remote[(repo_type, repo_id, revision)]`.

    `fail_first` makes the first N uploads raise `error` (default: a 503, which is transient).
    """

    def __init__(self, fail_first: int = 0, error: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.remote: dict[tuple[str, str, str], dict[str, bytes]] = {}
        self.fail_first = fail_first
        self.error = error

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise self.error or http_error(503)
        folder = Path(kwargs["folder_path"])
        key = (kwargs.get("repo_type") or "model", kwargs["repo_id"], kwargs.get("revision") or "main")
        self.remote[key] = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        return "commit-info"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def http_error(status: int):
    """A huggingface_hub HTTP error with the given status, as the client raises it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:  # the HTTP client huggingface_hub uses: httpx2 for huggingface_hub 2.x, httpx before
        import httpx2 as httpx
    except ImportError:
        import httpx

    request = httpx.Request("POST", "https://huggingface.co/api/models/x/commit/main")
    try:
        return HfHubHTTPError(f"{status} error", response=httpx.Response(status, request=request))
    except TypeError:  # other huggingface_hub versions take the response positionally
        return HfHubHTTPError(f"{status} error", httpx.Response(status, request=request))


def write_eval_json(path: Path, languages=("en", "pt"), seed: int = 0) -> dict:
    """A per_language_metrics-shaped evaluation file with greedy and LM rates (random but valid)."""
    rng = np.random.default_rng(seed)
    table = {}
    for lang in languages:
        cer, wer = sorted(rng.uniform(0.05, 0.6, size=2))
        table[lang] = {"n_utterances": 20, "n_words": 150, "n_chars": 700,
                       "prediction": {"cer": float(cer), "wer": float(wer)},
                       "prediction_lm": {"cer": float(cer) * 0.8, "wer": float(wer) * 0.7}}  # fmt: skip
    table["all"] = {"n_utterances": 20 * len(languages), "prediction": {"cer": 0.3, "wer": 0.5}}
    path.write_text(json.dumps(table))
    return table
