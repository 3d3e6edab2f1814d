"""`db shell`: psql on the configured server, and on the embedded one (kept running meanwhile)."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.conftest import Cli


def test_db_shell_runs_psql_on_the_configured_server(cli: Cli, database_url: str) -> None:
    result = cli("db", "shell", "--", "-X", "-A", "-t", "-c", "SELECT current_database()")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == urlsplit(database_url).path.lstrip("/").split("?")[0]


def test_db_shell_passes_psql_failures_on(cli: Cli) -> None:
    result = cli("db", "shell", "--", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT nope")
    assert result.exit_code == 1
    assert 'column "nope" does not exist' in result.stderr


def test_db_shell_starts_the_embedded_server_and_reads_from_stdin(embedded_cli: Cli) -> None:
    # `db shell` starts no cluster of its own (a mistyped data dir: tests/integration/test_cli.py).
    assert embedded_cli("db", "upgrade").exit_code == 0
    # psql reads its commands from the operator's terminal (here: stdin) while the server runs.
    result = embedded_cli(
        "db", "shell", "--", "-X", "-A", "-t", input_text="SELECT 6 * 7;\nSELECT current_user;\n"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["42", "postgres"]
    # The shell was the server's only user: it stopped with it, and the next shell starts it.
    again = embedded_cli("db", "shell", "--", "-X", "-A", "-t", "-c", "SELECT 1")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == "1"
