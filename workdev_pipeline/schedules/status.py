"""``pipeline_status_sensor``: every minute, observes ``pipeline/pipeline_status`` (no
run): the figures and diagnosis of ``workdev-pipeline status``, the enabled engines probed through their resources."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DefaultSensorStatus, SensorDefinition, SensorEvaluationContext, SensorResult, sensor

from workdev_pipeline.assets.status import status_observation
from workdev_pipeline.status import Limits, diagnose, read_status

STATUS_SENSOR = "pipeline_status_sensor"


def status_sensor(engines: Sequence[str] = ()) -> SensorDefinition:
    """The sensor, with the enabled remote engines' resources (``bigquery``, ``redshift``) among its own."""

    @sensor(name=STATUS_SENSOR, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            required_resource_keys={"postgres", "lake", *engines},
            description="Observes pipeline/pipeline_status every minute: backlog, sweeps, dead letter, loads, "
                        "deliveries, queues, and what to do about each problem (as `workdev-pipeline status` prints).")
    def pipeline_status_sensor(context: SensorEvaluationContext) -> SensorResult:
        resources = context.resources
        probes = {name: getattr(resources, name).ping for name in engines}
        found = read_status(resources.postgres.url(), resources.lake.events(), probes,
                            consumer=resources.lake.consumer)
        return SensorResult(asset_events=[status_observation(found, diagnose(found, Limits.from_env()))])

    return pipeline_status_sensor
