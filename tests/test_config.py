import pytest
import torch

from modeling_mlpl import CV61_LANGUAGES, MLPLConfig, MLPLForCTC


def test_default_config_is_the_papers_large_model():
    config = MLPLConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (1536, 36, 4)
    assert (config.attention_head_dim, config.intermediate_size, config.vocab_size) == (384, 6144, 8065)
    assert config.languages == list(CV61_LANGUAGES) and config.num_languages == 60
    assert config.lid_loss_weight == 1.0
    assert config.inputs_to_logits_ratio == 480


def test_large_preset_has_the_published_parameter_count():
    with torch.device("meta"):  # shapes only: no 4 GB allocation
        model = MLPLForCTC(MLPLConfig.from_preset("large"))
    total = sum(p.numel() for p in model.parameters())
    lid = sum(p.numel() for p in model.lid_head.parameters())
    assert total - lid == 1_058_978_691  # encoder + CTC head, as speechbrain/m-ctc-t-large
    assert total == 1_059_070_911


def test_language_maps_follow_the_languages_list():
    config = MLPLConfig.from_preset("tiny", languages=["pt", "nl", "pl"])
    assert config.lang2id == {"pt": 0, "nl": 1, "pl": 2}
    assert config.id2lang[2] == "pl"
    with pytest.raises(ValueError, match="Unknown language 'xx'.*pt, nl, pl"):
        config.language_id("xx")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"layerdrop": 1.5}, r"layerdrop must be in \[0, 1\)"),
        ({"lid_loss_weight": -1.0}, "gamma"),
        ({"ctc_loss_normalization": "max"}, "ctc_loss_normalization must be one of"),
        ({"conv_kernel": 6}, "conv_kernel must be odd"),
        ({"languages": ["en", "en"]}, "distinct"),
        ({"vocab_size": 10, "pad_token_id": 10}, "outside the vocabulary"),
    ],
)
def test_impossible_values_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        MLPLConfig.from_preset("tiny", **overrides)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="base.*large.*small.*tiny"):
        MLPLConfig.from_preset("huge")


def test_config_round_trips_through_save_pretrained(tmp_path):
    config = MLPLConfig.from_preset("small", languages=["en", "de"], lid_loss_weight=0.5)
    config.save_pretrained(tmp_path)
    loaded = MLPLConfig.from_pretrained(tmp_path)
    assert loaded.languages == ["en", "de"] and loaded.lid_loss_weight == 0.5
    assert loaded.hidden_size == 256 and loaded.model_type == "mlpl"
