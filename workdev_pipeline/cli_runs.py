"""The command line's actions recorded in Dagster.

``sweep``, ``rebuild``, ``replay``, ``retention`` and ``erase`` run their job -- the very job the sensors,
schedules and the UI launch -- in the command's own process, on the Dagster instance: the run, its log, its asset
materializations (the rebuilt or swept days of ``lake/platform_events``) and check evaluations land in the instance's
storage, so the UI's run history and partition status and the aggregations' automation see the command's work as
they see the daemon's. Runs are tagged ``workdev/trigger=cli`` (and a rebuild with its days, as a UI backfill is).

The instance is ``DAGSTER_HOME`` when set, else the one ``workdev-pipeline dev`` keeps under
``$WORKDEV_HOME/dagster`` once it exists. With neither there is no Dagster to record in: the command runs the engine
directly, as it did before (see docs/cli.md).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    Failure,
)

from workdev_pipeline.errors import OperationFailed
from workdev_pipeline.settings import SQL_DIR, workdev_home

#: The tags of every run a command launches.
CLI_TAGS = {"workdev/trigger": "cli"}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def dev_dagster_home() -> Path:
    """The instance ``workdev-pipeline dev`` uses when ``DAGSTER_HOME`` is unset."""
    return workdev_home() / "dagster"


def prepare_dagster_home(home: Path) -> Path:
    """``home`` with an instance file: the project's run queue (``deploy/dagster-dev.yaml``) unless one is there."""
    home.mkdir(parents=True, exist_ok=True)
    instance = home / "dagster.yaml"
    if not instance.exists():  # the run queue: a backfill never starves the live sweeps
        shutil.copyfile(SQL_DIR.parent / "deploy" / "dagster-dev.yaml", instance)
    return home


def configured_dagster_home() -> Path | None:
    """``DAGSTER_HOME`` when set, else ``dev``'s instance when it exists; None: no instance to record in."""
    configured = os.environ.get("DAGSTER_HOME", "").strip()
    if configured:
        return Path(configured).expanduser()
    home = dev_dagster_home()
    return home if (home / "dagster.yaml").exists() else None


@dataclass
class RecordedRun:
    """A finished run of a command: its id, job and what it recorded."""

    job_name: str
    result: ExecuteInProcessResult
    #: what the run's ops logged at info level and above (their summaries), in order
    messages: list[str]

    @property
    def run_id(self) -> str:
        return self.result.run_id

    def materializations(self, key: AssetKey) -> list[AssetMaterialization]:
        return [e.event_specific_data.materialization for e in self.result.get_asset_materialization_events()
                if e.asset_key == key]

    def observations(self, key: AssetKey) -> list[AssetObservation]:
        return [e.event_specific_data.asset_observation for e in self.result.get_asset_observation_events()
                if e.asset_key == key]

    def metadata(self, key: AssetKey) -> Mapping[str, Any]:
        """The metadata of the run's last record of ``key`` (the partition-less one), materialization or
        observation."""
        events = [m for m in self.materializations(key) + self.observations(key) if m.partition is None] or \
            self.materializations(key)
        return events[-1].metadata if events else {}


@contextmanager
def recording(home: Path, database_url: str, lake_uri: str | None) -> Iterator[CommandRuns]:
    """The instance at ``home`` and the code location's jobs, with the command's database and lake. The partitions
    start where ``dev``'s do (WORKDEV_PARTITIONS_START, else the day of the store's earliest event), so a day the UI
    shows is a day the command can record."""
    from workdev_pipeline.partitions_start import PARTITIONS_START_ENV, earliest_event_day

    if not os.environ.get(PARTITIONS_START_ENV, "").strip():
        earliest = earliest_event_day(database_url)
        if earliest is not None:
            os.environ[PARTITIONS_START_ENV] = earliest.isoformat()
    from workdev_pipeline.definitions import build_definitions
    from workdev_pipeline.engine_settings import remote_engine_resources
    from workdev_pipeline.resources.lake import LakeResource
    from workdev_pipeline.resources.postgres import PostgresResource

    resources = {"postgres": PostgresResource(database_url=database_url),
                 "lake": LakeResource(uri=lake_uri or "", geoip_database=os.environ.get("WORKDEV_GEOIP_DATABASE", "")),
                 **remote_engine_resources()}
    with DagsterInstance.from_config(str(prepare_dagster_home(home))) as instance:
        yield CommandRuns(instance, build_definitions(resources))


class CommandRuns:
    """Runs of the code location's jobs on an instance, in this process."""

    def __init__(self, instance: DagsterInstance, definitions: Definitions) -> None:
        self.instance = instance
        self.definitions = definitions

    def run(self, job_name: str, *, run_config: Mapping[str, Any] | None = None,
            tags: Mapping[str, str] | None = None) -> RecordedRun:
        """Run a job; a :class:`Failure` raised by its op is an :class:`OperationFailed` (exit status 1)."""
        job = self.definitions.resolve_job_def(job_name)
        return self._execute(job_name, lambda: job.execute_in_process(
            run_config=run_config, instance=self.instance, tags={**CLI_TAGS, **(tags or {})}))

    def materialize_days(self, key: AssetKey, days: Sequence[str]) -> RecordedRun:
        """Materialize consecutive day partitions of ``key`` in one run (one day: that partition; more: the range,
        as a UI backfill's single run)."""
        job = self.definitions.resolve_implicit_job_def_def_for_assets([key])
        tags = dict(CLI_TAGS)
        if len(days) > 1:
            tags.update({RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]})
        return self._execute(job.name, lambda: job.execute_in_process(
            instance=self.instance, asset_selection=[key], tags=tags,
            partition_key=days[0] if len(days) == 1 else None))

    def _execute(self, job_name: str, execute: Callable[[], ExecuteInProcessResult]) -> RecordedRun:
        try:
            result = execute()
        except Failure as failure:
            raise OperationFailed(failure.description or str(failure)) from None
        messages = [e.user_message for e in self.instance.all_logs(result.run_id)
                    if e.dagster_event is None and e.step_key and e.level >= logging.INFO]
        return RecordedRun(job_name, result, messages)
