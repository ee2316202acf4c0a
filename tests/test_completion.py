"""`weightselect completion bash`: a static bash completion script generated from the parser."""
import argparse
import shutil
import subprocess
import sys

import pytest

from weightselect.cli import build_parser, main


def _parser_words():
    """Every command and, per command, every option string, read from argparse's own tables."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sorted(p._option_string_actions) for name, p in sub.choices.items()}


@pytest.fixture(scope="module")
def script():
    done = subprocess.run([sys.executable, "-m", "weightselect", "completion", "bash"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_script_names_every_command_and_option(script):
    words = _parser_words()
    assert {"select", "train", "probe", "recipe", "completion"} <= set(words)
    for command, options in words.items():
        block = next(line for line in script.splitlines() if line.strip().startswith(f"{command}) words="))
        assert set(options) <= set(block.split("words=", 1)[1].strip(" ;'").split()), command
    top = next(line for line in script.splitlines() if line.strip().startswith('"") words='))
    assert set(words) | {"--help", "--version", "--debug"} <= set(top.split("words=", 1)[1].strip(" ;'").split())


def _complete(script, tmp_path, *words):
    """COMPREPLY of the script's function for the command line ``words`` (the last one being typed)."""
    path = tmp_path / "completion.bash"
    path.write_text(script)
    line = " ".join(f"'{w}'" for w in words)
    code = f'source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _weightselect; echo "${{COMPREPLY[*]}}"'
    done = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_choices(script, tmp_path):
    subprocess.run(["bash", "-n", "-c", script], check=True, timeout=30)
    assert _complete(script, tmp_path, "weightselect", "tr") == ["train"]
    assert _complete(script, tmp_path, "weightselect", "train", "--tens") == ["--tensorboard"]
    assert _complete(script, tmp_path, "weightselect", "train", "--mode", "") == ["finetune", "probe"]
    assert _complete(script, tmp_path, "weightselect", "select", "--teacher", "t", "--method", "ra") == [
        "random", "random_nocons"]
    assert _complete(script, tmp_path, "weightselect", "completion", "") == ["bash"]
    assert _complete(script, tmp_path, "weightselect", "train", "--out", "ru") == []  # file names (bash's default)


def test_an_unknown_shell_is_one_usage_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["completion", "zsh"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'zsh'" in err
