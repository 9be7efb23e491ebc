"""Fixtures: a real PostgreSQL, a migrated template database, and a throw-away database per test.

The server is ``WORKDEV_TEST_ADMIN_URL`` when set; else the local one at 127.0.0.1:5432 when it answers;
else an embedded server (the project's embedded default) under ``.workdev-test/``. ``WORKDEV_TEST_PG_TIMEZONE``
(the non-UTC lane of ``.ci/run``: ``Asia/Kolkata``) becomes the ``TimeZone`` of every database the tests create, as a
server configured in that zone would give every session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, Definitions
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.migrate import migrate
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_TIMEZONE_ENV = "WORKDEV_TEST_PG_TIMEZONE"
REPO = Path(__file__).resolve().parent.parent
#: The tests' partitions start in 2020 (they use fixed days since 2024), here and in every process they start; set
#: before a test module imports the definitions (nothing imported above reads it). The dev server's own start is the
#: demo's first day (``tests/dagster_dev_server.py``).
TEST_PARTITIONS_START = "2020-01-01"
os.environ.setdefault("WORKDEV_PARTITIONS_START", TEST_PARTITIONS_START)


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def admin_url() -> str:
    """A superuser connection to a real PostgreSQL server."""
    url = os.environ.get("WORKDEV_TEST_ADMIN_URL")
    if url:
        return url
    if _reachable(LOCAL_ADMIN_URL):
        return LOCAL_ADMIN_URL
    from workdev_pipeline.embedded import embedded_database_url

    return embedded_database_url(home=REPO / ".workdev-test", database="postgres")


def database_url_for(admin: str, name: str, **overrides: str) -> str:
    params = conninfo_to_dict(admin)
    params.update(dbname=name, **overrides)
    return make_conninfo(**params)


def create_database(admin: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(query)
        zone = os.environ.get(PG_TIMEZONE_ENV, "").strip()
        if zone:  # per database: CREATE DATABASE ... TEMPLATE does not copy the template's settings
            conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(sql.Identifier(name),
                                                                                sql.Literal(zone)))
    return database_url_for(admin, name)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def server_home() -> Iterator[Path]:
    """A WORKDEV_HOME for an embedded server of the test's own, outside pytest's temporary root: run as root, the
    server runs as another user, which must traverse the path -- and any other pytest session on this machine resets
    /tmp/pytest-of-root to 0700 when it starts."""
    home = Path(tempfile.mkdtemp(prefix="workdev-test-home-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def now() -> datetime:
    """The clock, read when the test runs (never at import: a long session would carry a stale one)."""
    return datetime.now(UTC)


@pytest.fixture(scope="session")
def run_tag() -> str:
    return f"wd_test_{os.getpid()}_{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def template_db(admin_url: str, run_tag: str) -> Iterator[str]:
    """A migrated database that per-test databases are cloned from (much faster than migrating each)."""
    name = f"{run_tag}_template"
    url = create_database(admin_url, name)
    migrate(url)
    yield name
    drop_database(admin_url, name)


@pytest.fixture
def empty_db(admin_url: str, run_tag: str) -> Iterator[str]:
    """A brand-new, unmigrated database."""
    name = f"{run_tag}_{secrets.token_hex(4)}"
    url = create_database(admin_url, name)
    yield url
    drop_database(admin_url, name)


@pytest.fixture
def db(admin_url: str, run_tag: str, template_db: str) -> Iterator[str]:
    """A freshly migrated database of this test's own."""
    name = f"{run_tag}_{secrets.token_hex(4)}"
    url = create_database(admin_url, name, template=template_db)
    yield url
    drop_database(admin_url, name)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    """A superuser connection (autocommit) to the test's database."""
    with psycopg.connect(db, autocommit=True) as c:
        yield c


@pytest.fixture
def client(db: str) -> Iterator[AnalyticsClient]:
    with AnalyticsClient(db, user_id=uuid.uuid4()) as c:
        yield c


@pytest.fixture
def login_role(admin_url: str, db: str) -> Iterator[callable]:
    """Make a LOGIN role that is a member of a workdev group role; returns its database URL."""
    made: list[str] = []

    def make(group: str) -> str:
        name = f"wd_login_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(name), sql.Identifier(group)))
        made.append(name)
        return database_url_for(admin_url, conninfo_to_dict(db)["dbname"], user=name)

    yield make
    for name in made:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


# -- Dagster: the pipeline's definitions on the test's database and a lake of its own --------


@pytest.fixture
def lake(tmp_path: Path) -> LakeResource:
    return LakeResource(uri=str(tmp_path / "lake"), retry_seconds=1.0, backoff_seconds=0.01)


@pytest.fixture
def defs(db: str, lake: LakeResource) -> Definitions:
    from workdev_pipeline.definitions import build_definitions  # imported by the tests that need Dagster

    return build_definitions({"postgres": PostgresResource(database_url=db), "lake": lake})


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst
