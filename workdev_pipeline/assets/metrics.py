"""Real-time dashboard figures (platform_metrics_realtime): recomputed every minute, each valid for a TTL;
what AnalyticsClient.get_dashboard_metrics serves (it recomputes them itself when they have expired)."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, OpExecutionContext, asset, op
from pydantic import Field

from workdev_pipeline.assets.keys import INCOMING_EVENTS, REALTIME_METRICS
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.sql_files import query


class MetricsConfig(Config):
    ttl_seconds: int = Field(default=300, description="how long the figures stay valid (the schedule refreshes "
                                                      "them every minute; a stale dashboard recomputes them)")


@asset(
    key=REALTIME_METRICS,
    deps=[INCOMING_EVENTS],
    group_name="metrics",
    kinds={"postgres"},
    description="The dashboard's real-time figures (active users last hour, projects, proposals, payments and "
                "their sum, searches and mean search time, logins and registrations today, failed and pending "
                "events), each with an expiry. Refreshed every minute by the refresh_metrics schedule.",
)
def realtime_metrics(context: AssetExecutionContext, config: MetricsConfig,
                     postgres: PostgresResource) -> MaterializeResult:
    if not 0 < config.ttl_seconds <= 86_400:
        raise ValueError(f"ttl_seconds must be between 1 and 86400, got {config.ttl_seconds}")
    with postgres.connection() as conn:
        rows = conn.execute(query("metrics/refresh"), {"ttl": f"{config.ttl_seconds} seconds"}).fetchall()
    figures = {key: float(value) for key, value, _, _ in rows}
    context.log.info(", ".join(f"{k}={v:g}" for k, v in figures.items()))
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v:,.2f} |" for k, v in figures.items()]
    return MaterializeResult(metadata={
        **{key: MetadataValue.float(value) for key, value in figures.items()},
        "expires_at": MetadataValue.timestamp(rows[0][3]) if rows else MetadataValue.text("-"),
        "preview": MetadataValue.md("\n".join(lines)),
    })


@op(description="Delete the expired figures of platform_metrics_realtime (the seed's 15-minute cleanup).")
def cleanup_expired_metrics(context: OpExecutionContext, postgres: PostgresResource) -> int:
    with postgres.connection() as conn:
        removed = conn.execute(query("metrics/cleanup")).fetchone()[0]
    context.log.info(f"{removed} expired figure(s) removed")
    return removed
