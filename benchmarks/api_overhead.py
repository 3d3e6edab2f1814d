"""The HTTP API's own CPU per `POST /v1/search`, without a socket: ``create_app`` driven over
ASGI in this process beside the `search` service called directly, same queries, same run.

Run with ``python benchmarks/api_overhead.py [--paragraphs 2000] [--requests 400]
[--clients 8] [--rounds 4]``. It starts its own embedded PostgreSQL in a temporary folder,
loads the first ``--paragraphs`` paragraphs of the standard-library corpus for one tenant
(benchmarks/api.py's loading), issues a `user` API key and builds the app as `serve` does: on
the API role's engine under row-level security. Then, in rounds that alternate so a change of
the machine's load weighs on all:

- the service: ``--clients`` threads calling `services.search.search` with the tenant bound;
- the app, real search: ``--clients`` concurrent requests on one uvloop event loop, each a
  full ASGI request (middleware, routing, key, rate limit, body and response validation, one
  worker-thread hop, the search itself);
- the app, answers reused: the same requests with the search service answering each query
  with the result it gave the first time: what is left is the API's own work;
- the same, body parsed twice: a second app whose route parses the JSON body again, as it did
  before the hygiene middleware's parse was handed to it (api/routing.py): the ratio of the
  two is what parsing once saves, measured in the same run.

It prints the CPU per request (process, and the event loop's thread apart) of each, and the
API's own CPU as a share of the service's. Without a socket, uvicorn's HTTP parsing is not in
the figures (benchmarks/api.py measures the whole server). docs/api.md, "Measured".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import uvloop
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from hartonomous.api.middleware import PARSED_BODY
from hartonomous.db.tenant_context import tenant_bound
from hartonomous.services import Platform
from hartonomous.services import search as search_service
from hartonomous.services.platform import open_serving_platform

try:
    from benchmarks.api import prepared_database, server_settings
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path
    from api import prepared_database, server_settings  # type: ignore[no-redef]

K = 10


def asgi_request(app: FastAPI, token: str, body: bytes) -> Callable[[], Any]:
    """A coroutine function sending one `POST /v1/search` through ``app``; raises unless 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/search",
        "raw_path": b"/v1/search",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }

    async def request() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect while the app answers
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)
        if statuses != [200]:
            raise SystemExit(f"POST /v1/search answered {statuses}")

    return request


class ParsedBodyDropped:
    """ASGI middleware forgetting the document RequestHygieneMiddleware parsed, so that FastAPI
    parses the body again (what every JSON request cost before api/routing.py handed it on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.get("state", {}).pop(PARSED_BODY, None)
        await self.app(scope, receive, send)


def app_run(requests: list[Callable[[], Any]], clients: int) -> tuple[float, float]:
    """(process CPU, event-loop thread CPU) seconds for ``requests``, ``clients`` at a time."""

    async def all_of_them() -> None:
        async def client(first: int) -> None:
            for turn in range(first, len(requests), clients):
                await requests[turn]()

        await asyncio.gather(*(client(n) for n in range(clients)))

    process, loop = time.process_time(), time.thread_time()
    uvloop.run(all_of_them())
    return time.process_time() - process, time.thread_time() - loop


def service_run(call: Callable[[int], object], count: int, clients: int) -> float:
    """Process CPU seconds for ``count`` calls, ``clients`` threads at a time."""

    def worker(first: int) -> None:
        for turn in range(first, count, clients):
            call(turn)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    began = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.process_time() - began


def measure(platform: Platform, token: str, queries: list[str], args: argparse.Namespace) -> None:
    from hartonomous.api import create_app

    app = create_app(platform)
    tenant_id = app.state.key_cache.authenticate(token).tenant_id
    bodies = [json.dumps({"query": query, "k": K}).encode() for query in queries]
    requests = [asgi_request(app, token, bodies[n % len(bodies)]) for n in range(args.requests)]
    # Innermost of the app's middleware (after the hygiene checks): FastAPI parses the body.
    twice = create_app(platform)
    twice.user_middleware.append(Middleware(ParsedBodyDropped))
    parsed_twice = [
        asgi_request(twice, token, bodies[n % len(bodies)]) for n in range(args.requests)
    ]
    real_search = search_service.search
    answers: dict[str, search_service.SearchResult] = {}

    def reused(platform: Platform, tenant: str, query: Any, k: int = K, **options: Any) -> Any:
        if query.text not in answers:
            answers[query.text] = real_search(platform, tenant, query, k, **options)
        return answers[query.text]

    def call(turn: int) -> object:
        query = search_service.Query(text=queries[turn % len(queries)])
        with tenant_bound(tenant_id):
            return real_search(platform, tenant_id, query, K)

    # Warm: the model, the pool, the key cache, a lease of permits, every answer to reuse.
    service_run(call, len(queries), args.clients)
    app_run(requests[: len(queries)], args.clients)
    with mock.patch.object(search_service, "search", reused):
        app_run(requests[: len(queries)], args.clients)
        app_run(parsed_twice[: len(queries)], args.clients)
    kinds = (
        ("app", False, requests),
        ("app, answers reused", True, requests),
        ("  same, body parsed twice", True, parsed_twice),
    )
    totals = {"service": [0.0, 0.0]} | {name: [0.0, 0.0] for name, _, _ in kinds}
    for _ in range(args.rounds):
        totals["service"][0] += service_run(call, args.requests, args.clients)
        for name, reuse, sent in kinds:
            with mock.patch.object(search_service, "search", reused if reuse else real_search):
                process, loop = app_run(sent, args.clients)
            totals[name][0] += process
            totals[name][1] += loop
    count = args.requests * args.rounds
    per = {name: (cpu / count * 1000, loop / count * 1000) for name, (cpu, loop) in totals.items()}
    for name, (cpu, loop) in per.items():
        loop_part = f" (event loop {loop:.3f} ms)" if name != "service" else ""
        print(f"{name:24} {cpu:7.3f} ms of CPU per request{loop_part}")
    own = per["app, answers reused"][0]
    print(
        f"the API's own work: {own:.3f} ms per request, {own / per['service'][0]:.2f}x the "
        f"service's; app with real search / service = {per['app'][0] / per['service'][0]:.2f}x"
    )
    twice_ms = per["  same, body parsed twice"][0]
    print(
        f"parsing the body once saves {(twice_ms - own) * 1000:.1f} us per request "
        f"(the API's own work parsed once / parsed twice = {own / twice_ms:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=400, help="per round and kind")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with (
        prepared_database(args.paragraphs) as (url, token, queries, root, _),
        open_serving_platform(server_settings(url, root / "api")) as platform,
    ):
        measure(platform, token, queries, args)
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
