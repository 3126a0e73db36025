"""The command line: --json prints one JSON object last; failures exit non-zero with a message on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_cli(*args: str, workspace) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys", *args, "--workspace", str(workspace)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_import_prints_counts_as_json(tmp_path, small_bundle):
    done = run_cli("import", str(small_bundle), "--json", workspace=tmp_path / "ws")
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
    assert not any((tmp_path / "ws" / "datasets").iterdir())


def test_demo_command_writes_and_imports(tmp_path):
    done = run_cli("demo", "--out", str(tmp_path / "demo"), "--users", "60", "--items", "40",
                   "--interactions", "900", "--import", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["counts"]["users"] == 60 and result["counts"]["items"] == 40


@pytest.mark.parametrize("command", ["demo", "import", "datasets", "encoders", "features"])
def test_every_command_has_help(command, tmp_path):
    done = run_cli(command, "--help", workspace=tmp_path)
    assert done.returncode == 0 and "--json" in done.stdout


def test_unknown_dataset_is_a_clear_error(tmp_path):
    done = run_cli("features", "nope", "--json", workspace=tmp_path / "ws")
    assert done.returncode == 1 and "no dataset named 'nope'" in done.stderr
