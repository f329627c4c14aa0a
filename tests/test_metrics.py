"""WER/CER must equal Hugging Face evaluate's definitions (jiwer-based, corpus-level)."""

import math

import pytest

from modeling_mlpl.evaluation.metrics import (
    cer,
    error_counts,
    first_per_language,
    mean_over_groups,
    metrics_to_markdown,
    per_language_metrics,
    wer,
)

# The docstring examples of evaluate's metrics/wer/wer.py and metrics/cer/cer.py.
EVAL_PREDICTIONS = ["this is the prediction", "there is an other sample"]
EVAL_REFERENCES = ["this is the reference", "there is another one"]


def test_wer_matches_evaluate_docstring_example():
    assert wer(EVAL_REFERENCES, EVAL_PREDICTIONS) == pytest.approx(0.5)


def test_cer_matches_evaluate_docstring_example():
    assert cer(EVAL_REFERENCES, EVAL_PREDICTIONS) == pytest.approx(0.34146341463414637)


def test_wer_is_pooled_over_utterances_not_averaged():
    # 0 errors in 4 words + 1 substitution in 1 word: pooled 1/5, a mean of rates would be 0.5.
    assert wer(["a b c d", "e"], ["a b c d", "x"]) == pytest.approx(0.2)


def test_cer_counts_spaces_as_characters():
    # "ab cd" has 5 characters; dropping the space is one deletion.
    counts = error_counts(["ab cd"], ["abcd"], "char")
    assert (counts.deletions, counts.ref_len) == (1, 5)
    assert cer(["ab cd"], ["abcd"]) == pytest.approx(0.2)


def test_wer_ignores_repeated_and_outer_spaces_but_keeps_case():
    assert wer(["a b"], ["  a   b "]) == 0.0
    assert wer(["The cat"], ["the cat"]) == pytest.approx(0.5)


def test_insertions_can_push_rates_above_one():
    counts = error_counts(["a"], ["a b c"], "word")
    assert (counts.hits, counts.insertions) == (1, 2)
    assert wer(["a"], ["a b c"]) == pytest.approx(2.0)


def test_empty_prediction_is_all_deletions():
    assert wer(["one two three"], [""]) == 1.0
    assert cer(["abc"], [""]) == 1.0


def test_mismatched_lengths_and_empty_references_raise():
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no words"):
        wer([""], ["a"])
    with pytest.raises(TypeError):
        wer("a b", "a b")


def test_per_language_table_pools_counts_and_renders_markdown():
    rows = [
        {"language": "pt", "reference": "o gato", "prediction": "o gado", "prediction_lm": "o gato"},
        {"language": "pt", "reference": "a casa", "prediction": "a casa", "prediction_lm": "a casa"},
        {"language": "nl", "reference": "de kat zat", "prediction": "de kat", "prediction_lm": "de kat zat"},
    ]
    table = per_language_metrics(rows, prediction_keys=("prediction", "prediction_lm"))
    assert list(table) == ["nl", "pt", "all"]
    assert table["pt"]["prediction"]["wer"] == pytest.approx(1 / 4)
    assert table["nl"]["prediction"]["wer"] == pytest.approx(1 / 3)
    assert table["all"]["prediction"]["wer"] == pytest.approx(2 / 7)
    assert table["all"]["prediction"]["cer"] == pytest.approx(
        cer([r["reference"] for r in rows], [r["prediction"] for r in rows])
    )
    assert table["all"]["prediction_lm"]["wer"] == 0.0
    assert table["all"]["n_words"] == 7 and table["all"]["n_utterances"] == 3
    md = metrics_to_markdown(table, ("prediction", "prediction_lm"), {"prediction": "greedy", "prediction_lm": "LM"})
    assert "| CER greedy | WER greedy | CER LM | WER LM |" in md
    assert "| pt | 2 | 4 | " in md and "**all**" in md
    assert not math.isnan(table["nl"]["prediction_lm"]["cer"])


def test_first_per_language_keeps_the_first_items_of_each_language_in_order():
    assert first_per_language(["en", "de", "en", "en", "de", "pt"], 2) == [0, 1, 2, 4, 5]


def test_first_per_language_without_a_cap_keeps_everything():
    assert first_per_language(["en", "en", "de"], None) == [0, 1, 2]


def test_mean_over_groups_is_unweighted_and_leaves_out_the_pooled_row():
    # "en": 1 error in 1 word, "de": 0 errors in 4 words -> mean over languages 0.5, pooled 0.2.
    rows = [{"language": "en", "reference": "e", "prediction": "x"},
            {"language": "de", "reference": "a b c d", "prediction": "a b c d"}]  # fmt: skip
    table = per_language_metrics(rows)
    assert mean_over_groups(table, "prediction", "wer") == pytest.approx(0.5)
    assert table["all"]["prediction"]["wer"] == pytest.approx(0.2)
