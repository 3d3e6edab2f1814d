"""The data-plane commands as an operator uses them: ingest, atoms, holdings, models, samples."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.conftest import Cli


def seeded(cli: Cli) -> Cli:
    assert cli("db", "seed").exit_code == 0
    return cli


def test_ingest_json_summary_and_export(cli: Cli, data_dir: Path) -> None:
    seeded(cli)
    docs = data_dir / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Title\n\nFirst paragraph.\n\nSecond paragraph.\n")
    (docs / "empty.txt").write_bytes(b"")
    result = cli("--json", "ingest", str(docs), "--tenant", "sample")
    assert result.exit_code == 1, result.stderr  # one file failed
    job = json.loads(result.stdout)
    assert set(job) == {"job_id", "status", "new_bytes", "reused_bytes", "files", "failed"}
    assert (job["status"], job["failed"]) == ("completed_with_errors", 1)
    by_name = {Path(f["path"]).name: f for f in job["files"]}
    assert set(by_name["a.md"]) == {
        "path",
        "atom_id",
        "status",
        "error",
        "new_bytes",
        "reused_bytes",
        "embedded",
        "similar",
        "unknown_only",
    }
    assert by_name["a.md"]["status"] == "ingested"
    assert by_name["a.md"]["embedded"] == 3  # the heading and both paragraphs
    assert by_name["empty.txt"]["status"] == "failed"
    assert "empty.txt" in by_name["empty.txt"]["error"]
    assert "empty file" in by_name["empty.txt"]["error"]

    atom_id = by_name["a.md"]["atom_id"]
    out = data_dir / "a.out"
    exported = cli("atoms", "export", atom_id, "--tenant", "sample", "-o", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert out.read_bytes() == (docs / "a.md").read_bytes()

    shown = json.loads(cli("--json", "atoms", "show", atom_id, "--tenant", "sample").stdout)
    assert shown["kind"] == "composite"
    assert shown["modality"] == "text"
    assert shown["components"] == 3
    assert shown["holders"][0]["source_uri"].endswith("/docs/a.md")

    again = json.loads(cli("--json", "ingest", str(docs / "a.md"), "--tenant", "sample").stdout)
    assert again["files"][0]["status"] == "unchanged"
    assert again["new_bytes"] == 0


def test_other_tenants_cannot_read_an_atom(cli: Cli, data_dir: Path, database_url: str) -> None:
    seeded(cli)
    from sqlalchemy import create_engine

    from hartonomous.security import ensure_tenant

    engine = create_engine(database_url)
    with engine.begin() as connection:
        ensure_tenant(connection, "other", "Other")
    engine.dispose()
    secret = data_dir / "secret.txt"
    secret.write_text("only for sample\n")
    job = json.loads(cli("--json", "ingest", str(secret), "--tenant", "sample").stdout)
    atom_id = job["files"][0]["atom_id"]
    denied = cli("atoms", "export", atom_id, "--tenant", "other", "-o", str(data_dir / "x"))
    assert denied.exit_code == 1
    assert f"atom {atom_id} not found for tenant 'other'" in denied.stderr
    assert not (data_dir / "x").exists()
    assert not (data_dir / "x.partial").exists()


def test_unknown_tenant_and_bad_atom_id_are_one_line(cli: Cli, data_dir: Path) -> None:
    (data_dir / "f.txt").write_text("x\n")
    unknown = cli("ingest", str(data_dir / "f.txt"), "--tenant", "ghost")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == (
        "hartonomous: error: unknown tenant 'ghost': "
        "create it with `hartonomous tenants create ghost`"
    )
    bad = cli("atoms", "show", "xyz", "--tenant", "sample")
    assert bad.exit_code == 2
    assert "'xyz' is not an atom id" in bad.stderr


def test_holdings_release_and_gc(cli: Cli, data_dir: Path) -> None:
    seeded(cli)
    path = data_dir / "blob.bin"
    path.write_bytes(os.urandom(1_000_000))
    job = json.loads(cli("--json", "ingest", str(path), "--tenant", "sample").stdout)
    assert job["new_bytes"] == path.stat().st_size
    holdings = json.loads(cli("--json", "holdings", "list", "--tenant", "sample").stdout)
    assert len(holdings) == 1
    # Instants as the API writes them (RFC 3339, UTC, Z).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", holdings[0]["created_at"])
    nothing = json.loads(cli("--json", "atoms", "gc").stdout)
    assert nothing["atoms_deleted"] == 0
    released = cli("holdings", "delete", holdings[0]["holding_id"], "--tenant", "sample")
    assert released.exit_code == 0, released.stderr
    collected = json.loads(cli("--json", "atoms", "gc").stdout)
    assert collected["atoms_deleted"] >= 2
    assert collected["bytes_freed"] == path.stat().st_size


def test_seed_samples_puts_a_real_model_in_the_store(cli: Cli) -> None:
    first = cli("--json", "db", "seed", "--samples")
    assert first.exit_code == 0, first.stderr
    samples = json.loads(first.stdout)["samples"]
    assert samples["status"] == "completed"
    assert len(samples["files"]) == 4
    models = json.loads(cli("--json", "models", "list", "--tenant", "sample").stdout)
    assert len(models) == 1
    model = json.loads(
        cli("--json", "models", "show", models[0]["model_id"], "--tenant", "sample").stdout
    )
    assert model["format"] == "safetensors"
    assert model["architecture"] == "bert"
    assert model["tensor_count"] == len(model["tensors"]) == 104
    assert model["parameter_count"] == 22_713_728
    assert model["dtypes"] == {"f32": 103, "i64": 1}
    second = json.loads(cli("--json", "db", "seed", "--samples").stdout)["samples"]
    assert {f["status"] for f in second["files"]} == {"unchanged"}
    assert second["new_bytes"] == 0


def test_export_component_stream_of_a_composite(cli: Cli, data_dir: Path) -> None:
    from hartonomous.atoms import decode_component_stream

    seeded(cli)
    doc = data_dir / "doc.md"
    doc.write_text("one\n\ntwo\n\none\n\ntwo\n")
    job = json.loads(cli("--json", "ingest", str(doc), "--tenant", "sample").stdout)
    out = data_dir / "doc.cs"
    atom_id = job["files"][0]["atom_id"]
    result = cli(
        "atoms", "export", atom_id, "--tenant", "sample", "-o", str(out), "--component-stream"
    )
    assert result.exit_code == 0, result.stderr
    runs = decode_component_stream(out.read_bytes())
    # "one\n\n" and "two\n\n" alternate, so four runs of two distinct paragraph atoms.
    assert [run.repeat for run in runs] == [1, 1, 1, 1]
    assert len({run.child for run in runs}) == 3  # the last "two\n" has no blank line after it
    leaf = runs[0].child.hex()
    refused = cli(
        "atoms", "export", leaf, "--tenant", "sample", "-o", str(out), "--component-stream"
    )
    assert refused.exit_code == 1
    assert "is a leaf: it has no ComponentStream" in refused.stderr
