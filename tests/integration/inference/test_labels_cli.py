"""`ingest --label`: the label is stored on each holding the job makes; a bad one is refused."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.services import Platform


def test_ingest_label_is_holding_metadata_and_a_bad_label_is_refused(
    platform: Platform, engine: Engine, cli: Cli, tmp_path: Path
) -> None:
    folder = tmp_path / "pets"
    folder.mkdir()
    (folder / "cat.txt").write_text("A cat.")
    (folder / "dog.txt").write_text("A dog.")
    done = cli("ingest", str(folder), "--tenant", "acme", "--label", "pets")
    assert done.exit_code == 0, done.stderr
    with engine.connect() as connection:
        labels = (
            connection.execute(
                text("SELECT metadata ->> 'label' FROM holdings WHERE tenant_id = 'acme'")
            )
            .scalars()
            .all()
        )
    assert labels == ["pets", "pets"]
    for bad, said in (
        ("   ", "not only spaces"),
        ("a\tb", "control character"),
        ("x" * 129, "1-128"),
    ):
        refused = cli("ingest", str(folder), "--tenant", "acme", "--label", bad)
        assert refused.exit_code == 2, refused.stderr
        assert said in refused.stderr
    with engine.connect() as connection:
        jobs = connection.execute(text("SELECT count(*) FROM ingestion_jobs")).scalar_one()
    assert jobs == 1  # the refused ones started no job
