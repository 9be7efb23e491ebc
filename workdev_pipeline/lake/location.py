"""Where the lake lives: ``WORKDEV_LAKE_URI`` (a local path or an object-store URI) and the storage options
delta-rs needs to reach it.

* unset: ``$WORKDEV_HOME/lake`` (an absolute path);
* ``s3://bucket/prefix``, ``gs://…``, ``az://…`` / ``abfss://…``: delta-rs reads its credentials from the
  environment itself (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``); ``WORKDEV_LAKE_STORAGE_OPTIONS`` (a JSON object) adds
  options of its own (JSON), e.g. ``{"aws_conditional_put": "etag"}`` for an S3-compatible store other than AWS
  (MinIO, R2); on AWS S3 delta-rs 1.6 commits with conditional puts by default -- see ``docs/lake.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.settings import workdev_home

LAKE_URI_ENV = "WORKDEV_LAKE_URI"
STORAGE_OPTIONS_ENV = "WORKDEV_LAKE_STORAGE_OPTIONS"
_REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "azure://", "memory://", "file://")


class LakeConfigurationError(WorkdevError, ValueError):
    """The lake's location or storage options are unusable (the CLI prints it as one ``error:`` line)."""


@dataclass(frozen=True)
class LakeLocation:
    """The lake's root URI (tables live under it) and delta-rs storage options."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, root: str | None = None) -> LakeLocation:
        """``root``, else ``WORKDEV_LAKE_URI``, else ``$WORKDEV_HOME/lake``; options from
        ``WORKDEV_LAKE_STORAGE_OPTIONS``."""
        raw = (root or os.environ.get(LAKE_URI_ENV, "")).strip()
        options_text = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
        try:
            options = json.loads(options_text) if options_text else {}
        except json.JSONDecodeError as exc:
            raise LakeConfigurationError(f"{STORAGE_OPTIONS_ENV} is not a JSON object: {exc.msg}") from None
        if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
            raise LakeConfigurationError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of strings")
        return cls(normalise_root(raw or str(workdev_home() / "lake")), options)

    @property
    def is_local(self) -> bool:
        return not self.root.startswith(_REMOTE_SCHEMES) or self.root.startswith("file://")

    def table_uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def local_path(self, name: str) -> str | None:
        """The table's directory on this machine's file system (None for an object store)."""
        if not self.is_local:
            return None
        uri = self.table_uri(name)
        return uri.removeprefix("file://")


def normalise_root(raw: str) -> str:
    """An object-store URI as given; a local path made absolute (relative paths would depend on the process's
    working directory)."""
    if raw.startswith(_REMOTE_SCHEMES) and not raw.startswith("file://"):
        return raw.rstrip("/")
    if "://" in raw and not raw.startswith("file://"):
        raise LakeConfigurationError(f"unsupported lake URI scheme in {raw!r} (s3://, gs://, az://, abfss:// or a "
                                     "local path)")
    path = raw.removeprefix("file://")
    return os.path.abspath(os.path.expanduser(path))
