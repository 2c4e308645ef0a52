"""The operator commands' command lines: what parses, what is a usage error (exit 2)."""

import pytest

from fanout.cli.main import build_parser, main


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(list(argv))


def test_the_helm_backfill_job_command_line_parses() -> None:
    args = parse("backfill", "--sink", "postgres", "--from", "earliest", "--id", "r3")
    assert (args.sink, args.start, args.backfill_id, args.tables) == (
        "postgres",
        "earliest",
        "r3",
        [],
    )


def test_backfill_options() -> None:
    args = parse(
        "backfill",
        "--sink",
        "clickhouse",
        "--from",
        "2025-01-31T00:00:00Z",
        "--tables",
        "inventory.*",
        "billing.invoices",
        "--batch-size",
        "100",
        "--progress",
        "lines",
    )
    assert args.tables == ["inventory.*", "billing.invoices"]
    assert (args.batch_size, args.progress) == (100, "lines")


def test_dlq_commands() -> None:
    ls = parse(
        "dlq",
        "ls",
        "--sink",
        "postgres",
        "--error-class",
        "MappingError",
        "--since",
        "2h",
        "--table",
        "inventory.*",
        "--pending",
        "--json",
    )
    assert ls.error_class == ["MappingError"] and ls.pending and ls.json
    show = parse("dlq", "show", "--sink", "postgres", "1:42")
    assert show.entry == (1, 42)
    replay = parse("dlq", "replay", "--sink", "postgres", "0:1", "0:2", "--dry-run")
    assert replay.entries == [(0, 1), (0, 2)] and replay.dry_run


def test_offsets_reset_takes_yes_or_dry_run_not_both() -> None:
    assert parse("offsets", "reset", "--sink", "postgres", "--to", "latest", "--yes").yes
    with pytest.raises(SystemExit) as exit_info:
        parse("offsets", "reset", "--sink", "postgres", "--to", "latest", "--yes", "--dry-run")
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill"],  # --sink is required
        ["backfill", "--sink", "postgres", "--from", "last tuesday"],
        ["backfill", "--sink", "postgres", "--batch-size", "0"],
        ["dlq", "show", "--sink", "postgres", "x:y"],
        ["dlq", "ls", "--sink", "postgres", "--since", "soon"],
        ["offsets", "reset", "--sink", "postgres", "--to", "someday"],
        ["lag", "--sink", "nosuch"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_every_operator_command_and_option_has_help() -> None:
    parser = build_parser()
    seen = 0
    for action in _walk(parser):
        if action.dest not in ("help", "command_name", "dlq_action", "offsets_action"):
            assert action.help, f"{action.option_strings or action.dest} has no help"
            seen += 1
    assert seen > 30


def _walk(parser):  # type: ignore[no-untyped-def]
    import argparse

    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"command {choice.dest} has no help"
            for sub in action.choices.values():
                yield from _walk(sub)
