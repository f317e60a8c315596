"""Ordinary mistakes (issue 15, item 5 and the smaller ones; item 6's reports): exit 2, one clear message naming the
file, line or key and what to do, no traceback, nothing left on disk."""

import errno
import json
import tempfile

import pytest

from ftorch.cli import main

from conftest import TINY, chat, read_run, run_cli, run_dirs


def _fails(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "bug in ftorch" not in err
    return err


def test_recipe_with_a_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("train:\n  lr: [1e-3\n")
    err = _fails(capsys, "plan", f"recipe={bad}")
    assert f"{bad}:3:1: not valid YAML" in err and "line 2, column 7" in err


def test_binary_recipe_file(tmp_path, capsys):
    bad = tmp_path / "blob.yaml"
    bad.write_bytes(bytes(range(128, 256)) * 4)
    err = _fails(capsys, "plan", f"recipe={bad}")
    assert f"{bad}: not a text file" in err


def test_recipe_that_is_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    assert "expected a mapping of keys" in _fails(capsys, "plan", f"recipe={bad}")


def test_yaml_error_in_a_recipe_of_recipes_dir_and_in_a_conf_group_file(project_copy, capsys):
    (project_copy / "recipes" / "broken.yaml").write_text("train:\n lr: 1\n  epochs: 2\n")
    err = _fails(capsys, "plan", "recipe=broken")
    assert "recipes/broken.yaml:3:" in err and "not valid YAML" in err
    (project_copy / "recipes" / "broken.yaml").unlink()
    (project_copy / "conf" / "train" / "lora.yaml").write_text("lr: {1e-3\n")
    err = _fails(capsys, "plan", "recipe=quickstart-tiny")
    assert "conf/train/lora.yaml:2:1: not valid YAML" in err


def test_error_in_a_recipe_given_by_path_blames_that_file(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("# @package _global_\ntrain:\n  epoch: 2\n")
    err = _fails(capsys, "plan", f"recipe={mine}")
    assert f"{mine}: train.epoch" in err and "conf/train/lora.yaml" not in err
    assert "(a file outside" in err  # said on the console


def test_recipe_name_with_folders_is_refused(tmp_path, capsys):
    outside = tmp_path / "some" / "file.yaml"
    outside.parent.mkdir()
    outside.write_text("train:\n  lr: 1e-3\n")
    err = _fails(capsys, "plan", "recipe=../../../../" + str(outside.with_suffix("")).lstrip("/"))
    assert "a recipe name is the name of a file in recipes/" in err and ".yaml" in err


def test_runs_path_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    for runs in (blocker, blocker / "deeper"):
        err = _fails(capsys, "train", *TINY, f"paths.runs={runs}")
        assert f"{blocker} is a file, not a folder" in err and "paths.runs=" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.parametrize("code,words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "not writable"),
                                        (errno.ENOSPC, "no space left")])
def test_unwritable_or_full_runs_folder(code, words, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(code, "refused")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    err = _fails(capsys, "train", *TINY, f"paths.runs={tmp_path / 'runs'}")
    assert words in err and "paths.runs=" in err
    assert list(tmp_path.iterdir()) == []  # no run dir, no stray .hydra/


def test_directory_as_a_data_file(tmp_path, capsys):
    err = _fails(capsys, "plan", f"data.train={tmp_path}")
    assert f"{tmp_path} is a directory, not a data file" in err
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["train.epochs=true", "train.batch_size=false", "train.lr=true"])
def test_boolean_for_a_number(override, capsys):
    err = _fails(capsys, "plan", override)
    assert f"{override.partition('=')[0]}: expected a number, got the boolean" in err


def test_unquoted_non_ascii_path_gets_a_quoting_hint(capsys):
    err = _fails(capsys, "plan", "data.train=/tmp/dé/x.jsonl")
    assert "LexerNoViableAltException" not in err
    assert """'data.train="/tmp/dé/x.jsonl"'""" in err
    err = _fails(capsys, "plan", 'data.train="/tmp/dé/x.jsonl"')  # quoted: read, then not found
    assert "file not found: /tmp/dé/x.jsonl" in err


def test_data_check_reports_weight_zero_and_truncation_with_lines(tmp_path, capsys):
    from ftorch.config.schema import TinyModel
    from ftorch.tiny import ensure_tiny_model

    folder = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    rows = [chat("hi", "ok"), chat("word " * 200, "ok"), chat("hi", "yes " * 150),
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "weight": 0}]}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "check", str(path), "--model", str(folder), "--max-length", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    found = {(i["line"], i["code"]): i["message"] for i in report["issues"]}
    assert "teaches nothing" in found[(2, "truncated")]
    assert "trained (assistant) tokens (" in found[(3, "truncated")]
    assert (1, "truncated") not in found
    assert "weight 0" in found[(4, "nothing_to_learn")]
    assert report["truncated"] == 2 and report["losing_trained"] == 2


def test_train_refuses_a_cut_of_trained_tokens_and_names_the_lines(tmp_path):
    rows = [chat(f"question {i}", f"answer {i}") for i in range(6)] + [chat("q", "long answer " * 60)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = tmp_path / "runs"
    result = run_cli("train", *TINY, f"paths.runs={runs}", f"data.train={data}", "data.validation=null",
                     "data.test=null", "eval=none", "train.max_length=32", "train.max_steps=1")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{data}:7:" in result.stderr and "train.allow_truncation=true" in result.stderr
    assert read_run(run_dirs(runs)[0])["status"] == "failed"
