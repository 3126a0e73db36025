"""The README stays true: its test command is what CI runs, and its CLI examples exist."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv[^\n]+)\n```", text)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "streamlit run app.py" in commands[0]
    assert "pytest" in commands[1]


def slow_tier_command() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    [command] = re.findall(r"```bash\n(\.venv/bin/python -m pytest -m [^\n]+)\n```", text)
    return command


def test_ci_runs_the_readme_test_commands_verbatim():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci
    assert slow_tier_command() in ci  # the fast tier, then the slow tier: the full suite


def test_ci_fails_without_chromium():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "RECSYS_REQUIRE_BROWSER=1" in ci and "exit 1" in ci


def test_requirements_pin_torch_exactly():
    requirements = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in requirements and "torchvision==0.29.1" in requirements


def test_readme_cli_commands_exist():
    from recsys.cli import _COMMANDS, _load_command_modules

    _load_command_modules()
    text = (REPO_ROOT / "README.md").read_text()
    for name in re.findall(r"python -m recsys ([\w-]+)", text):
        assert name in _COMMANDS, f"README mentions `python -m recsys {name}`, which does not exist"


def test_ci_runs_lint_format_and_type_checks():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert ".venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy" in ci
    hooks = (REPO_ROOT / ".pre-commit-config.yaml").read_text()
    assert "ruff check" in hooks and "ruff format --check" in hooks and "mypy" in hooks


def test_ci_stops_when_a_step_inside_an_and_list_fails():
    """``set -e`` does not stop on a failed command inside an ``&&`` list (only on its last command): a failed
    install would let the later tiers run, and a failed ``ruff check`` would be masked by a green slow tier.
    Each such line of .ci/run is followed by a check of the list's status."""
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    chained = [i for i, line in enumerate(ci) if "&&" in line and not line.lstrip().startswith(("#", "if "))]
    assert chained
    for i in chained:
        assert ci[i + 1].startswith('status=$?; [ "$status" -eq 0 ] ||'), ci[i]
