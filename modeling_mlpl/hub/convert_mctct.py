"""Convert the paper's published model (``speechbrain/m-ctc-t-large``, transformers' removed
``MCTCTForCTC``) into an :class:`MLPLForCTC` checkpoint with this project's processor.

Only files are read (config.json, model.safetensors / pytorch_model.bin, vocab.json, tokenizer and
feature-extractor configs): the conversion does not need the deprecated class itself.

Tensor mapping (MCTCT key -> MLPL key; every MCTCT tensor maps, none is dropped)::

    mctct.encoder.layer_norm.singleton_{weight,bias}          -> mlpl.feature_affine.{weight,bias}
    mctct.encoder.conv.conv_layers.0.{weight,bias}            -> mlpl.front_end.conv.{weight,bias}
    mctct.encoder.layers.N.attention.self.{query,key,value}   -> mlpl.layers.N.attention.{query,key,value}
    mctct.encoder.layers.N.attention.self.distance_embedding  -> mlpl.layers.N.attention.distance_embedding
    mctct.encoder.layers.N.attention.output.dense             -> mlpl.layers.N.attention.output
    mctct.encoder.layers.N.attention.output.LayerNorm         -> mlpl.layers.N.attention_layer_norm
    mctct.encoder.layers.N.intermediate.dense                 -> mlpl.layers.N.feed_forward_in
    mctct.encoder.layers.N.output.dense                       -> mlpl.layers.N.feed_forward_out
    mctct.encoder.layers.N.output.LayerNorm                   -> mlpl.layers.N.feed_forward_layer_norm
    ctc_head.{weight,bias}                                    -> ctc_head.{weight,bias} (rows re-ordered)

Vocabulary: the port's CTC blank is its pad token (``config.pad_token_id``, 1 by default); our tokenizer
needs ``<pad>`` = blank at id 0. The blank row moves to id 0 and every other token keeps its relative
order; the CTC head's rows move with their tokens, so logits are the same numbers in a permuted order
(:attr:`VocabMapping.old_ids`). The port's pad/unk/word-delimiter strings are renamed to ours
(``<pad>``, ``<unk>``, ``|``); ``<unk>`` or ``|`` missing from the port get a new row that is never
emitted (zero weight, bias far below the others).

The LID head was not published: it is added with zero weights (uniform language scores) and the
converted config has ``lid_loss_weight = 0`` so that fine-tuning does not push a random head's
gradients into the pretrained encoder; train it as a linear probe first (see the model card).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..tokenization_mlpl import PAD_TOKEN, UNK_TOKEN, WORD_DELIMITER

__all__ = [
    "mctct_key_to_mlpl",
    "convert_state_dict",
    "config_from_mctct",
    "VocabMapping",
    "map_vocabulary",
    "read_mctct_vocabulary",
    "load_mctct_state_dict",
    "resolve_source",
    "convert_mctct_checkpoint",
]

logger = logging.getLogger(__name__)

_LAYER_RULES: tuple[tuple[str, str], ...] = (
    (r"attention\.self\.(query|key|value)\.weight", r"attention.\1.weight"),
    (r"attention\.self\.distance_embedding\.weight", r"attention.distance_embedding.weight"),
    (r"attention\.output\.dense\.weight", r"attention.output.weight"),
    (r"attention\.output\.LayerNorm\.(weight|bias)", r"attention_layer_norm.\1"),
    (r"intermediate\.dense\.weight", r"feed_forward_in.weight"),
    (r"output\.dense\.weight", r"feed_forward_out.weight"),
    (r"output\.LayerNorm\.(weight|bias)", r"feed_forward_layer_norm.\1"),
)
_FIXED_KEYS = {
    "mctct.encoder.layer_norm.singleton_weight": "mlpl.feature_affine.weight",
    "mctct.encoder.layer_norm.singleton_bias": "mlpl.feature_affine.bias",
    "mctct.encoder.conv.conv_layers.0.weight": "mlpl.front_end.conv.weight",
    "mctct.encoder.conv.conv_layers.0.bias": "mlpl.front_end.conv.bias",
    "ctc_head.weight": "ctc_head.weight",
    "ctc_head.bias": "ctc_head.bias",
}
_LAYER_KEY = re.compile(r"^mctct\.encoder\.layers\.(\d+)\.(.+)$")
# Settings of the port's MCTCTFeatureExtractor that MLPLFeatureExtractor hard-codes.
_EXPECTED_FEATURES = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 10, "win_length": 25,
                      "frame_signal_scale": 32768.0, "preemphasis_coeff": 0.97, "mel_floor": 1.0,
                      "normalize_means": True, "normalize_vars": True, "win_function": "hamming_window"}  # fmt: skip


def mctct_key_to_mlpl(key: str) -> str | None:
    """MLPL name of an MCTCTForCTC state-dict key (None if it is not a model tensor we know)."""
    if key in _FIXED_KEYS:
        return _FIXED_KEYS[key]
    match = _LAYER_KEY.match(key)
    if match:
        layer, rest = match.groups()
        for pattern, replacement in _LAYER_RULES:
            if re.fullmatch(pattern, rest):
                return f"mlpl.layers.{layer}." + re.sub(pattern, replacement, rest)
    return None


def config_from_mctct(
    mctct: Mapping[str, Any],
    vocab_size: int,
    languages: Sequence[str] | None = None,
    lid_loss_weight: float = 0.0,
):
    """MLPLConfig with the port's sizes; pad/blank id 0 (see the vocabulary note in the module doc)."""
    from ..configuration_mlpl import MLPLConfig

    def single(name: str, default: int) -> int:
        value = mctct.get(name, [default])
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(value) != 1:
            raise ValueError(f"only single-conv M-CTC-T models convert; {name}={value}")
        return int(value[0])

    if int(mctct.get("num_conv_layers", 1)) != 1 or int(mctct.get("conv_glu_dim", 1)) != 1:
        raise ValueError("only the published layout converts: num_conv_layers=1, conv_glu_dim=1")
    return MLPLConfig(
        vocab_size=vocab_size,
        languages=languages,
        hidden_size=int(mctct.get("hidden_size", 1536)),
        num_hidden_layers=int(mctct.get("num_hidden_layers", 36)),
        num_attention_heads=int(mctct.get("num_attention_heads", 4)),
        attention_head_dim=int(mctct.get("attention_head_dim", 384)),
        intermediate_size=int(mctct.get("intermediate_size", 6144)),
        hidden_act=str(mctct.get("hidden_act", "relu")),
        max_position_embeddings=int(mctct.get("max_position_embeddings", 920)),
        hidden_dropout_prob=float(mctct.get("hidden_dropout_prob", 0.3)),
        attention_probs_dropout_prob=float(mctct.get("attention_probs_dropout_prob", 0.3)),
        layerdrop=float(mctct.get("layerdrop", 0.3)),
        layer_norm_eps=float(mctct.get("layer_norm_eps", 1e-5)),
        initializer_range=float(mctct.get("initializer_range", 0.02)),
        input_feat_per_channel=int(mctct.get("input_feat_per_channel", 80)),
        input_channels=int(mctct.get("input_channels", 1)),
        conv_kernel=single("conv_kernel", 7),
        conv_stride=single("conv_stride", 3),
        conv_dropout=float(mctct.get("conv_dropout", 0.3)),
        lid_loss_weight=lid_loss_weight,
        pad_token_id=0,
    )


@dataclass
class VocabMapping:
    """New vocabulary (id order) and, per new id, the port's id whose CTC row it takes (-1 = new row)."""

    tokens: list[str]
    old_ids: list[int]
    renamed: dict[str, str]
    added: list[str]

    @property
    def vocab(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}


def read_mctct_vocabulary(directory: str | os.PathLike, vocab_size: int) -> tuple[list[str], dict[str, Any]]:
    """Tokens by id of the port's tokenizer (vocab.json + added tokens) and its tokenizer_config."""
    directory = Path(directory)
    vocab_file = directory / "vocab.json"
    if not vocab_file.is_file():
        raise FileNotFoundError(f"no vocab.json in {directory}: the port's tokenizer is needed to keep token ids")
    by_id: dict[int, str] = {}

    def add(token: str, index: int) -> None:
        if index in by_id and by_id[index] != token:
            raise ValueError(f"tokenizer files give id {index} to both {by_id[index]!r} and {token!r}")
        by_id[int(index)] = token

    for token, index in json.loads(vocab_file.read_text(encoding="utf-8")).items():
        add(token, index)
    added_file = directory / "added_tokens.json"
    if added_file.is_file():
        for token, index in json.loads(added_file.read_text(encoding="utf-8")).items():
            add(token, index)
    config_file = directory / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    for index, entry in (tok_config.get("added_tokens_decoder") or {}).items():
        add(entry["content"] if isinstance(entry, dict) else str(entry), int(index))
    if max(by_id) >= vocab_size:
        raise ValueError(f"tokenizer has id {max(by_id)} but the model's CTC head has {vocab_size} rows")
    tokens = [by_id.get(i, f"<unused_{i}>") for i in range(vocab_size)]  # head rows without a token
    if len(set(tokens)) != len(tokens):
        raise ValueError("the port's vocabulary maps one token string to two ids")
    return tokens, tok_config


def _token_name(value: Any, default: str) -> str:
    if isinstance(value, dict):
        return str(value.get("content", default))
    return default if value is None else str(value)


def map_vocabulary(tokens: Sequence[str], blank_id: int, tokenizer_config: Mapping[str, Any] | None = None) -> VocabMapping:
    """Blank -> id 0 as ``<pad>``; the rest in the port's order; unk/delimiter renamed or added."""
    tokenizer_config = tokenizer_config or {}
    if not 0 <= blank_id < len(tokens):
        raise ValueError(f"blank id {blank_id} outside the vocabulary of {len(tokens)}")
    renames = {tokens[blank_id]: PAD_TOKEN}
    unk = _token_name(tokenizer_config.get("unk_token"), UNK_TOKEN)
    delimiter = _token_name(tokenizer_config.get("word_delimiter_token"), WORD_DELIMITER)
    if unk in tokens and unk != tokens[blank_id]:
        renames[unk] = UNK_TOKEN
    if delimiter in tokens and delimiter != tokens[blank_id]:
        renames[delimiter] = WORD_DELIMITER
    order = [blank_id] + [i for i in range(len(tokens)) if i != blank_id]
    new_tokens = [renames.get(tokens[i], tokens[i]) for i in order]
    clashes = {t for t in new_tokens if new_tokens.count(t) > 1}
    if clashes:
        raise ValueError(f"renaming the port's special tokens collides with existing tokens {sorted(clashes)}")
    added = [tok for tok in (UNK_TOKEN, WORD_DELIMITER) if tok not in new_tokens]
    return VocabMapping(
        tokens=new_tokens + added,
        old_ids=order + [-1] * len(added),
        renamed={old: new for old, new in renames.items() if old != new},
        added=added,
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], mapping: VocabMapping, num_languages: int
) -> dict[str, torch.Tensor]:
    """MLPLForCTC state dict: renamed tensors, CTC rows permuted, a zero LID head. Raises on unknown keys."""
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        new_key = mctct_key_to_mlpl(key)
        if new_key is None:
            unknown.append(key)
            continue
        converted[new_key] = tensor
    if unknown:
        raise ValueError(f"{len(unknown)} M-CTC-T tensors have no MLPL counterpart, e.g. {unknown[:5]}")
    for name in ("ctc_head.weight", "ctc_head.bias"):
        if name not in converted:
            raise ValueError(f"the checkpoint has no {name}: is it an MCTCTForCTC (not a bare MCTCTModel)?")
    weight, bias = converted["ctc_head.weight"], converted["ctc_head.bias"]  # (V, d), (V,)
    old = torch.tensor(mapping.old_ids)
    keep = old >= 0
    new_weight = weight.new_zeros((len(mapping.tokens), weight.shape[1]))
    new_bias = bias.new_full((len(mapping.tokens),), float(bias.min()) - 1e4)  # added rows: never the argmax
    new_weight[keep] = weight[old[keep]]
    new_bias[keep] = bias[old[keep]]
    converted["ctc_head.weight"], converted["ctc_head.bias"] = new_weight, new_bias
    hidden = weight.shape[1]
    # Zero LID head: uniform language posteriors until it is trained (it was not published).
    converted["lid_head.weight"] = weight.new_zeros((num_languages, hidden))
    converted["lid_head.bias"] = weight.new_zeros((num_languages,))
    return converted


def load_mctct_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a saved MCTCTForCTC: model.safetensors, sharded safetensors, or pytorch_model.bin."""
    from safetensors.torch import load_file

    directory = Path(directory)
    single = directory / "model.safetensors"
    if single.is_file():
        return load_file(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(directory / shard).items()}
    binary = directory / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {directory}")


def looks_like_path(source: str | os.PathLike) -> bool:
    """A path rather than a Hub id (``owner/name``): absolute, ``./``/``../``/``~``, more or less than one
    ``/``, or ``owner`` is a folder here (``exp/missing`` where ``exp/`` exists)."""
    text = os.fspath(source)
    if text.startswith((".", "~")) or os.path.isabs(text) or text.endswith("/") or "\\" in text:
        return True
    return text.count("/") != 1 or Path(text).parent.is_dir()


def resolve_source(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local directory as is; otherwise a Hub id downloaded with ``snapshot_download``."""
    path = Path(source)
    if path.is_dir():
        return path
    if looks_like_path(source):
        raise FileNotFoundError(f"{source}: folder not found (a local M-CTC-T checkpoint folder, or a Hub id "
                                "like speechbrain/m-ctc-t-large)")  # fmt: skip
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "pytorch_model.bin", "*.txt"]
    return Path(snapshot_download(str(source), revision=revision, allow_patterns=patterns))


def _check_feature_settings(directory: Path) -> None:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        logger.warning("no preprocessor_config.json in %s: assuming the port's default MFSC features", directory)
        return
    settings = json.loads(path.read_text(encoding="utf-8"))
    different = {k: (settings[k], v) for k, v in _EXPECTED_FEATURES.items() if k in settings and settings[k] != v}
    if different:
        raise ValueError(f"the port's feature settings differ from MLPLFeatureExtractor's: {different}")


def convert_mctct_checkpoint(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    revision: str | None = None,
    languages: Sequence[str] | None = None,
    lid_loss_weight: float = 0.0,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write an MLPLForCTC checkpoint + MLPLProcessor converted from an M-CTC-T folder or Hub id.

    Also writes ``conversion.json`` (source, renamed/added tokens, the permutation) so the vocabulary
    change is auditable. ``languages``: LID classes of the new head (default: the 60 CV 6.1 codes).
    """
    from ..feature_extraction_mlpl import MLPLFeatureExtractor
    from ..modeling_mlpl import MLPLForCTC
    from ..processing_mlpl import MLPLProcessor
    from ..tokenization_mlpl import MLPLTokenizer

    directory = resolve_source(source, revision)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    mctct_config = json.loads(config_file.read_text(encoding="utf-8"))
    if mctct_config.get("model_type", "mctct") != "mctct":
        raise ValueError(f"{directory} holds a {mctct_config.get('model_type')!r} model, not M-CTC-T")
    _check_feature_settings(directory)
    state_dict = load_mctct_state_dict(directory)
    head_rows = state_dict["ctc_head.weight"].shape[0] if "ctc_head.weight" in state_dict else None
    vocab_size = int(head_rows or mctct_config.get("vocab_size", 8065))
    tokens, tok_config = read_mctct_vocabulary(directory, vocab_size)
    blank_id = int(mctct_config.get("pad_token_id", 1))
    mapping = map_vocabulary(tokens, blank_id, tok_config)

    config = config_from_mctct(mctct_config, len(mapping.tokens), languages, lid_loss_weight)
    converted = convert_state_dict(state_dict, mapping, config.num_languages)
    if dtype is not None:
        converted = {k: v.to(dtype) for k, v in converted.items()}
    with torch.device("meta"):  # no second copy of a 1 B-parameter model in memory
        model = MLPLForCTC(config)
    missing, unexpected = model.load_state_dict(converted, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"converted tensors do not fit MLPLForCTC: missing {missing}, unexpected {unexpected}")
    model.eval()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    vocab_file = out_dir / "vocab.json"
    vocab_file.write_text(json.dumps(mapping.vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    processor = MLPLProcessor(MLPLFeatureExtractor(), MLPLTokenizer(str(vocab_file)))
    processor.save_pretrained(out_dir)
    report = {
        "source": str(source),
        "revision": revision,
        "source_blank_id": blank_id,
        "renamed_tokens": mapping.renamed,
        "added_tokens": mapping.added,
        "new_id_to_source_id": mapping.old_ids,
        "lid_head": "zero-initialised (not published)",
        "lid_loss_weight": lid_loss_weight,
    }
    (out_dir / "conversion.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_dir
