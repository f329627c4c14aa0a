"""Configuration of the MLPL model (the paper's multilingual CTC transformer with an LID head)."""

from __future__ import annotations

from transformers import PretrainedConfig

# Common Voice 6.1 languages of the paper (order = LID class ids of the default config).
CV61_LANGUAGES: tuple[str, ...] = (
    "ab", "ar", "as", "br", "ca", "cnh", "cs", "cv", "cy", "de", "dv", "el", "en", "eo", "es",
    "et", "eu", "fa", "fi", "fr", "fy-NL", "ga-IE", "hi", "hsb", "hu", "ia", "id", "it", "ja",
    "ka", "kab", "ky", "lg", "lt", "lv", "mn", "mt", "nl", "or", "pa-IN", "pl", "pt",
    "rm-sursilv", "rm-vallader", "ro", "ru", "rw", "sah", "sl", "sv-SE", "ta", "th", "tr", "tt",
    "uk", "vi", "vot", "zh-CN", "zh-HK", "zh-TW",
)  # fmt: skip

# Sizes of the named presets. "large" is the paper's model in the tensor layout of its published
# port (speechbrain/m-ctc-t-large); the smaller ones keep its shape ratios for CPU work.
PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=144, num_hidden_layers=4, num_attention_heads=4, attention_head_dim=36,
                 intermediate_size=576, max_position_embeddings=400),
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, attention_head_dim=64,
                  intermediate_size=1024, max_position_embeddings=920),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=8, attention_head_dim=96,
                 intermediate_size=3072, max_position_embeddings=920),
    "large": dict(hidden_size=1536, num_hidden_layers=36, num_attention_heads=4, attention_head_dim=384,
                  intermediate_size=6144, max_position_embeddings=920),
}  # fmt: skip

CTC_LOSS_NORMALIZATIONS = ("sqrt_target_length", "target_length", "none")

# Front-end geometry, defined once here (the config's defaults, the feature extractor, audio decoding,
# the CTC length filter and long-form decoding import it; see docs/paper.md "Model"): 25 ms feature frames
# every 10 ms at 16 kHz, then the stride-3 conv (kernel 7, padded 3 frames each side) gives one output
# frame per 30 ms. A config may override hop/stride; code that holds a model reads its config instead.
SAMPLING_RATE = 16000
FRAME_LENGTH = 400  # samples per feature frame (25 ms)
HOP_LENGTH = 160  # samples between feature frames (10 ms)
CONV_STRIDE = 3  # feature frames per output frame
SAMPLES_PER_OUTPUT_FRAME = HOP_LENGTH * CONV_STRIDE  # 480 (30 ms): `MLPLConfig.inputs_to_logits_ratio`


class MLPLConfig(PretrainedConfig):
    r"""Configuration of [`MLPLForCTC`]. Defaults are the paper's "large" model (1.06 B parameters).

    Args:
        vocab_size (`int`, defaults to 8065):
            CTC outputs: characters plus the blank (= pad, id 0). 8065 for the paper's CV 6.1 set.
        languages (`list[str]`, defaults to the 60 Common Voice 6.1 codes):
            Languages of the LID head, in class-id order. Drives `num_languages`, `lang2id`, `id2lang`.
        hidden_size (`int`, defaults to 1536): transformer width (d_model).
        num_hidden_layers (`int`, defaults to 36): number of post-LayerNorm transformer layers.
        num_attention_heads (`int`, defaults to 4): attention heads per layer.
        attention_head_dim (`int`, defaults to 384): width of one head (heads * dim may differ from hidden_size).
        intermediate_size (`int`, defaults to 6144): feed-forward width.
        hidden_act (`str`, defaults to `"relu"`): feed-forward activation.
        max_position_embeddings (`int`, defaults to 920):
            Relative distances are learned for |i - j| < max_position_embeddings (table of 2*N-1 rows);
            larger distances reuse the edge rows, so any input length works.
        hidden_dropout_prob (`float`, defaults to 0.3): dropout after attention/FFN and on the conv output.
        attention_probs_dropout_prob (`float`, defaults to 0.3): dropout on attention probabilities.
        layerdrop (`float`, defaults to 0.3): probability of skipping a whole layer in training.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon.
        layer_norm_first (`bool`, defaults to `False`):
            False = post-LayerNorm layers (the paper and its port). True = pre-LayerNorm layers plus a final
            LayerNorm: not the paper's, but it leaves the all-blank CTC plateau far sooner when small models
            train from scratch for minutes on a CPU (docs/results.md, "Limits of the demo").
        initializer_range (`float`, defaults to 0.02): std of the normal weight init.
        input_feat_per_channel (`int`, defaults to 80): log-mel features per frame.
        input_channels (`int`, defaults to 1): feature channels (kept for the port's layout).
        conv_kernel (`int`, defaults to 7): kernel of the front-end Conv1d (input padded by kernel // 2).
        conv_stride (`int`, defaults to 3): stride of the front-end Conv1d (30 ms per output frame).
        conv_dropout (`float`, defaults to 0.3): dropout after the GLU.
        lid_loss_weight (`float`, defaults to 1.0): gamma in loss = CTC + gamma * LID (paper's best value).
        ctc_loss_normalization (`str`, defaults to `"sqrt_target_length"`):
            Per-utterance CTC loss divided by sqrt(target length) (paper), by target length, or `"none"`;
            the batch loss is then the mean over utterances.
        ctc_zero_infinity (`bool`, defaults to `True`): zero infinite CTC losses (too-short inputs).
        sampling_rate (`int`, defaults to 16000) and hop_length (`int`, defaults to 160):
            feature frame rate; `inputs_to_logits_ratio` = hop_length * conv_stride = 480 samples.
    """

    model_type = "mlpl"

    def __init__(
        self,
        vocab_size: int = 8065,
        languages: list[str] | tuple[str, ...] | None = None,
        hidden_size: int = 1536,
        num_hidden_layers: int = 36,
        num_attention_heads: int = 4,
        attention_head_dim: int = 384,
        intermediate_size: int = 6144,
        hidden_act: str = "relu",
        max_position_embeddings: int = 920,
        hidden_dropout_prob: float = 0.3,
        attention_probs_dropout_prob: float = 0.3,
        layerdrop: float = 0.3,
        layer_norm_eps: float = 1e-5,
        layer_norm_first: bool = False,
        initializer_range: float = 0.02,
        input_feat_per_channel: int = 80,
        input_channels: int = 1,
        conv_kernel: int = 7,
        conv_stride: int = CONV_STRIDE,
        conv_dropout: float = 0.3,
        lid_loss_weight: float = 1.0,
        ctc_loss_normalization: str = "sqrt_target_length",
        ctc_zero_infinity: bool = True,
        sampling_rate: int = SAMPLING_RATE,
        hop_length: int = HOP_LENGTH,
        pad_token_id: int = 0,
        **kwargs,
    ):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.languages = list(CV61_LANGUAGES if languages is None else languages)
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.attention_head_dim = attention_head_dim
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layerdrop = layerdrop
        self.layer_norm_eps = layer_norm_eps
        self.layer_norm_first = layer_norm_first
        self.initializer_range = initializer_range
        self.input_feat_per_channel = input_feat_per_channel
        self.input_channels = input_channels
        self.conv_kernel = conv_kernel
        self.conv_stride = conv_stride
        self.conv_dropout = conv_dropout
        self.lid_loss_weight = lid_loss_weight
        self.ctc_loss_normalization = ctc_loss_normalization
        self.ctc_zero_infinity = ctc_zero_infinity
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self._validate()

    def _validate(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "attention_head_dim", "intermediate_size", "max_position_embeddings",
                    "input_feat_per_channel", "input_channels", "conv_kernel", "conv_stride",
                    "sampling_rate", "hop_length")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"MLPLConfig.{name} must be a positive integer, got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "layerdrop", "conv_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"MLPLConfig.{name} must be in [0, 1), got {value!r}")
        if self.lid_loss_weight < 0:
            raise ValueError(f"MLPLConfig.lid_loss_weight (gamma) must be >= 0, got {self.lid_loss_weight!r}")
        if self.ctc_loss_normalization not in CTC_LOSS_NORMALIZATIONS:
            raise ValueError(
                f"MLPLConfig.ctc_loss_normalization must be one of {CTC_LOSS_NORMALIZATIONS}, "
                f"got {self.ctc_loss_normalization!r}"
            )
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"MLPLConfig.conv_kernel must be odd (symmetric padding), got {self.conv_kernel}")
        if len(set(self.languages)) != len(self.languages) or not self.languages:
            raise ValueError("MLPLConfig.languages must be a non-empty list of distinct language codes")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary (size {self.vocab_size})")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MLPLConfig":
        """Named sizes: "tiny", "small", "base" or "large" (the paper's model). Overrides win."""
        if name not in PRESETS:
            raise ValueError(f"Unknown MLPL preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def num_languages(self) -> int:
        return len(self.languages)

    @property
    def lang2id(self) -> dict[str, int]:
        return {lang: i for i, lang in enumerate(self.languages)}

    @property
    def id2lang(self) -> dict[int, str]:
        return dict(enumerate(self.languages))

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Audio samples per output frame (480 = 30 ms at 16 kHz); the ASR pipeline's chunking uses it."""
        return self.hop_length * self.conv_stride

    def language_id(self, language: str) -> int:
        """Class id of a language code, with an error that lists the known codes."""
        try:
            return self.lang2id[language]
        except KeyError:
            raise ValueError(
                f"Unknown language {language!r}; this model knows {len(self.languages)}: {', '.join(self.languages)}"
            ) from None


__all__ = ["MLPLConfig", "CV61_LANGUAGES", "PRESETS"]
