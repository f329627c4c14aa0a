"""One evaluation core: test-set and dev-set evaluation decode through modeling_mlpl.evaluation.inference."""

import json

import pytest
import soundfile as sf
from conftest import make_tone
from datasets import Dataset

from modeling_mlpl.evaluation import inference
from modeling_mlpl.evaluation.test_sets import evaluate_model, load_eval_sets
from modeling_mlpl.evaluation.inference import decode_rows, load_model
from modeling_mlpl.training.dev_eval import DevSet
from modeling_mlpl.training.dev_eval import evaluate_dev_set as evaluate_dev


@pytest.fixture()
def audio_folder(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, text in enumerate(["the cat sat", "on the mat", "the mat", "sat on"]):
        sf.write(folder / f"utt{i}.wav", make_tone(0.6 + 0.4 * i, frequency=180.0 + 40 * i, seed=i), 16000)
        (folder / f"utt{i}.txt").write_text(text)
    return folder


def test_trainer_dev_evaluation_and_evaluate_model_give_the_same_rows(tiny_checkpoint, audio_folder, tmp_path):
    (eval_set,) = load_eval_sets([f"folder:{audio_folder}"], languages=["en"])
    evaluate_model(tiny_checkpoint, [eval_set], tmp_path / "eval", use_lm=False, window_s=None, progress=False,
                   max_batch_seconds=2.0)  # fmt: skip
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    test_rows = {json.loads(line)["id"].removeprefix(f"{eval_set.name}/"): json.loads(line) for line in lines}

    model, processor = load_model(tiny_checkpoint)
    dev = evaluate_dev(model, processor, DevSet([eval_set.dataset]), max_batch_seconds=5.0)
    dev_rows = {r["id"]: r for r in dev["predictions"]}

    assert sorted(dev_rows) == sorted(test_rows) and len(dev_rows) == 4
    def columns(rows):
        return {i: [r["language"], r["reference"], r["prediction"]] for i, r in rows.items()}

    assert columns(dev_rows) == columns(test_rows)
    assert any(r["prediction"] for r in dev_rows.values())  # the random model emits text: the comparison has teeth


def test_decode_rows_yields_chunks_in_input_order_with_greedy_records(tiny_checkpoint):
    model, processor = load_model(tiny_checkpoint)
    items = [({"id": f"u{i}", "language": "en", "reference": "x"}, make_tone(0.5 + 0.5 * i, seed=i)) for i in range(3)]
    chunks = list(decode_rows(model, processor, iter(items), window_s=None, chunk_size=2))
    assert [[r["id"] for r in c.rows] for c in chunks] == [["u0", "u1"], ["u2"]]
    one = next(decode_rows(model, processor, items[2:], window_s=None))
    assert chunks[1].records() == [{"id": "u2", "language": "en", "reference": "x",
                                    "prediction": processor.greedy_decode(one.log_probs)[0]}]  # fmt: skip
    assert chunks[0].lid_log_probs.shape == (2, model.config.num_languages)


def test_dev_set_caps_each_language_after_dropping_rows_without_text(tmp_path):
    ds = Dataset.from_dict({"id": ["a", "b", "c", "d", "e"], "audio": [""] * 5, "text": ["", "x", "y", "z", "w"],
                            "language": ["en", "en", "de", "en", "en"], "duration": [1.0] * 5})  # fmt: skip
    assert [r["id"] for r in DevSet([ds], max_per_language=2).rows] == ["b", "c", "d"]


def test_there_is_one_load_model():
    from modeling_mlpl.evaluation.test_sets import load_model as from_evaluation
    from modeling_mlpl.pseudo_labeling import load_model as from_pseudo_labeling
    from modeling_mlpl.pseudo_labeling.labeler import load_model as from_labeler

    assert from_evaluation is from_pseudo_labeling is from_labeler is inference.load_model


def test_load_model_gives_an_eval_mode_model_and_its_processor(tiny_checkpoint):
    model, processor = load_model(tiny_checkpoint, "cpu")
    assert not model.training and len(processor.tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("make_dir", [False, True])
def test_load_model_names_a_path_without_a_model(tmp_path, make_dir):
    path = tmp_path / "ckpt"
    if make_dir:
        path.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no model \(config.json\) in .*ckpt"):
        load_model(path)


def test_dev_evaluation_decodes_utterances_longer_than_a_batch_as_evaluate_py_does(tiny_checkpoint, audio_folder):
    # The dev copy used to leave such utterances out (the training sampler's rule); now both decode them alone.
    (eval_set,) = load_eval_sets([f"folder:{audio_folder}"], languages=["en"])
    model, processor = load_model(tiny_checkpoint)
    dev = evaluate_dev(model, processor, DevSet([eval_set.dataset]), max_batch_seconds=1.0)
    assert dev["per_language"]["en"]["n"] == 4 and max(eval_set.dataset["duration"]) > 1.0


def test_a_disk_set_of_cut_segments_is_evaluated_on_the_segments_not_the_whole_files(tiny_checkpoint, tmp_path):
    recording = make_tone(3.0, frequency=200.0, seed=7)
    long_path = tmp_path / "long.wav"
    sf.write(long_path, recording, 16000)
    windows = [(0.5, 1.0), (1.8, 1.0)]
    cut_rows, segment_rows = [], []
    for k, (offset, duration) in enumerate(windows):
        cut = tmp_path / f"cut{k}.wav"
        sf.write(cut, recording[int(offset * 16000): int((offset + duration) * 16000)], 16000)
        common = {"id": f"seg{k}", "text": "the cat", "language": "en", "duration": duration}
        cut_rows.append({**common, "audio": str(cut)})
        segment_rows.append({**common, "audio": str(long_path), "offset": offset})
    whole_rows = [{**segment_rows[0], "id": "whole", "duration": 3.0, "offset": None}]
    predictions = {}
    for name, rows in (("cut", cut_rows), ("segments", segment_rows), ("whole", whole_rows)):
        Dataset.from_list(rows).save_to_disk(str(tmp_path / name))
        (eval_set,) = load_eval_sets([f"disk:{tmp_path / name}"], languages=["en"])
        evaluate_model(tiny_checkpoint, [eval_set], tmp_path / f"eval-{name}", use_lm=False, window_s=None,
                       progress=False)  # fmt: skip
        lines = (tmp_path / f"eval-{name}" / "predictions.jsonl").read_text().splitlines()
        predictions[name] = {json.loads(line)["id"].rsplit("/", 1)[-1]: json.loads(line)["prediction"] for line in lines}
    assert predictions["segments"] == predictions["cut"]
    assert predictions["whole"]["whole"] not in (predictions["cut"]["seg0"], predictions["cut"]["seg1"])


def test_load_model_names_a_missing_vocab_json(tiny_checkpoint, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    (folder / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks vocab\.json .*processor"):
        load_model(folder)


def test_load_model_names_missing_processor_files(tiny_checkpoint, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    for name in ("vocab.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"lacks vocab\.json .* and the feature extractor's config"):
        load_model(folder)
