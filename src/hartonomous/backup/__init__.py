"""Backups, point-in-time restore and the re-arming of change capture (docs/operations.md).

PostgreSQL's own programs do the work: `pg_basebackup` (full and `--incremental` on WAL
summaries), `pg_combinebackup`, `pg_verifybackup`, `pg_archivecleanup`, and WAL archiving by
`archive_command` (embedded server) or `pg_receivewal` (configured server).
"""
