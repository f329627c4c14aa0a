"""MLPLForCTC: the paper's multilingual CTC transformer with a language-ID head.

Architecture (see the flashlight recipe `mling_pl` and its port `speechbrain/m-ctc-t-large`):
log-mel (B, T, 80) -> scalar affine -> Conv1d(k7, s3) + GLU -> N post-LN transformer layers with
learned relative-position scores -> CTC head (characters) and LID head (mean-pooled over frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_mlpl import MLPLConfig


@dataclass
class MLPLModelOutput(ModelOutput):
    """Encoder output. `output_mask` is 1 on the valid output frames of each utterance."""

    last_hidden_state: torch.FloatTensor | None = None
    output_mask: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MLPLCTCOutput(ModelOutput):
    """`loss` = `ctc_loss` + lid_loss_weight * `lid_loss` (each present only when its labels are given).

    logits: (B, T_out, vocab) CTC scores; lid_logits: (B, num_languages) utterance-level LID scores.
    output_lengths: (B,) valid frames of each row of `logits` (from the attention mask, by
    `get_output_lengths`); frames beyond are padding, and decoding them adds characters, so pass them
    on: `processor.batch_decode(out.logits, output_lengths=out.output_lengths)` (or `batch_decode(out)`).
    Last, so the fields before keep their tuple positions.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    lid_logits: torch.FloatTensor | None = None
    ctc_loss: torch.FloatTensor | None = None
    lid_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    output_lengths: torch.LongTensor | None = None


class ScalarAffine(nn.Module):
    """A learned scalar weight and bias on the input features (the port's "singleton" LayerNorm)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class ConvGLUFrontEnd(nn.Module):
    """Conv1d over time (80 -> 2*d channels, stride 3) then GLU over channels (-> d)."""

    def __init__(self, config: MLPLConfig):
        super().__init__()
        in_channels = config.input_feat_per_channel * config.input_channels
        self.padding = config.conv_kernel // 2
        self.conv = nn.Conv1d(in_channels, 2 * config.hidden_size, config.conv_kernel, stride=config.conv_stride)
        self.dropout = nn.Dropout(config.conv_dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.transpose(1, 2)  # (B, F, T)
        x = F.pad(x, (self.padding, self.padding))
        x = F.glu(self.conv(x), dim=1)  # (B, d, T_out)
        return self.dropout(x).transpose(1, 2)  # (B, T_out, d)


class RelativePositionSelfAttention(nn.Module):
    """Multi-head self-attention whose logits add q_i . E[j - i] ("relative_key" scores).

    E holds 2*N-1 learned distance embeddings (N = max_position_embeddings); distances beyond
    +-(N-1) reuse the edge rows, so the layer matches the published port below N frames and
    still works on longer inputs.
    """

    def __init__(self, config: MLPLConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.attention_head_dim
        inner = self.num_heads * self.head_dim
        self.max_distance = config.max_position_embeddings - 1
        self.query = nn.Linear(config.hidden_size, inner, bias=False)
        self.key = nn.Linear(config.hidden_size, inner, bias=False)
        self.value = nn.Linear(config.hidden_size, inner, bias=False)
        self.output = nn.Linear(inner, config.hidden_size, bias=False)
        self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.head_dim)
        self.dropout = config.attention_probs_dropout_prob

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def position_scores(self, scaled_q: torch.Tensor) -> torch.Tensor:
        """(B, H, T, Dh) scaled queries -> (B, H, T, T) scores q_i . E[clip(j - i)]."""
        T = scaled_q.shape[2]
        # Only the 2T-1 distances this input can have: cheaper than scoring the whole table.
        distances = torch.arange(-(T - 1), T, device=scaled_q.device).clamp(-self.max_distance, self.max_distance)
        table = self.distance_embedding(distances + self.max_distance)  # (2T-1, Dh)
        scores = scaled_q @ table.t().to(scaled_q.dtype)  # (B, H, T, 2T-1): column c = distance c-(T-1)
        positions = torch.arange(T, device=scaled_q.device)
        index = positions[None, :] - positions[:, None] + (T - 1)  # (T, T): j - i shifted to >= 0
        return scores.gather(-1, index.expand(*scores.shape[:2], T, T))

    def forward(
        self, hidden_states: torch.Tensor, key_padding_bias: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self._split_heads(self.query(hidden_states))
        k = self._split_heads(self.key(hidden_states))
        v = self._split_heads(self.value(hidden_states))
        bias = self.position_scores(q / math.sqrt(self.head_dim))  # (B, H, T, T)
        if key_padding_bias is not None:
            bias = bias + key_padding_bias  # (B, 1, 1, T): -inf-like on padded keys
        dropout = self.dropout if self.training else 0.0
        if output_attentions:
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias, dim=-1)
            context = F.dropout(probs, dropout, self.training) @ v
        else:
            probs = None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        context = context.transpose(1, 2).flatten(2)  # (B, T, H*Dh)
        return self.output(context), probs


class MLPLLayer(GradientCheckpointingLayer):
    """Transformer layer. Post-LN (paper): x = LN(x + Attn(x)); x = LN(x + FFN(x)).
    Pre-LN (`config.layer_norm_first`): x = x + Attn(LN(x)); x = x + FFN(LN(x))."""

    def __init__(self, config: MLPLConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.attention = RelativePositionSelfAttention(config)
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward_in = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.activation = ACT2FN[config.hidden_act]
        self.feed_forward_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.feed_forward_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.feed_forward_out(self.activation(self.feed_forward_in(x))))

    def forward(self, hidden_states, key_padding_bias=None, output_attentions=False):
        if self.layer_norm_first:
            attended, probs = self.attention(self.attention_layer_norm(hidden_states), key_padding_bias, output_attentions)
            hidden_states = hidden_states + self.dropout(attended)
            hidden_states = hidden_states + self._feed_forward(self.feed_forward_layer_norm(hidden_states))
            return hidden_states, probs
        attended, probs = self.attention(hidden_states, key_padding_bias, output_attentions)
        hidden_states = self.attention_layer_norm(hidden_states + self.dropout(attended))
        hidden_states = self.feed_forward_layer_norm(hidden_states + self._feed_forward(hidden_states))
        return hidden_states, probs


class MLPLPreTrainedModel(PreTrainedModel):
    config_class = MLPLConfig
    base_model_prefix = "mlpl"
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["MLPLLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
            module.weight.normal_(mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, ScalarAffine):
            module.weight.fill_(1.0)
            module.bias.zero_()

    def get_output_lengths(self, input_lengths: torch.LongTensor | int) -> torch.LongTensor | int:
        """Output frames for `input_lengths` feature frames (the one length rule used everywhere).

        The conv pads kernel // 2 frames on each side, so T_out = (T_in - 1) // stride + 1 (0 for 0).
        """
        stride = self.config.conv_stride
        if isinstance(input_lengths, torch.Tensor):
            return torch.div(input_lengths - 1, stride, rounding_mode="floor") + 1
        return (input_lengths - 1) // stride + 1

    def _output_mask(self, attention_mask: torch.Tensor, num_frames: int) -> torch.LongTensor:
        lengths = self.get_output_lengths(attention_mask.sum(-1).long())  # (B,)
        return (torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]).long()


class MLPLModel(MLPLPreTrainedModel):
    """The encoder: features (B, T, 80) -> hidden states (B, ceil(T/3), d)."""

    def __init__(self, config: MLPLConfig):
        super().__init__(config)
        self.feature_affine = ScalarAffine()
        self.front_end = ConvGLUFrontEnd(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(MLPLLayer(config) for _ in range(config.num_hidden_layers))
        # Pre-LN stacks end un-normalised; post-LN ones (the port's layout) already end on a LayerNorm.
        self.final_layer_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.layer_norm_first else None
        )
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MLPLModelOutput | tuple:
        if input_features.dim() != 3 or input_features.shape[-1] != self.config.input_feat_per_channel:
            raise ValueError(
                f"input_features must be (batch, frames, {self.config.input_feat_per_channel}), "
                f"got {tuple(input_features.shape)}"
            )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        x = self.feature_affine(input_features)  # (B, T, 80)
        if attention_mask is not None:
            # The affine's bias would turn zero padding into non-zero frames that the conv then sees;
            # re-zeroing them keeps every utterance's output independent of the batch it is in.
            x = x * attention_mask[..., None].to(x.dtype)
        x = self.dropout(self.front_end(x))  # (B, T_out, d)

        output_mask = key_padding_bias = None
        if attention_mask is not None:
            output_mask = self._output_mask(attention_mask, x.shape[1])  # (B, T_out)
            key_padding_bias = torch.zeros(output_mask.shape, dtype=x.dtype, device=x.device)
            key_padding_bias = key_padding_bias.masked_fill(output_mask == 0, torch.finfo(x.dtype).min)
            key_padding_bias = key_padding_bias[:, None, None, :]  # (B, 1, 1, T_out)

        all_hidden = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden += (x,)
            if self.training and self.config.layerdrop > 0 and torch.rand([]) < self.config.layerdrop:
                if output_attentions:
                    all_attentions += (None,)
                continue
            x, probs = layer(x, key_padding_bias, output_attentions)
            if output_attentions:
                all_attentions += (probs,)
        if self.final_layer_norm is not None:
            x = self.final_layer_norm(x)
        if output_hidden_states:
            all_hidden += (x,)

        if not return_dict:
            return tuple(v for v in (x, output_mask, all_hidden, all_attentions) if v is not None)
        return MLPLModelOutput(
            last_hidden_state=x, output_mask=output_mask, hidden_states=all_hidden, attentions=all_attentions
        )


class MLPLForCTC(MLPLPreTrainedModel):
    """MLPL encoder with a character CTC head and an utterance-level language-ID head."""

    def __init__(self, config: MLPLConfig):
        super().__init__(config)
        self.mlpl = MLPLModel(config)
        self.ctc_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.lid_head = nn.Linear(config.hidden_size, config.num_languages)
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        language_labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MLPLCTCOutput | tuple:
        r"""
        input_features: (B, T, 80) log-mel features from [`MLPLFeatureExtractor`].
        attention_mask: (B, T) 1 on real frames, 0 on padding.
        labels: (B, L) character ids, padded with -100 (or any negative value).
        language_labels: (B,) LID class ids (`config.lang2id`); adds gamma * cross-entropy to the loss.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
        encoded = self.mlpl(
            input_features,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden, output_mask = encoded.last_hidden_state, encoded.output_mask  # (B, T_out, d), (B, T_out)
        logits = self.ctc_head(hidden)  # (B, T_out, V)

        # Mean of per-frame LID scores over valid frames == LID head on the mean hidden state.
        valid = output_mask[..., None].to(hidden.dtype)
        pooled = (hidden * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # (B, d)
        lid_logits = self.lid_head(pooled)  # (B, num_languages)

        ctc_loss = lid_loss = loss = None
        if labels is not None:
            ctc_loss = self.ctc_loss(logits, output_mask.sum(-1), labels)
            loss = ctc_loss
        if language_labels is not None:
            if language_labels.min() < 0 or language_labels.max() >= self.config.num_languages:
                raise ValueError(f"language_labels must be in [0, {self.config.num_languages})")
            lid_loss = F.cross_entropy(lid_logits.float(), language_labels)
            if loss is not None and self.config.lid_loss_weight > 0:
                loss = loss + self.config.lid_loss_weight * lid_loss
            elif loss is None:
                loss = lid_loss

        if not return_dict:
            out = (logits, lid_logits, encoded.hidden_states, encoded.attentions)
            out = tuple(v for v in out if v is not None)
            return ((loss,) + out) if loss is not None else out
        return MLPLCTCOutput(
            loss=loss,
            logits=logits,
            lid_logits=lid_logits,
            ctc_loss=ctc_loss,
            lid_loss=lid_loss,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
            output_lengths=output_mask.sum(-1),
        )

    def ctc_loss(self, logits: torch.Tensor, output_lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Batch-mean CTC loss in fp32, each utterance normalised as `config.ctc_loss_normalization`."""
        if labels.max() >= self.config.vocab_size:
            raise ValueError(f"Label ids must be < vocab_size ({self.config.vocab_size}), got {int(labels.max())}")
        label_mask = labels >= 0
        target_lengths = label_mask.sum(-1)  # (B,)
        targets = labels.masked_select(label_mask)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T_out, B, V)
        with torch.backends.cudnn.flags(enabled=False):
            per_utterance = F.ctc_loss(
                log_probs,
                targets,
                output_lengths,
                target_lengths,
                blank=self.config.pad_token_id,
                reduction="none",
                zero_infinity=self.config.ctc_zero_infinity,
            )  # (B,)
        norm = target_lengths.clamp(min=1).to(per_utterance.dtype)
        if self.config.ctc_loss_normalization == "sqrt_target_length":
            per_utterance = per_utterance / norm.sqrt()
        elif self.config.ctc_loss_normalization == "target_length":
            per_utterance = per_utterance / norm
        return per_utterance.mean()

    @torch.no_grad()
    def identify_language(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None, top_k: int = 3
    ) -> list[list[tuple[str, float]]]:
        """Top-k (language, probability) per utterance from the LID head (beyond the paper, which only trains it)."""
        lid_logits = self(input_features, attention_mask=attention_mask).lid_logits
        probs = lid_logits.float().softmax(-1)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        id2lang = self.config.id2lang
        return [
            [(id2lang[int(i)], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(top.values, top.indices)
        ]


__all__ = ["MLPLPreTrainedModel", "MLPLModel", "MLPLForCTC", "MLPLCTCOutput", "MLPLModelOutput"]
