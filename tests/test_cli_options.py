"""The `runbook` command's options: --objects N, and --seed N kept as its deprecated spelling."""

from __future__ import annotations

import pytest

from runbook_lib.cli import build_parser


@pytest.mark.parametrize(("command", "default"), [("backend", None), ("lab", 300)])
def test_objects_sets_the_vault_size_without_a_note(
    command: str, default: int | None, capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    assert parser.parse_args([command]).objects == default
    assert parser.parse_args([command, "--objects", "1000"]).objects == 1000
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["backend", "lab"])
def test_seed_still_works_and_says_once_that_it_is_deprecated(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([command, "--seed", "1000"])

    assert args.objects == 1000
    assert not hasattr(args, "seed")
    note = capsys.readouterr().err
    assert note.count("\n") == 1
    assert "--seed" in note and "deprecated" in note and "--objects" in note


def test_the_later_spelling_wins_like_any_repeated_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["backend", "--seed", "5", "--objects", "7"]).objects == 7
    assert build_parser().parse_args(["backend", "--objects", "7", "--seed", "5"]).objects == 5


@pytest.mark.parametrize("command", ["backend", "lab", "drill"])
def test_help_names_objects(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "--objects N" in capsys.readouterr().out


def test_random_seed_is_not_taken_for_the_deprecated_seed(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["backend", "--random-seed", "9"])
    assert (args.objects, args.random_seed) == (None, 9)
    assert capsys.readouterr().err == ""
