"""The remote warehouse engines enabled by the environment, as in the seed (each behind its own flag):

``BIGQUERY_ENABLED=true``  with ``BIGQUERY_PROJECT_ID``, ``BIGQUERY_DATASET_ID`` (default ``workdev_events``),
                           ``BIGQUERY_LOCATION``, ``BIGQUERY_CREDENTIALS`` (a base64 service-account key; else the
                           environment's default credentials) and ``BIGQUERY_API_ENDPOINT`` (an emulator).
``REDSHIFT_ENABLED=true``  with ``REDSHIFT_HOST``, ``REDSHIFT_PORT`` (5439), ``REDSHIFT_DATABASE``,
                           ``REDSHIFT_USER``, ``REDSHIFT_PASSWORD``, ``REDSHIFT_SCHEMA`` (public), ``REDSHIFT_SSL``
                           (true), ``REDSHIFT_S3_BUCKET`` + ``REDSHIFT_IAM_ROLE`` (the COPY path) and
                           ``REDSHIFT_DIALECT`` (``postgres`` only for a PostgreSQL stand-in).

Both load from the lake (``WORKDEV_LAKE_URI``), which every deployment keeps, a BigQuery-only or Redshift-only one
too: it is the engines' staging area (put it where the engine reads fast: ``gs://`` beside BigQuery, ``s3://``
beside Redshift).

Secrets are passed as ``EnvVar``: Dagster reads them when the resource is used; they never enter run config or
logs.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource

_TRUE = {"1", "true", "yes", "on"}


def enabled(flag: str) -> bool:
    return os.environ.get(flag, "").strip().lower() in _TRUE


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def bigquery_resource() -> BigQueryWarehouseResource:
    return BigQueryWarehouseResource(
        project=EnvVar("BIGQUERY_PROJECT_ID"), dataset=_env("BIGQUERY_DATASET_ID", "workdev_events"),
        location=_env("BIGQUERY_LOCATION") or None,
        gcp_credentials=EnvVar("BIGQUERY_CREDENTIALS") if _env("BIGQUERY_CREDENTIALS") else None,
        api_endpoint=_env("BIGQUERY_API_ENDPOINT"))


def redshift_resource() -> RedshiftWarehouseResource:
    return RedshiftWarehouseResource(
        host=EnvVar("REDSHIFT_HOST"), port=int(_env("REDSHIFT_PORT", "5439")), database=EnvVar("REDSHIFT_DATABASE"),
        user=EnvVar("REDSHIFT_USER"), password=EnvVar("REDSHIFT_PASSWORD") if _env("REDSHIFT_PASSWORD") else "",
        ssl=_env("REDSHIFT_SSL", "true").lower() in _TRUE, db_schema=_env("REDSHIFT_SCHEMA", "public"),
        dialect="postgres" if _env("REDSHIFT_DIALECT") == "postgres" else "redshift",
        s3_bucket=_env("REDSHIFT_S3_BUCKET"), iam_role=_env("REDSHIFT_IAM_ROLE"))


#: each engine's flag
FLAGS = {"bigquery": "BIGQUERY_ENABLED", "redshift": "REDSHIFT_ENABLED"}


def enabled_engines() -> list[str]:
    """The names of the engines enabled (no setting read beyond the flags)."""
    return [name for name, flag in FLAGS.items() if enabled(flag)]


def remote_engine_resources() -> dict[str, object]:
    """``{"bigquery": ..., "redshift": ...}`` for the engines enabled."""
    makers = {"bigquery": bigquery_resource, "redshift": redshift_resource}
    return {name: makers[name]() for name in enabled_engines()}
