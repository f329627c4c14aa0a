import json

import pytest
from huggingface_hub import ModelCard, ModelCardData, metadata_load

from modeling_mlpl.hub.model_card import (
    STAGE_TEMPLATES,
    CardInfo,
    hub_language_code,
    load_eval_results,
    looks_synthetic,
    render_dataset_card,
    render_model_card,
    validate_stage,
)

from helpers_hub import write_eval_json

STAGES = ["stage1-multilingual", "stage2-ft-pt", "stage4a-pl", "stage4b-pl", "mctct-converted"]


def _info(stage, tmp_path, synthetic=False, languages=("en", "pt", "sv-SE")):
    rows, _ = load_eval_results(_eval(tmp_path))
    return CardInfo(stage=stage, repo_id="me/mlpl", revision=stage, languages=list(languages),
                    datasets=["facebook/voxpopuli"], synthetic=synthetic, eval_rows=rows,
                    hyperparameters={"learning_rate": 0.01}, model_facts={"parameters": "1,000"},
                    lm_languages=["pt"])  # fmt: skip


def _eval(tmp_path):
    path = tmp_path / "eval.json"
    if not path.exists():
        write_eval_json(path, languages=("en", "pt"))
    return path


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_card_has_valid_hub_metadata(stage, tmp_path):
    card = render_model_card(_info(stage, tmp_path), )
    path = tmp_path / "README.md"
    card.save(path)
    meta = metadata_load(path)
    data = ModelCardData(**meta)  # round-trips through huggingface_hub's own parser
    assert meta["pipeline_tag"] == "automatic-speech-recognition" and meta["library_name"] == "transformers"
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["facebook/voxpopuli"]
    assert meta["language"] == ["en", "pt", "sv"] and stage in meta["tags"]
    assert data.eval_results and {r.dataset_config for r in data.eval_results} == {"en", "pt"}
    assert 'trust_remote_code=True' in card.text and f'revision="{stage}"' in card.text
    assert "pipeline(" in card.text and "LMDecoder" in card.text


def test_model_index_carries_the_measured_rates_in_percent(tmp_path):
    table = json.loads(_eval(tmp_path).read_text())
    card = render_model_card(_info("stage4a-pl", tmp_path))
    results = {(r.dataset_config, r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results[("pt", "cer", "Test CER (greedy, %)")] == round(100 * table["pt"]["prediction"]["cer"], 2)
    assert results[("en", "wer", "Test WER (LM, %)")] == round(100 * table["en"]["prediction_lm"]["wer"], 2)
    assert len(results) == 2 * 2 * 2  # languages x decoders x metrics; the pooled "all" row is not per language
    assert f"| pt | LM | {100 * table['pt']['prediction_lm']['cer']:.1f} |" in card.text


def test_synthetic_checkpoints_warn_before_anything_else(tmp_path):
    card = render_model_card(_info("stage1-multilingual", tmp_path, synthetic=True))
    assert card.content.startswith("---\n") and card.text.strip() == card.content.split("---", 2)[2].strip()
    body = card.text.lstrip()  # what follows the YAML header
    assert body.startswith("> [!CAUTION]") and "SYNTHETIC-DATA CHECKPOINT" in body.splitlines()[1]
    assert "synthetic-data" in ModelCard(card.content).data.tags
    assert "SYNTHETIC" not in render_model_card(_info("stage1-multilingual", tmp_path)).text


def test_flat_and_wrapped_eval_json_are_read(tmp_path):
    rows, meta = load_eval_results({"metrics": {"de": {"cer": 0.1, "wer": 0.3}}, "split": "dev", "dataset": "x/y"})
    assert [(r.language, r.decoder, r.cer, r.wer) for r in rows] == [("de", "greedy", 0.1, 0.3)]
    assert meta == {"dataset": "x/y", "split": "dev"}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_eval_results(bad)
    with pytest.raises(ValueError, match="no per-language"):
        load_eval_results({"all": {"cer": 0.1}})


def test_evaluation_metrics_json_with_dataset_groups_is_read(tmp_path):
    from modeling_mlpl.evaluation.metrics import per_language_metrics

    rows = [{"group": g, "reference": "o gato", "prediction": "o gado", "prediction_lm": "o gato"}
            for g in ("pt", "vp/pt")]  # fmt: skip
    table = per_language_metrics(rows, prediction_keys=["prediction", "prediction_lm"], language_key="group")
    summary = {"decoders": {}, "per_group": table, "mean_over_groups": {}, "n_utterances": 2}
    parsed, _ = load_eval_results(summary)
    assert {(r.dataset, r.language, r.decoder) for r in parsed} == {
        (None, "pt", "greedy"), (None, "pt", "LM"), ("vp", "pt", "greedy"), ("vp", "pt", "LM")}
    assert [r.cer for r in parsed if r.decoder == "LM"] == [0.0, 0.0]
    info = CardInfo(stage="stage4a-pl", repo_id="me/m", eval_rows=parsed)
    types = {(r.dataset_type, r.dataset_config) for r in render_model_card(info).data.eval_results}
    assert types == {("mozilla-foundation/common_voice_6_1", "pt"), ("vp", "pt")}


def test_stage_names_and_language_codes():
    assert validate_stage("stage2-ft-rm-sursilv") and len(STAGE_TEMPLATES) == 5
    for bad in ("stage2", "stage2-ft-", "stage5", "stage4a"):
        with pytest.raises(ValueError, match="unknown stage"):
            validate_stage(bad)
    assert [hub_language_code(c) for c in ("zh-TW", "fy-NL", "cnh", "pt")] == ["zh", "fy", "cnh", "pt"]
    assert looks_synthetic('{"corpus": "exp/espeak"}') and not looks_synthetic('{"corpus": "cv-6.1"}')


def test_converted_mctct_card_explains_the_missing_lid_head(tmp_path):
    info = _info("mctct-converted", tmp_path)
    info.base_model, info.model_facts = "speechbrain/m-ctc-t-large", {"lid_loss_weight (gamma)": 0.0}
    card = render_model_card(info)
    assert card.data.base_model == "speechbrain/m-ctc-t-large"
    assert "language-ID head was not published" in card.text
    assert "language_labels" in card.text  # how to train it


def test_dataset_card_metadata_validates(tmp_path):
    from huggingface_hub import DatasetCard

    card = render_dataset_card(repo_id="me/pl-pt", languages=["pt", "sv-SE"], source_model="me/mlpl",
                               source_audio="VoxPopuli", synthetic=True, files=["a.jsonl"], stats={"rows": 3})  # fmt: skip
    path = tmp_path / "README.md"
    card.save(path)
    meta = DatasetCard.load(path).data.to_dict()
    assert meta["task_categories"] == ["automatic-speech-recognition"] and meta["language"] == ["pt", "sv"]
    assert meta["license"] == "cc0-1.0" and "SYNTHETIC DATA" in card.text
