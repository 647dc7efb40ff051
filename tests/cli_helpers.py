"""Running the CLI in tests: the real entry point, its exit code and both output streams."""

from marketsynth.cli.app import main


def run(capsys, *args) -> tuple[int, str, str]:
    """``marketsynth ARGS`` through ``main``; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *phrases: str) -> str:
    """Exit code 2 and exactly one ``error: …`` line on stderr that contains every phrase; returns the line."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]
