"""The archived WAL a backup needs for point-in-time restore (docs/operations.md, "Restore").

Recovery from a backup reads WAL segment after segment, from the backup's start onwards,
from the archive (`<backup directory>/wal`), and ends at the first segment it cannot find or
read: everything after a gap or a damaged segment is out of reach even though it is archived.
This module walks that sequence the way recovery does (following timeline history files as
`recovery_target_timeline = 'latest'` does), checks each segment with `pg_waldump`, and
says where the continuous WAL ends and the newest commit in it (a `--to-time` must be earlier
than that commit: recovery stops before the first commit past the target).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from hartonomous.backup.catalog import BackupInfo, backup_path, wal_dir
from hartonomous.backup.tools import BackupToolError, run_program

__all__ = [
    "ArchiveCheck",
    "Dumped",
    "ProblemKind",
    "SegmentProblem",
    "check_archive",
    "newest_archived_age_seconds",
]

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$")
_HISTORY_LINE = re.compile(r"^\s*(\d+)\s+([0-9A-F]+/[0-9A-F]+)", re.MULTILINE)
_SEGMENT_SIZE = re.compile(r"^Bytes per WAL segment:\s+(\d+)$", re.MULTILINE)
# pg_waldump's line for a commit or abort (recovery_target_time looks at exactly these), its
# time printed in the zone of the process (UTC: run_program's TZ below).
_COMMIT = re.compile(
    r"lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (?:COMMIT|ABORT)(?:_PREPARED)? (?:\d+: )?"
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)

ProblemKind = Literal["missing", "truncated", "unreadable"]
# pg_waldump's verdict per segment file, shared by the checks of backups on one archive.
Dumped = dict[Path, tuple[ProblemKind | None, str]]


@dataclass(frozen=True)
class SegmentProblem:
    """Where the continuous WAL ends early: a segment missing while later ones are archived,
    or one shorter than a segment, or one `pg_waldump` cannot read."""

    kind: ProblemKind
    segment: str
    start_lsn: str
    end_lsn: str
    detail: str

    def describe(self) -> str:
        held = f"WAL {self.start_lsn}..{self.end_lsn}"
        if self.kind == "missing":
            return f"segment {self.segment} ({held}) is missing from the archive ({self.detail})"
        return f"segment {self.segment} ({held}) is {self.kind}: {self.detail}"


@dataclass
class ArchiveCheck:
    """What restoring ``backup_id`` can reach. ``newest_commit_at`` / ``newest_commit_lsn``:
    the last commit in the continuous WAL (None: none after the backup's start);
    ``continuous_to``: the last segment recovery reads; ``problem``: the first gap or damaged
    segment that cuts WAL off; ``missing_history``: timeline history files recovery needs."""

    backup_id: str
    timeline: int
    continuous_to: str | None = None
    newest_commit_at: datetime | None = None
    newest_commit_lsn: str | None = None
    problem: SegmentProblem | None = None
    missing_history: list[str] = field(default_factory=list)
    # The archived segment files of the continuous WAL, in the order recovery reads them.
    segments: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.missing_history

    def describe_problem(self) -> str | None:
        """One phrase for the first problem (None when the archive is sound)."""
        if self.problem is not None:
            return self.problem.describe()
        if self.missing_history:
            return "; ".join(self.missing_history)
        return None


def _lsn(value: int) -> str:
    # As PostgreSQL 18 prints them: the low half in eight digits.
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:08X}"


def _parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class _Layout:
    segment_size: int

    def name(self, timeline: int, segno: int) -> str:
        per_id = 0x100000000 // self.segment_size
        return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"

    def segno(self, name: str) -> int:
        per_id = 0x100000000 // self.segment_size
        return int(name[8:16], 16) * per_id + int(name[16:24], 16)

    def range_of(self, segno: int) -> tuple[str, str]:
        return _lsn(segno * self.segment_size), _lsn((segno + 1) * self.segment_size)


def _segment_size(backup: Path) -> int:
    """`pg_controldata`'s segment size of the backup's cluster (16 MiB unless initdb changed)."""
    try:
        found = _SEGMENT_SIZE.search(run_program("pg_controldata", "-D", str(backup)))
    except BackupToolError:
        # A backup without a readable pg_control fails pg_verifybackup, which names it.
        found = None
    return int(found.group(1)) if found else 16 * 1024 * 1024


def _timelines(archive: Path, start: int) -> tuple[int, list[tuple[int, int]]]:
    """The timeline recovery ends on and, oldest first, (timeline, first LSN) of each one it
    goes through. Like `recovery_target_timeline = 'latest'`: the history files
    `<start+1>.history`, `<start+2>.history`... are probed while they exist."""
    newest = start
    while (archive / f"{newest + 1:08X}.history").is_file():
        newest += 1
    if newest == start:
        return start, [(start, 0)]
    history = (archive / f"{newest:08X}.history").read_text(errors="replace")
    begins: list[tuple[int, int]] = []
    begin = 0
    for match in _HISTORY_LINE.finditer(history):
        begins.append((int(match.group(1)), begin))
        begin = _parse_lsn(match.group(2))
    begins.append((newest, begin))
    return newest, [(tli, at) for tli, at in begins if tli >= start]


def check_archive(
    directory: Path, backup: BackupInfo, dumped: Dumped | None = None
) -> ArchiveCheck:
    """Walk the WAL recovery of ``backup`` would read (its own `pg_wal`, then the archive).

    ``dumped`` caches `pg_waldump` results per segment file across backups of one archive.
    Raises nothing for a damaged archive or backup: the report says what is wrong.
    """
    cache = {} if dumped is None else dumped
    archive = wal_dir(directory)
    own_wal = backup_path(directory, backup.backup_id) / "pg_wal"
    layout = _Layout(_segment_size(backup_path(directory, backup.backup_id)))
    newest, path = _timelines(archive, backup.timeline)
    report = ArchiveCheck(backup_id=backup.backup_id, timeline=newest)
    if path[0][0] != backup.timeline:
        report.missing_history.append(
            f"timeline {newest}'s history ({newest:08X}.history) does not descend from the "
            f"backup's timeline {backup.timeline}"
        )
        return report
    archived = _archived_segments(archive, layout)
    report.missing_history.extend(
        f"segments of timeline {tli} are archived without {tli:08X}.history"
        for tli in sorted({tli for tli, _ in archived.values()})
        if tli > newest
    )
    on_path = {tli for tli, _ in path}
    segno = _parse_lsn(backup.start_lsn) // layout.segment_size
    end_of_backup = _parse_lsn(backup.end_lsn) // layout.segment_size
    while True:
        tli = max(t for t, begin in path if begin // layout.segment_size <= segno)
        name = layout.name(tli, segno)
        candidates = [archive / name, archive / f"{name}.partial"]
        if segno <= end_of_backup:
            candidates.append(own_wal / name)
        found = next((c for c in candidates if c.is_file()), None)
        start, end = layout.range_of(segno)
        if found is None:
            later = sorted(n for n, (t, s) in archived.items() if s > segno and t in on_path)
            if later:
                report.problem = SegmentProblem(
                    "missing", name, start, end, f"later segments from {later[0]} are archived"
                )
            return report
        if found not in cache:
            cache[found] = _dump(found, layout.segment_size)
        kind, text = cache[found]
        if kind is not None:
            report.problem = SegmentProblem(kind, name, start, end, text)
            return report
        last = _last_commit(text)
        if last is not None:
            report.newest_commit_lsn, report.newest_commit_at = last
        report.continuous_to = name
        if found.parent == archive:
            report.segments.append(found)
        if found.name.endswith(".partial"):
            return report  # pg_receivewal's segment being written: the end of the WAL
        segno += 1


def _archived_segments(archive: Path, layout: _Layout) -> dict[str, tuple[int, int]]:
    """Archived segment file names -> (timeline, segment number)."""
    found: dict[str, tuple[int, int]] = {}
    if not archive.is_dir():
        return found
    for entry in archive.iterdir():
        match = _SEGMENT.match(entry.name)
        if match:
            found[entry.name] = (int(match.group(1), 16), layout.segno(entry.name))
    return found


def _dump(segment: Path, segment_size: int) -> tuple[ProblemKind | None, str]:
    """(None, `pg_waldump`'s commit/abort lines of ``segment``), or (what is wrong, why)."""
    size = segment.stat().st_size
    # pg_receivewal's `.partial` file has the full size too (it is preallocated).
    if size != segment_size:
        return "truncated", f"{size} of {segment_size} bytes"
    try:
        out = run_program(
            "pg_waldump",
            "--rmgr=Transaction",
            str(segment),
            str(segment),
            environment={"TZ": "UTC"},
        )
    except BackupToolError as exc:
        return "unreadable", str(exc)
    return None, out


def _last_commit(output: str) -> tuple[str, datetime] | None:
    found = list(_COMMIT.finditer(output))
    if not found:
        return None
    last = found[-1]
    moment = datetime.fromisoformat(last.group(2)).replace(tzinfo=UTC)
    return last.group(1), moment


def newest_archived_age_seconds(directory: Path, now: datetime) -> float | None:
    """Seconds since the newest segment reached ``directory``/wal (its modification time; a
    `.partial` one counts: pg_receivewal writes it as WAL arrives); None when there is none."""
    archive = wal_dir(directory)
    if not archive.is_dir():
        return None
    newest = max(
        (e.stat().st_mtime for e in archive.iterdir() if _SEGMENT.match(e.name)), default=None
    )
    return None if newest is None else max(0.0, now.timestamp() - newest)
