"""Run the API alone in this process, for tests that need a real server (`python app_server.py`).

Settings come from the environment (`HARTONOMOUS_DATABASE__URL`, `HARTONOMOUS_DATA_DIR` …). It
listens on a free port of 127.0.0.1 and prints `{"url": …}` on one line once it accepts.
"""

from __future__ import annotations

import json
import socket
import sys

import uvicorn

from hartonomous.api import create_app
from hartonomous.config import load_settings
from hartonomous.services import open_platform


def main() -> None:
    settings = load_settings()
    with open_platform(settings) as platform:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        server = uvicorn.Server(uvicorn.Config(create_app(platform), log_config=None))
        sys.stdout.write(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}) + "\n")
        sys.stdout.flush()
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
