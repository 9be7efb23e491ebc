"""``pipeline/pipeline_status``: the pipeline's health as an external asset, observed every minute by
``pipeline_status_sensor`` (:mod:`workdev_pipeline.schedules.status`) with the figures ``workdev-pipeline status``
prints (:mod:`workdev_pipeline.status`) as numeric metadata, and each problem with what to do about it."""

from __future__ import annotations

from typing import Any

from dagster import AssetObservation, AssetSpec, MetadataValue

from workdev_pipeline.assets.keys import INCOMING_EVENTS, LAKE_EVENTS, PIPELINE_STATUS
from workdev_pipeline.assets.standards import defined_here
from workdev_pipeline.status import PipelineStatus, Problem, figures, verdict

pipeline_status = AssetSpec(
    PIPELINE_STATUS,
    metadata=defined_here(),
    deps=[INCOMING_EVENTS, LAKE_EVENTS],
    group_name="operations",
    kinds={"postgres", "deltalake"},
    description="The pipeline's health, observed every minute (the `workdev-pipeline status` command's figures): "
                "backlog and sweep lag, running and stuck sweeps, the dead letter by error kind, the last load, "
                "the lake version each engine holds, queued work; the diagnosis says what to do about each problem. "
                "Plot the numeric metadata on the asset's Plots tab.",
)


def status_observation(status: PipelineStatus, problems: list[Problem]) -> AssetObservation:
    """``status`` as an observation of ``pipeline/pipeline_status``: every figure as a number, the verdict, the
    diagnosis."""
    metadata: dict[str, Any] = {
        name: MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(float(value))
        for name, value in figures(status, problems).items()}
    metadata["verdict"] = MetadataValue.text(verdict(problems))
    lines = ["| severity | subject | problem | what to do |", "|---|---|---|---|"]
    lines += [f"| {p.severity} | {p.subject} | {p.message} | {p.advice} |".replace("\n", " ") for p in problems]
    metadata["diagnosis"] = MetadataValue.md("\n".join(lines) if problems else "healthy: nothing to do")
    return AssetObservation(asset_key=PIPELINE_STATUS, metadata=metadata,
                            description=f"{verdict(problems)}: {len(problems)} problem(s)")
