"""`python -m tests.integration.api.limited_server URL PORT LIMIT`: one API process (uvicorn on
create_app) whose tenants may make LIMIT requests an hour, for tests of shared rate limits."""

from __future__ import annotations

import sys

import uvicorn
from sqlalchemy import create_engine

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.services import Platform


def main() -> None:
    url, port, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rule = {"name": "shared", "scope": "tenant", "permit_limit": limit, "window_seconds": 3600}
    settings = Settings.model_validate({"security": {"rate_limits": [rule]}})
    platform = Platform(create_engine(url), settings, head_revision())
    uvicorn.run(create_app(platform), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
