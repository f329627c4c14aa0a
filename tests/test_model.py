import numpy as np
import pytest
import torch

from modeling_mlpl import MLPLConfig, MLPLFeatureExtractor, MLPLForCTC

from conftest import make_tone


def tiny_model(**overrides) -> MLPLForCTC:
    torch.manual_seed(0)
    config = MLPLConfig.from_preset("tiny", vocab_size=30, languages=["en", "de", "pt"], **overrides)
    return MLPLForCTC(config).eval()


def features(*seconds):
    audio = [make_tone(s, frequency=150 + 40 * i, seed=i) for i, s in enumerate(seconds)]
    return MLPLFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt")


def test_output_lengths_follow_the_conv_stride():
    model = tiny_model()
    batch = features(1.0, 2.5)
    out = model(**batch)
    lengths = batch["attention_mask"].sum(-1)
    assert out.logits.shape == (2, model.get_output_lengths(int(lengths.max())), 30)
    assert model.get_output_lengths(torch.tensor([1, 3, 4, 98])).tolist() == [1, 1, 2, 33]
    assert out.lid_logits.shape == (2, 3)


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_logits_do_not_depend_on_padding(layer_norm_first):
    model = tiny_model(layer_norm_first=layer_norm_first)
    with torch.no_grad():
        model.mlpl.feature_affine.bias.fill_(0.3)  # padding must be re-zeroed after the affine
        batch = features(1.0, 3.0, 2.0)
        batched = model(**batch)
        for i, n in enumerate(batch["attention_mask"].sum(-1).tolist()):
            alone = model(input_features=batch["input_features"][i : i + 1, :n])
            t = alone.logits.shape[1]
            assert torch.allclose(alone.logits[0], batched.logits[i, :t], atol=1e-4)
            assert torch.allclose(alone.lid_logits[0], batched.lid_logits[i], atol=1e-4)


def test_relative_positions_beyond_the_table_reuse_the_edge_rows():
    model = tiny_model(max_position_embeddings=8)
    attention = model.mlpl.layers[0].attention
    q = torch.randn(1, attention.num_heads, 20, attention.head_dim)
    scores = attention.position_scores(q)  # (1, H, 20, 20)
    table = attention.distance_embedding.weight
    for i, j in [(0, 0), (3, 5), (5, 3), (0, 19), (19, 0)]:
        row = table[min(max(j - i, -7), 7) + 7]
        assert torch.allclose(scores[0, :, i, j], q[0, :, i] @ row, atol=1e-5)


def test_sdpa_and_eager_attention_agree():
    model = tiny_model()
    batch = features(1.5, 2.0)
    fast = model(**batch)
    eager = model(**batch, output_attentions=True)
    assert torch.allclose(fast.logits, eager.logits, atol=1e-4)
    assert len(eager.attentions) == model.config.num_hidden_layers
    assert eager.attentions[0].shape[-1] == fast.logits.shape[1]


def test_loss_is_ctc_plus_gamma_times_lid():
    model = tiny_model(lid_loss_weight=0.5)
    batch = features(1.0, 2.0)
    labels = torch.tensor([[3, 4, 5, -100], [6, 7, 7, 8]])
    out = model(**batch, labels=labels, language_labels=torch.tensor([0, 2]))
    assert torch.isclose(out.loss, out.ctc_loss + 0.5 * out.lid_loss)
    only_ctc = model(**batch, labels=labels)
    assert torch.isclose(only_ctc.loss, out.ctc_loss) and only_ctc.lid_loss is None


def test_ctc_loss_is_normalised_by_sqrt_target_length():
    batch = features(2.0)
    labels = torch.tensor([[3, 4, 5, 6]])
    losses = {}
    for norm in ("none", "sqrt_target_length", "target_length"):
        model = tiny_model(ctc_loss_normalization=norm)
        losses[norm] = model(**batch, labels=labels).ctc_loss
    assert torch.isclose(losses["sqrt_target_length"], losses["none"] / 2)
    assert torch.isclose(losses["target_length"], losses["none"] / 4)


def test_ctc_loss_is_fp32_under_bf16_autocast():
    model = tiny_model()
    batch = features(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch, labels=torch.tensor([[3, 4, 5]]))
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss)


def test_bad_labels_and_inputs_give_clear_errors():
    model = tiny_model()
    batch = features(1.0)
    with pytest.raises(ValueError, match="Label ids must be < vocab_size"):
        model(**batch, labels=torch.tensor([[3, 99]]))
    with pytest.raises(ValueError, match="language_labels must be in"):
        model(**batch, language_labels=torch.tensor([5]))
    with pytest.raises(ValueError, match=r"input_features must be \(batch, frames, 80\)"):
        model(input_features=torch.zeros(1, 50, 40))


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_training_step_reduces_loss_and_reaches_every_parameter(layer_norm_first):
    model = tiny_model(layerdrop=0.0, hidden_dropout_prob=0.0, conv_dropout=0.0, attention_probs_dropout_prob=0.0,
                       layer_norm_first=layer_norm_first)
    model.train()
    batch = features(1.0, 1.2)
    labels = torch.tensor([[3, 4, 5, 6], [7, 8, 9, -100]])
    languages = torch.tensor([0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss = model(**batch, labels=labels, language_labels=languages).loss
        optimizer.zero_grad()
        loss.backward()
        if first is None:
            first = loss.item()
            assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
    assert loss.item() < 0.7 * first


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = features(1.0)
    labels = torch.tensor([[3, 4, 5]])
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(layerdrop=0.0)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        torch.manual_seed(1)  # same dropout masks
        model(**batch, labels=labels).loss.backward()
        grads.append(model.ctc_head.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_layerdrop_skips_layers_only_in_training():
    model = tiny_model(layerdrop=0.99)
    batch = features(1.0)
    model.eval()
    hidden = model.mlpl(**batch, output_hidden_states=True).hidden_states
    assert not torch.allclose(hidden[-1], hidden[0])  # layers ran
    model.train()
    torch.manual_seed(0)
    hidden = model.mlpl(**batch, output_hidden_states=True).hidden_states
    assert torch.equal(hidden[-1], hidden[0])  # all 4 layers dropped (p = 0.99 each)


def test_identify_language_returns_sorted_top_k_probabilities():
    model = tiny_model()
    with torch.no_grad():
        model.lid_head.weight.zero_()
        model.lid_head.bias.copy_(torch.tensor([0.0, 2.0, 1.0]))
    result = model.identify_language(**features(1.0, 2.0), top_k=2)
    assert [lang for lang, _ in result[0]] == ["de", "pt"]
    probs = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
    assert result[1][0][1] == pytest.approx(probs[1], abs=1e-5)


def test_pre_layer_norm_stack_ends_with_a_layer_norm_and_post_ln_keeps_the_port_layout():
    pre, post = tiny_model(layer_norm_first=True), tiny_model()
    assert pre.mlpl.final_layer_norm is not None and post.mlpl.final_layer_norm is None
    extra = {k for k in pre.state_dict()} - {k for k in post.state_dict()}
    assert extra == {"mlpl.final_layer_norm.weight", "mlpl.final_layer_norm.bias"}
