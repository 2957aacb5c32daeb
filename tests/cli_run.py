"""Run the `circuitnn` command in-process for a test: (exit code, stdout, stderr)."""

from __future__ import annotations

from circuitnn.cli import main


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what earlier steps printed
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
