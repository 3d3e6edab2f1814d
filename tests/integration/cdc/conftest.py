"""Shared fixtures of the CDC tests: an autocommit connection and a prepared CES consumer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.db.connection import libpq_url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        yield connection


@pytest.fixture
def consumer(database_url: str) -> Iterator[CesConsumer]:
    ces = CesConsumer(database_url, Settings())
    ces.prepare()
    yield ces
    ces.close()
