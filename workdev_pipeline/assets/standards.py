"""What every asset carries in Dagster's catalog, set in one place when the definitions are built: its owners, its
tags (``tier``: where it stands in the data's path; ``pii``: whether it holds personal data), the freshness policy
of the tables a reader relies on, and code references -- the file and line defining it, linked to the repository
when ``WORKDEV_CODE_URL`` names one (docs/architecture.md#the-asset-catalog).

An asset missing from :func:`tier_and_pii` is a bug (the definitions test builds every engine's set)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from dagster import (
    AnchorBasedFilePathMapping,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    CodeReferencesMetadataValue,
    FreshnessPolicy,
    LocalFileCodeReference,
    link_code_references_to_git,
    map_asset_specs,
    with_source_code_references,
)

from workdev_pipeline.assets.keys import (
    DEAD_LETTER_REPLAY,
    ENGINES,
    ENRICHED_EVENTS,
    ERASURE_REQUESTS,
    GRANULARITIES,
    INCOMING_EVENTS,
    LAKE_EVENTS,
    LAKE_MAINTENANCE,
    PIPELINE_STATUS,
    REALTIME_METRICS,
    RETENTION_RUNS,
    engine_aggregations_key,
    engine_delivery_key,
    engine_events_key,
    lake_aggregations_key,
    postgres_aggregations_key,
)
from workdev_pipeline.settings import REPOSITORY_DIR

#: Who answers for the pipeline's assets (shown on every asset page).
OWNERS = ["team:data-platform"]

#: The repository's web address (``https://github.com/org/workdev-pipeline``) and the branch or commit the code
#: references link to; without it they name the local file (the UI's "open in editor" link).
CODE_URL_ENV, CODE_REF_ENV = "WORKDEV_CODE_URL", "WORKDEV_CODE_REF"
DEFAULT_CODE_REF = "main"

# Tiers: ``source`` (as emitted), ``silver`` (validated, enriched, every event), ``gold`` (aggregated, nothing
# personal), ``operations`` (work on the data: sweeps, deliveries, retention, erasure, upkeep, health).
_TIERS: dict[AssetKey, tuple[str, bool]] = {
    INCOMING_EVENTS: ("source", True),
    ENRICHED_EVENTS: ("operations", True),
    DEAD_LETTER_REPLAY: ("operations", True),
    LAKE_EVENTS: ("silver", True),
    LAKE_MAINTENANCE: ("operations", False),
    REALTIME_METRICS: ("gold", False),
    RETENTION_RUNS: ("operations", False),
    ERASURE_REQUESTS: ("operations", True),
    PIPELINE_STATUS: ("operations", False),
    **{postgres_aggregations_key(g): ("gold", False) for g in GRANULARITIES},
    **{lake_aggregations_key(g): ("gold", False) for g in GRANULARITIES},
    **{engine_events_key(e): ("silver", True) for e in ENGINES},
    **{engine_delivery_key(e): ("operations", True) for e in ENGINES},
    **{engine_aggregations_key(e, g): ("gold", False) for e in ENGINES for g in GRANULARITIES},
}

#: The lake receives every sweep's events: a live platform's lake is minutes old. Nothing landed for an hour warns,
#: for a day fails (the backlog check, ``pending_backlog_fresh``, is the minute-level signal of a lagging sweep).
LAKE_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=24), warn_window=timedelta(hours=1))
#: An aggregation period is materialized at the first :05 after it closes (``aggregations.SETTLE_CRON``): each hour
#: by :20, each day by 01:00 UTC, each week (Monday 00:00 UTC) by Monday 01:00 UTC.
AGGREGATION_FRESHNESS = {
    "hourly": FreshnessPolicy.cron(deadline_cron="20 * * * *", lower_bound_delta=timedelta(minutes=20)),
    "daily": FreshnessPolicy.cron(deadline_cron="0 1 * * *", lower_bound_delta=timedelta(hours=1)),
    "weekly": FreshnessPolicy.cron(deadline_cron="0 1 * * 1", lower_bound_delta=timedelta(hours=1)),
}
_FRESHNESS: dict[AssetKey, FreshnessPolicy] = {
    LAKE_EVENTS: LAKE_FRESHNESS,
    **{postgres_aggregations_key(g): AGGREGATION_FRESHNESS[g] for g in GRANULARITIES},
    **{lake_aggregations_key(g): AGGREGATION_FRESHNESS[g] for g in GRANULARITIES},
}


def defined_here() -> dict[str, CodeReferencesMetadataValue]:
    """Metadata naming the file and line of the call, for an ``AssetSpec`` (an asset without a function, whose
    code references ``with_source_code_references`` cannot find): ``AssetSpec(..., metadata=defined_here())``."""
    caller = sys._getframe(1)
    return {"dagster/code_references": CodeReferencesMetadataValue(code_references=[
        LocalFileCodeReference(file_path=caller.f_code.co_filename, line_number=caller.f_lineno)])}


def tier_and_pii(key: AssetKey) -> dict[str, str]:
    """The ``tier`` and ``pii`` tags of ``key`` (KeyError: an asset nobody classified)."""
    tier, personal = _TIERS[key]
    return {"tier": tier, "pii": "true" if personal else "false"}


def _standard(spec: AssetSpec) -> AssetSpec:
    spec = spec.merge_attributes(owners=[o for o in OWNERS if o not in spec.owners], tags=tier_and_pii(spec.key))
    policy = _FRESHNESS.get(spec.key)
    return spec if policy is None else spec.replace_attributes(freshness_policy=policy)


def with_standards(assets: Sequence[AssetsDefinition | AssetSpec]) -> list[AssetsDefinition | AssetSpec]:
    """``assets`` with their owners, tags, freshness policies and code references."""
    standard = with_source_code_references(map_asset_specs(_standard, assets))
    url = os.environ.get(CODE_URL_ENV, "").strip()
    if not url:
        return list(standard)
    if "github" not in url and "gitlab" not in url:  # Dagster links to those two only
        raise ValueError(f"{CODE_URL_ENV} must be a GitHub or GitLab repository address (code references link "
                         f"there), got {url!r}")
    mapping = AnchorBasedFilePathMapping(local_file_anchor=REPOSITORY_DIR / "pyproject.toml",
                                         file_anchor_path_in_repository="pyproject.toml")
    return list(link_code_references_to_git(standard, git_url=url.rstrip("/"),
                                            git_branch=os.environ.get(CODE_REF_ENV, "").strip() or DEFAULT_CODE_REF,
                                            file_path_mapping=mapping))
