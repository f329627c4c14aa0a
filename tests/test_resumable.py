"""One resumable run (modeling_mlpl.resumable): rows survive a kill, every input is accounted for, and
an output is bound to its inputs (a resume or re-run with others is refused in one line)."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import build_tiny_checkpoint

from helpers_pl import write_audio_folder
from modeling_mlpl.resumable import (
    Accounting,
    RunMismatch,
    ShardWriter,
    bind_run,
    completed_ids,
    model_identity,
    read_shard,
    repair_shard,
    truncate_shard,
    same_path,
    shard_path,
)

from modeling_mlpl.commands import pseudo_label as pl_cli  # noqa: E402
from test_evaluation import load_script  # noqa: E402

eval_cli = load_script("evaluate")


@pytest.fixture(scope="module")
def two_models(tiny_checkpoint, tmp_path_factory):
    other = build_tiny_checkpoint(str(tmp_path_factory.mktemp("other_model")), seed=1)
    return tiny_checkpoint, other


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("resumable_audio")
    write_audio_folder(root, durations=[1.0, 1.5, 2.0])
    for i, text in enumerate(["the cat", "on the mat", "sat"]):
        (root / f"rec{i:02d}.txt").write_text(text)
    return root


def test_repair_shard_truncates_only_a_partial_last_line(tmp_path):
    path = tmp_path / "pl-rank00000.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "te')
    assert repair_shard(path) == len(b'{"id": "c", "te')
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert repair_shard(path) == 0
    path.write_bytes(b'{"id": "only", "partial')
    repair_shard(path)
    assert path.read_bytes() == b""


def test_a_torn_last_line_is_not_read_and_the_next_writer_replaces_it(tmp_path):
    path = tmp_path / "predictions.jsonl"
    with ShardWriter(path) as writer:
        writer.write([{"id": "a"}, {"id": "b"}])
    with open(path, "ab") as f:  # what a kill during the next batch's write leaves
        f.write(b'{"id": "c", "predic')
    assert [r["id"] for r in read_shard(path)] == ["a", "b"]
    with ShardWriter(path) as writer:
        writer.write([{"id": "c"}])
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'


def test_truncate_shard_cuts_before_the_first_rejected_row_and_a_torn_line(tmp_path):
    path = tmp_path / "batch_ids.rank0.jsonl"
    path.write_bytes(b'{"step": 0}\n{"step": 1}\n{"step": 2}\n{"step": 1}\n{"step": 3, "id')
    removed, last = truncate_shard(path, lambda row: row["step"] < 2)
    # The row after the cut goes too although `keep` would accept it: the log is cut, not filtered.
    assert (removed, last) == (2, {"step": 1})
    assert path.read_bytes() == b'{"step": 0}\n{"step": 1}\n'


def test_truncate_shard_of_a_missing_or_fully_kept_file_changes_nothing(tmp_path):
    assert truncate_shard(tmp_path / "absent.jsonl", lambda row: False) == (0, None)
    path = tmp_path / "kept.jsonl"
    path.write_bytes(b'{"step": 0}\n')
    assert truncate_shard(path, lambda row: True) == (0, {"step": 0})
    assert path.read_bytes() == b'{"step": 0}\n'


def test_a_writer_without_per_batch_fsync_still_flushes_every_batch(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = ShardWriter(path, fsync=False)
    writer.write([{"id": "a"}])
    assert path.read_bytes() == b'{"id": "a"}\n'  # readable by another process before sync or close
    writer.sync()
    writer.close()


def test_completed_ids_are_those_of_every_rank_of_the_kinds_asked_for(tmp_path):
    for rank, prefix, uid in [(0, "pl", "a"), (3, "pl", "b"), (1, "failures", "c"), (0, "other", "d")]:
        with ShardWriter(shard_path(tmp_path, rank, prefix)) as writer:
            writer.write([{"id": uid}])
    assert completed_ids(tmp_path, ["pl"]) == {"a", "b"}
    assert completed_ids(tmp_path, ["pl", "failures"]) == {"a", "b", "c"}


def _process(found, done, failed=0, already_done=0, elsewhere=0):
    return Accounting(found=found, done=done, failed=failed, already_done=already_done, elsewhere=elsewhere)


def test_accounting_over_all_processes_leaves_no_input_elsewhere():
    # 10 inputs met by both processes: rank 0 owns 6 (4 labelled, 1 failed, 1 from an earlier run), rank 1 owns 4.
    ranks = [_process(10, done=4, failed=1, already_done=1, elsewhere=4), _process(10, done=4, elsewhere=6)]
    run = Accounting.over_processes(ranks)
    assert run == Accounting(found=10, done=8, failed=1, already_done=1)
    assert run.remaining == 0


def test_accounting_of_one_independent_job_keeps_the_other_jobs_share_elsewhere():
    run = Accounting.over_processes([_process(10, done=5, elsewhere=4)])  # one of its 6 not reached
    assert (run.elsewhere, run.remaining) == (4, 1)
    assert run.line("labelled") == ("found 10 = labelled 5 + failed 0 + skipped 0 + already done 0 + "
                                    "other jobs' share 4 + not reached 1")  # fmt: skip


def test_accounting_survives_its_dict_form_under_any_name_for_done():
    acc = Accounting(found=9, done=3, failed=2, skipped=1, already_done=2, elsewhere=1)
    assert acc.to_dict("decoded")["decoded"] == 3 and acc.to_dict("decoded")["remaining"] == 0
    assert Accounting.from_dict(acc.to_dict("decoded"), "decoded") == acc


def test_bind_run_records_then_refuses_a_difference_naming_it(tmp_path):
    path = tmp_path / "out" / "run.json"
    bind_run(path, {"--model": "a", "--window_s": 10.0}, "use a new --out")
    bind_run(path, {"--model": "a", "--window_s": 10.0}, "use a new --out")  # the same inputs: fine
    with pytest.raises(RunMismatch) as err:
        bind_run(path, {"--model": "a", "--window_s": 0.0}, "use a new --out")
    assert str(err.value) == (f"{tmp_path / 'out'} was started with --window_s 10.0, not 0.0: resume with the same "
                              "inputs, or use a new --out")  # fmt: skip


def test_model_identity_is_the_resolved_path_and_a_hash_of_the_weights(two_models, tmp_path):
    a, b = two_models
    assert model_identity(a).startswith(f"{same_path(a)} (weights ") and model_identity(a) != model_identity(b)
    copy = tmp_path / "retrained"
    shutil.copytree(a, copy)
    before = model_identity(copy)
    shutil.copy(os.path.join(b, "model.safetensors"), copy / "model.safetensors")  # retrained in place
    assert model_identity(copy) != before
    assert model_identity("org/hub-model") == "org/hub-model"


def _pl(model, audio, out, *extra):
    return pl_cli.main(["--model", model, "--data", f"folder:{audio}", "--language", "de", "--output_dir",
                        str(out), "--threads", "1", "--resume", *extra])  # fmt: skip


def test_pseudo_label_resume_with_another_model_is_refused(two_models, audio, tmp_path, capsys):
    a, b = two_models
    out = tmp_path / "pl"
    assert _pl(a, audio, out) == pl_cli.EXIT_OK
    assert (out / "pl_run.json").exists()
    capsys.readouterr()
    assert _pl(b, audio, out) == pl_cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"pseudo_label.py: error: {out} was started with --model {model_identity(a)}, not "
                       f"{model_identity(b)}: resume with the same inputs, or start afresh with a new --output_dir")
    assert _pl(a, audio, out) == pl_cli.EXIT_OK  # an identical re-run keeps resuming


def test_pseudo_label_resume_with_other_decoding_options_is_refused(tiny_checkpoint, audio, tmp_path, capsys):
    out = tmp_path / "pl"
    assert _pl(tiny_checkpoint, audio, out) == pl_cli.EXIT_OK
    assert _pl(tiny_checkpoint, audio, out, "--threads", "2", "--io_threads", "1") == pl_cli.EXIT_OK  # how, not what
    capsys.readouterr()
    assert _pl(tiny_checkpoint, audio, out, "--window_s", "0") == pl_cli.EXIT_USAGE
    assert "was started with --window_s 10.0, not 0.0" in capsys.readouterr().err


def _eval(model, audio, out, *extra):
    return eval_cli.main(["--model", model, "--data", f"folder:{audio}", "--languages", "en", "--output_dir", str(out),
                          "--no-lm", "--window-s", "0", *extra])  # fmt: skip


def test_evaluation_rerun_with_another_model_is_refused_until_overwrite(two_models, audio, tmp_path, capsys):
    a, b = two_models
    out = tmp_path / "eval"
    assert _eval(a, audio, out) == 0
    assert _eval(a, audio, out) == 0  # the same inputs resume
    capsys.readouterr()
    assert _eval(b, audio, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"evaluate.py: error: {out} was started with --model {model_identity(a)}, not "
                   f"{model_identity(b)}: resume with the same inputs, or pass --overwrite (or choose a new --output_dir) "
                       "to start afresh")  # fmt: skip
    assert _eval(b, audio, out, "--overwrite") == 0
    assert "accounting: found 3 = decoded 3 + failed 0 + skipped 0 + already done 0" in capsys.readouterr().out


def test_evaluation_rerun_with_other_data_is_refused(tiny_checkpoint, audio, tmp_path, capsys):
    out = tmp_path / "eval"
    assert _eval(tiny_checkpoint, audio, out) == 0
    other = tmp_path / "other_audio"
    shutil.copytree(audio, other)
    capsys.readouterr()
    assert _eval(tiny_checkpoint, other, out) == 2
    assert f"was started with --data ['folder:{same_path(audio)}'], not ['folder:{same_path(other)}']" in \
        capsys.readouterr().err  # fmt: skip
