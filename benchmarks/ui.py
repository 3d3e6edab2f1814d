"""Server time of the admin UI's pages (docs/admin-ui.md) with many atoms and dead letters.

Run with ``python benchmarks/ui.py [--atoms 100000] [--dead-letters 10000] [--runs 20]``. It
starts its own embedded PostgreSQL in a temporary folder, loads ``--atoms`` text atoms held by
one tenant (atoms, one holding, search entries, by COPY as benchmarks/search.py does) and
``--dead-letters`` dead letters, issues an admin key, provisions the API role and serves the
app in-process (Starlette's test client over ``create_app`` on the API role's engine, as
`up` serves it). Each page is fetched ``--runs`` times after one warm-up; printed are its
median and 95th percentile in milliseconds, and its ratio to the baseline measured in the same
run: the HTTP API's `GET /v1/dead-letters` (JSON over the same service). Target (issue 15):
a page in at most 300 ms server time with 100,000 atoms and 10,000 dead letters; printed, not
asserted.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from pgvector.psycopg import register_vector
from sqlalchemy import create_engine

from hartonomous.api import create_app
from hartonomous.config import load_settings
from hartonomous.db import EmbeddedPostgres, head_revision, libpq_url, upgrade
from hartonomous.db.api_role import api_role_url, provision_api_role
from hartonomous.db.isolation import scope_to_bound_tenant
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.security.roles import Role
from hartonomous.services import Platform

try:
    from benchmarks.search import INDEX, SPACE, atom_id
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from search import INDEX, SPACE, atom_id  # type: ignore[no-redef]

TENANT = "bench"
WORDS = [
    *("tide", "moon", "harbour", "lighthouse", "orchard", "engine", "governor", "flywheel"),
    *("river", "delta", "glacier", "basalt", "meadow", "falcon", "compass", "lantern"),
]


def seed(url: str, atoms: int, dead_letters: int) -> tuple[str, str]:
    """The atoms, holding, search entries and dead letters; (an admin key, one atom's hex)."""
    rng = np.random.default_rng(7)
    texts = [f"{n} " + " ".join(rng.choice(WORDS, size=12)) for n in range(atoms)]
    vectors = rng.standard_normal((atoms, SPACE.dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(libpq_url(url)) as connection:
        register_vector(connection)
        # Only lexical search is timed: the HNSW index would cost minutes to build here.
        connection.execute(f"DROP INDEX {INDEX}")
        connection.execute(
            "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s)", (TENANT, TENANT)
        )
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY atoms (atom_id, kind, modality, size_bytes, canonical_text) FROM STDIN"
            ) as copy:
                for text in texts:
                    copy.write_row((atom_id(text), "leaf", "text", len(text.encode()), text))
            with cursor.copy(
                "COPY atom_embeddings (atom_id, space, dimension, embedding) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bytea", "varchar", "int4", "vector"])
                for text, vector in zip(texts, vectors, strict=True):
                    copy.write_row((atom_id(text), SPACE.name, SPACE.dimension, vector))
            holding = cursor.execute(
                "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type) "
                "VALUES (%s, %s, 'file:///bench/corpus', 'file') RETURNING holding_id",
                (TENANT, atom_id(texts[0])),
            ).fetchone()[0]  # type: ignore[index]
            with cursor.copy(
                "COPY search_entries (tenant_id, space, atom_id, holding_id, visibility, "
                "source_type, source_modality, held_at) FROM STDIN"
            ) as copy:
                for text in texts:
                    copy.write_row(
                        (
                            TENANT,
                            SPACE.name,
                            atom_id(text),
                            holding,
                            "private",
                            "file",
                            "text",
                            "2026-01-01Z",
                        )
                    )
        connection.execute(
            "INSERT INTO message_dead_letters (message_id, queue_name, conversation_id, "
            "message_type, body, enqueued_at, attempts, reason, exception_type, "
            "exception_message, exception_traceback) SELECT n, 'hartonomous_message_queue', "
            "'c' || n, '//Hartonomous/Message', jsonb_build_object('id', n), now(), 3, "
            "'boom', 'builtins.KeyError', 'key ' || n, repeat('frame\n', 40) "
            "FROM generate_series(1, %s) AS n",
            (dead_letters,),
        )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
    engine = create_engine(url)
    with engine.begin() as connection:
        ensure_tenant(connection, TENANT, TENANT)
        ensure_principal(connection, TENANT, "bench-admin", "bench admin", "user", role=Role.ADMIN)
        token = create_api_key(connection, TENANT, "bench-admin", "benchmark")
    engine.dispose()
    return token, atom_id(texts[0]).hex()


def timed(fetch: Callable[[], int], runs: int) -> tuple[float, float]:
    """Median and 95th percentile of ``runs`` fetches, in ms, after a warm-up."""
    assert fetch() == 200
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        status = fetch()
        took.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    p50, p95 = np.percentile(took, [50, 95])
    return float(p50), float(p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=100_000)
    parser.add_argument("--dead-letters", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "data") as server:
            upgrade(create_engine(server.url))
            started = time.perf_counter()
            token, atom = seed(server.url, args.atoms, args.dead_letters)
            print(
                f"loaded {args.atoms} atoms and {args.dead_letters} dead letters in "
                f"{time.perf_counter() - started:.1f} s"
            )
            unlimited = {"name": "benchmark", "scope": "tenant", "permit_limit": 1_000_000_000}
            settings = load_settings(
                None,
                {
                    "database": {"url": server.url},
                    "security": {"rate_limits": [unlimited]},
                    "data_dir": root / "api",
                },
            )
            owner = create_engine(server.url)
            provision_api_role(owner, settings)
            api_engine = scope_to_bound_tenant(create_engine(api_role_url(settings, server.url)))
            platform = Platform(
                engine=api_engine,
                settings=settings,
                migrations_head=head_revision(),
                maintenance_engine=owner,
            )
            run(platform, token, atom, args.runs)
            api_engine.dispose()
            owner.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(platform: Platform, token: str, atom: str, runs: int) -> None:
    with TestClient(create_app(platform)) as client:
        form = client.get("/ui/sign-in").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf
        signed = client.post(
            "/ui/sign-in",
            data={"api_key": token, "csrf_token": csrf.group(1)},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        headers = {"Authorization": f"Bearer {token}"}
        baseline = timed(lambda: client.get("/v1/dead-letters", headers=headers).status_code, runs)
        print(f"{'page':<44} {'p50 ms':>8} {'p95 ms':>8} {'p50 vs baseline':>16}")
        print(f"{'baseline: GET /v1/dead-letters (API)':<44} {baseline[0]:8.1f} {baseline[1]:8.1f}")
        pages = (
            "/ui/dashboard",
            "/ui/dead-letters",
            "/ui/dead-letters/1",
            "/ui/tenants",
            f"/ui/tenants/{TENANT}",
            "/ui/search?q=lighthouse+harbour&mode=lexical",
            "/ui/billing",
            "/ui/billing/invoice",
            f"/ui/atoms/{atom}",
            f"/ui/holdings/for?atom_id={atom}&source=file:///bench/corpus",  # → the holding
            "/ui/ingest",
            "/ui/inference",
        )
        for path in pages:
            p50, p95 = timed(lambda path=path: client.get(path).status_code, runs)
            print(f"{path[:44]:<44} {p50:8.1f} {p95:8.1f} {p50 / baseline[0]:15.1f}x")


if __name__ == "__main__":
    main()
