"""KenLM n-gram building and the ARPA reader/validator."""

import sys

import kenlm
import pytest
from helpers_lm import TOY_LM_SENTENCES, build_toy_lm

from modeling_mlpl.decoding import ngram_lm as lm_module
from modeling_mlpl.decoding.ngram_lm import KenLMNotFoundError, build_lm, find_kenlm_binary, iter_dataset_column, read_arpa


@pytest.fixture(scope="module")
def toy_lm(tmp_path_factory):
    return build_toy_lm(tmp_path_factory.mktemp("lm"))


def test_build_lm_writes_arpa_binary_and_unigrams(toy_lm):
    assert toy_lm.binary.stat().st_size > 0 and toy_lm.arpa.exists()
    words = toy_lm.unigrams.read_text().split()
    assert sorted(words) == sorted({w for s in TOY_LM_SENTENCES for w in s.split()})
    assert toy_lm.n_sentences == len(TOY_LM_SENTENCES)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_probabilities_sum_to_one_for_every_context(tmp_path, order):
    model = read_arpa(build_toy_lm(tmp_path, order=order).arpa)
    assert model.order == order
    sums = model.check_normalization()
    assert len(sums) > 10  # every stored history was checked
    # Unseen histories rely on back-off weights alone: they must normalise too.
    unseen = [("fish", "cat"), ("zebra",), ("on", "the", "zebra"), ("mat", "a")]
    assert all(abs(s - 1) < 1e-4 for s in model.check_normalization(unseen).values())


def test_validator_detects_a_broken_probability(toy_lm):
    model = read_arpa(toy_lm.arpa)
    log_p, backoff = model.ngrams[2][("the", "cat")]
    model.ngrams[2][("the", "cat")] = (log_p + 0.3, backoff)  # p(cat | the) doubled
    with pytest.raises(ValueError, match=r"p\(\. \| the\) sums to"):
        model.check_normalization()


def test_arpa_scores_match_kenlm(toy_lm):
    model = read_arpa(toy_lm.arpa)
    kenlm_model = kenlm.Model(str(toy_lm.binary))
    for sentence in ["the cat sat on the mat", "a dog ate a fish", "fish the zebra cat"]:
        assert model.score(sentence) == pytest.approx(kenlm_model.score(sentence), abs=1e-4)
    assert model.score("the cat sat") > model.score("cat the sat")


def test_read_arpa_rejects_truncated_or_inconsistent_files(toy_lm, tmp_path):
    text = toy_lm.arpa.read_text()
    truncated = tmp_path / "truncated.arpa"
    truncated.write_text(text.split("\\3-grams:")[0])
    with pytest.raises(ValueError, match="end"):
        read_arpa(truncated)
    wrong_count = tmp_path / "count.arpa"
    wrong_count.write_text(text.replace("ngram 1=", "ngram 1=9", 1))
    with pytest.raises(ValueError, match="header declares"):
        read_arpa(wrong_count)


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no non-empty sentences"):
        build_lm(["", "   ", "<s> </s>"], tmp_path)


def test_lm_text_drops_kenlm_reserved_tokens_and_extra_spaces(tmp_path):
    files = build_lm(["the  cat <unk> sat\t", "the cat sat"] * 3, tmp_path, order=2)
    assert set(files.unigrams.read_text().split()) == {"the", "cat", "sat"}


def test_missing_kenlm_tools_tell_the_user_to_run_make_setup(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KenLMNotFoundError, match="make setup"):
        find_kenlm_binary("lmplz")
    with pytest.raises(KenLMNotFoundError):
        lm_module.build_lm(["a b c"], tmp_path / "lm")


def test_dataset_column_is_filtered_by_language(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"sentence": ["um gato", "een kat", "o cão"], "language": ["pt", "nl", "pt"], "x": [1, 2, 3]}
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    assert list(iter_dataset_column(tmp_path / "ds", "sentence", language_column="language", language="pt")) == [
        "um gato",
        "o cão",
    ]
    with pytest.raises(ValueError, match="column 'text' not in dataset"):
        list(iter_dataset_column(tmp_path / "ds", "text"))
