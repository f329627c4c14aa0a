"""Shared fixtures: a tiny random MLPL checkpoint and synthetic audio. Area-specific fixtures live in
tests/helpers_<area>.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# Tests share 2 cores with whatever else runs; one thread keeps timings stable.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import modeling_mlpl  # noqa: E402  (registers the Auto classes)

TINY_LANGUAGES = ["en", "de", "pt", "ru"]
TINY_TEXTS = [
    "the cat sat on the mat",
    "Der Hund läuft schnell!",
    "Olá, como você está?",
    "Привет, как дела?",
]


def make_tone(seconds: float, frequency: float = 220.0, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: non-degenerate audio for feature and model tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 4))
    return (0.2 * wave + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def build_tiny_checkpoint(directory: str, seed: int = 0, **config_overrides) -> str:
    """Save a random tiny MLPLForCTC + processor (vocab from TINY_TEXTS) to `directory`."""
    torch.manual_seed(seed)
    tokenizer = modeling_mlpl.MLPLTokenizer.build_from_texts(TINY_TEXTS, save_directory=directory)
    config = modeling_mlpl.MLPLConfig.from_preset(
        "tiny", vocab_size=len(tokenizer), languages=TINY_LANGUAGES, **config_overrides
    )
    model = modeling_mlpl.MLPLForCTC(config).eval()
    processor = modeling_mlpl.MLPLProcessor(modeling_mlpl.MLPLFeatureExtractor(), tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """Path of a saved random tiny checkpoint (4 languages, ~1.3 M parameters). Do not modify it."""
    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_checkpoint")))


@pytest.fixture()
def tone():
    return make_tone


# Prepended to code run by `run_python_without_mlpl`: makes `import modeling_mlpl` fail as it would on a
# machine where mlpl is not installed (the test venv has it installed in editable mode).
_BLOCK_MLPL = """
import sys
class _BlockMLPL:
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_mlpl" or name.startswith("modeling_mlpl."):
            raise ImportError("modeling_mlpl is blocked in this interpreter")
sys.meta_path.insert(0, _BlockMLPL())
"""


def run_python_without_mlpl(code: str, cwd, timeout: float = 300):
    """Run `code` in a fresh interpreter (cwd outside the repo) where modeling_mlpl cannot be imported."""
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_MLPL + code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_loads_and_transcribes_without_mlpl(folder, cwd) -> str:
    """A saved folder loads (model, processor, pipeline) with trust_remote_code=True in an interpreter where
    modeling_mlpl cannot be imported, and transcribes a tone; returns the text."""
    import textwrap

    code = textwrap.dedent(
        f"""
        import numpy as np
        try:
            import modeling_mlpl
            raise SystemExit("modeling_mlpl is importable: the test would prove nothing")
        except ImportError:
            pass
        from transformers import AutoModelForCTC, AutoProcessor, pipeline
        folder = {str(folder)!r}
        model = AutoModelForCTC.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(processor).__name__ == "MLPLProcessor"
        asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)
        t = np.arange(24000) / 16000
        out = asr((0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
        assert isinstance(out["text"], str)
        print("TEXT:", repr(out["text"]))
        """
    )
    result = run_python_without_mlpl(code, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TEXT:" in result.stdout
    return result.stdout.split("TEXT:", 1)[1].strip()
