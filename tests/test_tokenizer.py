from modeling_mlpl import MLPLConfig, MLPLTokenizer
from modeling_mlpl.tokenization_mlpl import transcript_characters


def test_vocabulary_is_deterministic_and_starts_with_the_blank(tmp_path):
    texts = ["Olá mundo", "Hello,  world!", "Über"]
    a = MLPLTokenizer.build_from_texts(texts, save_directory=tmp_path / "a")
    b = MLPLTokenizer.build_from_texts(list(reversed(texts)), save_directory=tmp_path / "b")
    assert a.get_vocab() == b.get_vocab()
    vocab = a.get_vocab()
    assert vocab["<pad>"] == 0 == a.pad_token_id
    assert vocab["<unk>"] == 1 and vocab["|"] == 2
    assert len(a) == len(vocab) == len(set("Olámundo" "Hello,world!" "Über")) + 3


def test_case_punctuation_kept_and_spaces_become_word_delimiters(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["Hello, World!"], save_directory=tmp_path)
    ids = tok("Hello, World!", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == list("Hello,|World!")
    assert tok.decode(ids, group_tokens=False) == "Hello, World!"
    assert transcript_characters(" a\t b\n") == ["a", "|", "b"]


def test_unknown_characters_map_to_unk_and_are_counted(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["abc"], save_directory=tmp_path)
    ids = tok("abz zz", add_special_tokens=False)["input_ids"]
    assert ids.count(tok.unk_token_id) == 3
    assert tok.unknown_characters["z"] == 3
    assert tok.oov_characters("abz ç") == {"z", "ç"}


def test_min_count_drops_rare_characters(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["aab", "aa"], min_count=2, save_directory=tmp_path)
    assert "a" in tok.get_vocab() and "b" not in tok.get_vocab()


def test_nfc_normalisation_merges_combining_accents(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["e\u0301"], save_directory=tmp_path)  # e + combining acute
    assert "é" in tok.get_vocab() and "\u0301" not in tok.get_vocab()


def test_vocab_size_matches_the_model_config(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["one two", "три"], save_directory=tmp_path)
    config = MLPLConfig.from_preset("tiny", vocab_size=len(tok))
    assert config.vocab_size == len(tok)
    reloaded = MLPLTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == len(tok) and reloaded.get_vocab() == tok.get_vocab()


def test_ctc_decoding_keeps_repeats_separated_by_a_blank(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["a b"], save_directory=tmp_path)
    a, b, blank, sep = (tok.convert_tokens_to_ids(t) for t in ("a", "b", "<pad>", "|"))
    ids = [a, a, blank, a, sep, b, b]
    assert tok.decode(ids) == "aa b"
    assert tok.decode(ids, skip_special_tokens=True) == "aa b"


def test_a_literal_special_token_in_text_is_spelled_as_characters_never_the_blank(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["a <pad> b", "x"], save_directory=str(tmp_path))
    ids = tok("a <pad> b", add_special_tokens=False)["input_ids"]
    assert tok.pad_token_id not in ids
    assert tok.convert_ids_to_tokens(ids) == ["a", "|", "<", "p", "a", "d", ">", "|", "b"]


def test_a_special_token_spelled_with_characters_outside_the_vocabulary_is_counted_as_unknown(tmp_path):
    tok = MLPLTokenizer.build_from_texts(["unk s"], save_directory=str(tmp_path))
    ids = tok("<unk>", add_special_tokens=False)["input_ids"]
    assert ids == [tok.unk_token_id, *tok.convert_tokens_to_ids(list("unk")), tok.unk_token_id]
    assert tok.unknown_characters == {"<": 1, ">": 1}
