"""The command line: --json prints one JSON object last; failures exit non-zero with a message on stderr."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_cli(*args: str, workspace, in_process: bool = True) -> subprocess.CompletedProcess:
    """``python -m recsys ARGS --workspace WS``: by default ``recsys.cli.main`` in this process (an interpreter
    start with torch costs seconds per call); ``in_process=False`` starts the real entry point."""
    argv = [*args, "--workspace", str(workspace)]
    if not in_process:
        return subprocess.run(
            [sys.executable, "-m", "recsys", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
        )
    from recsys.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse: --help, or a usage error
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    return subprocess.CompletedProcess(["recsys", *argv], code, out.getvalue(), err.getvalue())


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_import_prints_counts_as_json(tmp_path, small_bundle):
    # the real entry point (python -m recsys) once; the other tests call recsys.cli.main in process
    done = run_cli("import", str(small_bundle), "--json", workspace=tmp_path / "ws", in_process=False)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["ok"] and result["imported"] and result["counts"]["items"] == 3
    listed = last_json(run_cli("datasets", "--json", workspace=tmp_path / "ws").stdout)
    assert [d["name"] for d in listed["datasets"]] == ["small"]


def test_failing_import_exits_non_zero_with_message(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "items.csv").write_text("title\nno id here\n")
    (tmp_path / "bad" / "interactions.csv").write_text("user_id,item_id\nu,1\n")
    done = run_cli("import", str(tmp_path / "bad"), "--json", workspace=tmp_path / "ws")
    assert done.returncode == 1
    assert "required column(s) 'item_id' missing" in done.stderr
    result = last_json(done.stdout)
    assert result["ok"] is False and result["errors"][0]["code"] == "missing_column"


def test_check_only_writes_nothing(tmp_path, small_bundle):
    done = run_cli("import", str(small_bundle), "--check", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 0 and last_json(done.stdout)["imported"] is False
    assert not (tmp_path / "ws").exists()  # not even the workspace's empty folders
    # the role each column got, with the reason (what the app's Data page shows)
    columns = last_json(done.stdout)["columns"]
    assert columns["items"]["item_id"]["role"] == "id" and columns["items"]["item_id"]["reason"]
    assert "items columns: item_id -> id" in done.stdout


def test_demo_command_writes_and_imports(tmp_path):
    done = run_cli(
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--users",
        "60",
        "--items",
        "40",
        "--interactions",
        "900",
        "--import",
        "--json",
        workspace=tmp_path / "ws",
    )
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["counts"]["users"] == 60 and result["counts"]["items"] == 40
    # the features command reports the attribute features it extracts too, not only text and image
    features = run_cli("features", "demo", "--modalities", "attributes", "--json", workspace=tmp_path / "ws")
    assert features.returncode == 0, features.stderr
    attributes = last_json(features.stdout)["attributes"]
    assert attributes == {"categorical": ["brand", "category"], "multi_label": ["tags"], "numeric": ["price"]}
    assert "attributes {'categorical'" in features.stdout


@pytest.mark.parametrize("command", ["demo", "import", "datasets", "encoders", "features"])
def test_every_command_has_help(command, tmp_path):
    done = run_cli(command, "--help", workspace=tmp_path)
    assert done.returncode == 0 and "--json" in done.stdout


def test_unknown_dataset_is_a_clear_error(tmp_path):
    done = run_cli("features", "nope", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 1 and "no dataset named 'nope'" in done.stderr


# ----------------------------------------------------------------------------- run ids and dataset names are names

NAME_RULE = "use letters, digits, '.', '_' and '-' (no leading dot, at most 100 characters)"


def test_a_path_as_run_id_is_refused_plainly_without_a_traceback(tmp_path):
    done = run_cli("train", "--run-id", "../../x", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: run id '../../x' is not allowed: {NAME_RULE}"
    result = last_json(done.stdout)
    assert result == {"command": "train", "ok": False, "error": f"run id '../../x' is not allowed: {NAME_RULE}"}
    assert not (tmp_path / "x").exists() and not any((tmp_path / "ws" / "runs").iterdir())


def test_an_unknown_model_or_baseline_is_refused_before_any_training(tmp_path):
    """A mistyped baseline was found only after the model had trained (minutes), and left a failed run that
    `runs`, `evaluate` and `recommend` took for a finished one."""
    for flags, what in ((("--baselines", "mostpop", "nosuch"), "baseline"), (("--model", "nosuch"), "model")):
        done = run_cli("train", "--data", "demo", *flags, "--json", workspace=tmp_path / "ws")
        assert done.returncode == 1, done.stderr
        assert f"unknown {what} 'nosuch'; choose one of" in done.stderr and "Traceback" not in done.stderr
        assert last_json(done.stdout)["ok"] is False
    runs = tmp_path / "ws" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def _other_workspace_run(tmp_path):
    """A run folder (config + saved model files) in another workspace, to be addressed by its path."""
    run = tmp_path / "elsewhere" / "runs" / "r1"
    (run / "model").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"run_id": "r1", "config": {"dataset": "demo"}}))
    (run / "model" / "config.json").write_text("{}")
    (run / "metrics.json").write_text("{}")
    return run


@pytest.mark.parametrize(
    "argv",
    [
        ["recommend", "{run}", "--user", "u1"],
        ["evaluate", "{run}"],
        ["explain", "{run}", "--user", "u1", "--item", "i1"],
        ["recommend-explained", "{run}", "--user", "u1"],
        ["recommend-new", "{run}", "--like", "i1"],
        ["train", "--resume", "{run}"],
        ["train", "--data", "../nowhere"],
        ["import", "{bundle}", "--name", "../../etc"],
        ["import", "{bundle}", "--name", "/tmp/abs", "--check"],
        ["demo", "--out", "{tmp}/demo", "--import", "--name", "a/b"],
        ["features", "../demo"],
    ],
)
def test_every_command_refuses_a_path_where_a_name_belongs(argv, tmp_path, small_bundle, capsys):
    from recsys.cli import main

    run = _other_workspace_run(tmp_path)
    argv = [a.format(run=run, bundle=small_bundle, tmp=tmp_path) for a in argv]
    code = main([*argv, "--json", "--quiet", "--workspace", str(tmp_path / "ws")])
    out, err = capsys.readouterr()
    assert code == 1
    kind = "dataset name" if argv[0] in ("import", "demo", "features") or "--data" in argv else "run id"
    assert err.startswith(f"error: {kind} '") and err.rstrip().endswith(f"is not allowed: {NAME_RULE}")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] is False and "is not allowed" in result["error"]
    assert not (tmp_path / "demo").exists()  # the demo was not even generated
    for folder in (tmp_path / "ws" / "datasets", tmp_path / "ws" / "runs"):
        assert not folder.exists() or not any(folder.iterdir())


def test_import_derives_a_valid_name_from_the_zip_name(tmp_path, small_bundle, capsys):
    import zipfile

    from recsys.cli import main

    archive = tmp_path / "My Shop (2).zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in small_bundle.rglob("*"):
            if path.is_file():
                handle.write(path, path.relative_to(small_bundle).as_posix())
    code = main(["import", str(archive), "--json", "--quiet", "--workspace", str(tmp_path / "ws")])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["dataset"] == "my-shop-2"


@pytest.mark.parametrize("command", [["recommend", "some-run", "--user", "u"], ["recommend-new", "some-run"]])
@pytest.mark.parametrize("k", ["0", "-5", "ten"])
def test_a_list_length_below_one_is_refused_plainly(tmp_path, command, k):
    done = run_cli(*command, "--k", k, workspace=tmp_path / "ws")
    assert done.returncode == 2
    assert "argument --k: must be" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("blend", ["5", "-1", "lots"])
def test_a_blend_outside_0_to_1_is_refused_as_the_api_refuses_it(tmp_path, blend):
    # 5 was taken as 1 and -1 as 0 without a word, where the HTTP API answers 422
    done = run_cli("recommend-new", "some-run", "--query", "telescope", "--blend", blend, workspace=tmp_path / "ws")
    assert done.returncode == 2
    assert "argument --blend: must be" in done.stderr and "Traceback" not in done.stderr


def test_a_blend_without_a_query_is_refused_not_ignored(tmp_path):
    done = run_cli("recommend-new", "some-run", "--like", "i1", "--blend", "0.3", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 1 and "--blend weighs a --query" in done.stderr


def test_a_usage_error_still_ends_with_one_json_object_and_names_its_command(tmp_path):
    """Scripts read the last line of `--json`: a wrong flag printed argparse's usage only, and a mistyped flag
    showed the list of commands instead of the command's own usage."""
    done = run_cli("recommend", "some-run", "--user", "u", "--k", "0", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 2
    assert last_json(done.stdout) == {
        "command": "recommend",
        "ok": False,
        "error": "argument --k: must be 1 or more, not 0",
        "error_type": "usage",
    }
    typo = run_cli("recommend", "some-run", "--user", "u", "--kk", "5", workspace=tmp_path / "ws")
    assert typo.returncode == 2 and not typo.stdout.strip()  # no JSON unless asked for
    assert "usage: python -m recsys recommend" in typo.stderr and "unrecognized arguments: --kk 5" in typo.stderr
