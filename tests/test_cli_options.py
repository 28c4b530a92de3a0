"""The `runbook` command's options: --objects N, --seed N kept as its deprecated spelling, and --sample."""

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


@pytest.mark.parametrize(("given", "size"), [("50", {"count": 50}), ("0.1", {"fraction": 0.1}), ("1", {"count": 1})])
def test_sample_takes_a_count_or_a_fraction(given: str, size: dict[str, float]) -> None:
    args = build_parser().parse_args(["drill", "--sample", given])
    assert (args.sample, args.sample_seed) == (size, 1)
    assert build_parser().parse_args(["drill"]).sample is None
    assert build_parser().parse_args(["drill", "--sample", "5", "--sample-seed", "9"]).sample_seed == 9


@pytest.mark.parametrize("given", ["0", "-3", "1.5", "half"])
def test_a_sample_that_is_neither_is_bad_input(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["drill", "--sample", given])
    assert stopped.value.code == 2
    assert "--sample" in capsys.readouterr().err
