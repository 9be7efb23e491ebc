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
    # each asset links to the code defining it: a file and line of this checkout, or of the repository at
    # WORKDEV_CODE_URL (workdev_pipeline/assets/standards.py)
    ("Function `with_source_code_references`", "code references"),
    ("Class `CodeReferencesMetadataValue`", "code references"),
    ("Class `LocalFileCodeReference`", "code references to this checkout"),
    ("Function `link_code_references_to_git`", "code references to the repository"),
    ("Class `AnchorBasedFilePathMapping`", "code references to the repository"),
    ("Class `UrlCodeReference`", "code references to the repository"),
)

for _message, _reason in KNOWN_PREVIEW_FEATURES:
    warnings.filterwarnings("ignore", message=_message)
