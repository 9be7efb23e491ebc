"""The code location's assets and checks.

Dagster features this project uses knowingly while Dagster still labels them preview or beta are silenced here,
once, before any asset module is imported, so that loading the code location prints nothing a user must read. Each
filter names one feature; a new preview feature still warns.
"""

import warnings

#: (message prefix, why we use it) of each preview/beta feature in use.
KNOWN_PREVIEW_FEATURES = (
    ("Specifying a partitions_def on an AssetCheckSpec", "per-day checks recorded against their partition"),
    ("Parameter `backfill_policy` of function `asset`", "a backfill of many days runs as one run"),
)

for _message, _reason in KNOWN_PREVIEW_FEATURES:
    warnings.filterwarnings("ignore", message=_message)
