"""A gap, a truncated or a damaged segment in the archived WAL: `backup verify` names it and
the newest restorable point; `restore` refuses a time past that point, and the latest state
unless `--accept-wal-gap`, with which it stops at the end of the continuous WAL and says so
(real pg_waldump, real recovery on the embedded PostgreSQL 18)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.backup.conftest import Live, refused, tenants_of

SEGMENT_BYTES = 16 * 1024 * 1024


def segments_with_one_tenant_each(live: Live, *tenants: str) -> list[str]:
    """After a full backup, each tenant committed in a WAL segment of its own (archived)."""
    live.ok("backup", "full")
    segments = []
    for tenant in tenants:
        live.tenant(tenant)
        segments.append(live.archived_segment())
    return segments


def lsn_range(segment: str) -> str:
    """The WAL a 16 MiB segment of the first 4 GiB holds, as PostgreSQL 18 writes LSNs."""
    number = int(segment[16:], 16)
    return f"WAL 0/{number * SEGMENT_BYTES:08X}..0/{(number + 1) * SEGMENT_BYTES:08X}"


def verify_failure(live: Live) -> str:
    result = live.cli("backup", "verify")
    assert result.exit_code == 1, result.stdout
    assert "1 backup(s) failed verification" in result.stderr
    return result.stdout


# ~60 s under load (two restores, each a recovery and a start): one live server and backup
# for the three kinds of damage, put in place one after the other.
def test_a_gap_a_truncated_and_a_damaged_segment_are_named_and_restore_stops_before_them(
    live: Live, work: Path
) -> None:
    first, middle, _ = segments_with_one_tenant_each(live, "a", "b", "c")
    missing = live.backups / "wal" / middle
    whole = missing.read_bytes()
    missing.unlink()

    report = verify_failure(live)
    assert f"segment {middle} ({lsn_range(middle)}) is missing from the archive" in report
    assert f"archived WAL continuous to {first}; newest restorable point: the commit at" in report

    target = work / "to-time"
    error = refused(live, "restore", "latest", "--to-time", live.now(), "--data-dir", str(target))
    assert "is past the newest restorable point of backup" in error
    assert f"segment {middle} ({lsn_range(middle)}) is missing" in error
    assert not target.exists()

    # The latest state across the gap: refused unless accepted, naming the newest time.
    latest = work / "latest"
    error = refused(live, "restore", "latest", "--data-dir", str(latest))
    assert f"segment {middle} ({lsn_range(middle)}) is missing" in error
    assert f"would stop at {first}, newest restorable time the commit at " in error
    assert "--accept-wal-gap" in error
    assert not latest.exists()
    restored = live.cli("restore", "latest", "--accept-wal-gap", "--data-dir", str(latest))
    assert restored.exit_code == 0, restored.stderr
    assert f"to the end of the continuous archived WAL ({first})" in restored.stdout
    assert "to the end of the archived WAL" not in restored.stdout
    warning = f"warning: archived WAL after {first} was not replayed: segment {middle}"
    assert restored.stderr.startswith(warning), restored.stderr
    assert "; restored to the commit at " in restored.stderr
    assert tenants_of(latest) == ["a"]

    # Truncated: recovery itself would stop the server on a short segment ("wrong size"); the
    # restore reads the continuous WAL only.
    missing.write_bytes(whole[: len(whole) // 2])
    report = verify_failure(live)
    assert f"segment {middle} ({lsn_range(middle)}) is truncated: 8388608 of 16777216 bytes" in (
        report
    )
    truncated = work / "truncated"
    assert "is truncated" in refused(live, "restore", "latest", "--data-dir", str(truncated))
    restored = live.cli("restore", "latest", "--accept-wal-gap", "--data-dir", str(truncated))
    assert restored.exit_code == 0, restored.stderr
    assert restored.stderr.startswith(warning), restored.stderr
    assert tenants_of(truncated) == ["a"]

    # Bytes flipped inside the first segment's records: pg_waldump's own line names the place.
    missing.write_bytes(whole)
    damaged = live.backups / "wal" / first
    data = bytearray(damaged.read_bytes())
    data[4096 : 4096 + 16] = bytes(b ^ 0xFF for b in data[4096 : 4096 + 16])
    damaged.write_bytes(bytes(data))
    report = verify_failure(live)
    assert f"segment {first} ({lsn_range(first)}) is unreadable: pg_waldump: error:" in report
    error = refused(live, "restore", "latest", "--to-time", live.now(), "--data-dir", str(target))
    assert f"segment {first} ({lsn_range(first)}) is unreadable" in error
    assert not target.exists()
