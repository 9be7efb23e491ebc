"""The event store as a Dagster resource: a URL (from ``WORKDEV_DATABASE_URL``) and a psycopg pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource
from psycopg_pool import ConnectionPool
from pydantic import Field

from workdev_pipeline.settings import configured_database_url

_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


class PostgresResource(ConfigurableResource):
    """PostgreSQL holding the event store. An empty URL means the embedded server under ``WORKDEV_HOME``."""

    database_url: str = Field(default="", description="postgresql:// URL; empty for the embedded server")
    max_connections: int = Field(default=4, description="size of this process's connection pool")

    def url(self) -> str:
        """The URL to connect to (starting the embedded server when none is configured)."""
        url = self.database_url or configured_database_url()
        if url:
            return url
        from workdev_pipeline.embedded import embedded_database_url

        return embedded_database_url()

    def pool(self) -> ConnectionPool:
        """One pool per URL and process, opened on first use."""
        url = self.url()
        with _POOLS_LOCK:
            pool = _POOLS.get(url)
            if pool is None:
                pool = _POOLS[url] = ConnectionPool(url, min_size=1, max_size=self.max_connections, open=True,
                                                    kwargs={"autocommit": True}, name="workdev-dagster")
        return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.pool().connection() as conn:
            yield conn
