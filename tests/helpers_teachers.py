"""Tiny random-initialised transformers teachers saved as checkpoints (offline, seeded): a
Wav2Vec2ForCTC, a HubertForCTC, an MMS-style Wav2Vec2 with two adapters and a nested vocabulary, and
folders of kinds the labeler must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import torch

LETTERS = list("abcdefghij")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
            mask_time_prob=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
            feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0)  # fmt: skip


def _vocab(letters=LETTERS) -> dict[str, int]:
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", *letters]
    return {t: i for i, t in enumerate(tokens)}


def _processor(folder: Path, vocab: dict, target_lang: str | None = None):
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    (folder / "vocab.json").write_text(json.dumps(vocab))
    kwargs = {"target_lang": target_lang} if target_lang else {}
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|", **kwargs)  # fmt: skip
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)  # fmt: skip
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)


def _bias_letters(lm_head: torch.nn.Linear, seed: int) -> None:
    """A random tiny CTC model emits mostly blanks: lift the letters (and the delimiter) so that several
    of them win on different frames, and the output depends on the audio."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lm_head.weight.mul_(8.0)
        lm_head.bias.zero_()
        lm_head.bias[4:] = 2.0 + torch.rand(lm_head.bias.shape[0] - 4, generator=g)


def build_ctc_teacher(folder, architecture: str = "wav2vec2", seed: int = 0, letters=LETTERS) -> str:
    """A tiny Wav2Vec2ForCTC (or HubertForCTC) with its Wav2Vec2Processor, saved to `folder`; `letters`
    are its output characters (e.g. a corpus's, so that its PLs are text a student can learn)."""
    from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vocab(list(letters))
    config_cls, model_cls = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2ForCTC), "hubert": (HubertConfig, HubertForCTC)}[architecture]
    torch.manual_seed(seed)
    model = model_cls(config_cls(vocab_size=len(vocab), pad_token_id=0, **TINY)).eval()
    _bias_letters(model.lm_head, seed)
    model.save_pretrained(folder)
    _processor(folder, vocab).save_pretrained(folder)
    return str(folder)


MMS_LANGUAGES = {"por": list("aeiouptkr"), "nld": list("zyxwvsnml")}


def build_mms_teacher(folder, seed: int = 0) -> str:
    """An MMS-style checkpoint: adapters for "por" and "nld" (adapter.<lang>.safetensors, each with its
    own lm_head over its own letters) and a nested vocab.json."""
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocabs = {lang: _vocab(letters) for lang, letters in MMS_LANGUAGES.items()}
    torch.manual_seed(seed)
    config = Wav2Vec2Config(vocab_size=len(vocabs["por"]), pad_token_id=0, adapter_attn_dim=8, **TINY)
    model = Wav2Vec2ForCTC(config).eval()
    model.init_adapter_layers()
    for k, lang in enumerate(MMS_LANGUAGES):
        torch.manual_seed(seed + 100 + k)
        model.init_adapter_layers()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "adapter" in name:
                    p.normal_(0, 0.2)
        _bias_letters(model.lm_head, seed + k)
        save_file({k: v.contiguous() for k, v in model._get_adapters().items()}, str(folder / f"adapter.{lang}.safetensors"))
    model.load_adapter  # noqa: B018 (the base weights are saved with the last adapter in place)
    model.save_pretrained(folder)
    _processor(folder, vocabs, target_lang="por").save_pretrained(folder)
    return str(folder)


def build_unsupported_checkpoint(folder, model_type: str = "made-up-model") -> str:
    """A folder whose config.json names a model_type no teacher handles."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": ["MadeUpModel"]}))
    return str(folder)
