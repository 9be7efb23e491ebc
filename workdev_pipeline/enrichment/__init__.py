"""Pure, vectorised enrichment and validation of event columns (Apache Arrow arrays in, Arrow arrays out).

* :func:`device_info`: user agent -> ``{device_type, browser, os}`` (ua-parser);
* :func:`geo_location` / :class:`GeoLocator`: IP address -> ``{country, region, city}`` (MaxMind DB file, or
  the offline country data bundled with geoip2fast);
* :class:`SchemaValidator`: ``event_data`` JSON text -> error message or null (column-wise over Arrow's JSON
  reader, with a per-event fastjsonschema + orjson reference).

Each distinct input value is processed once per call, and results are cached across calls.
"""

from workdev_pipeline.enrichment.device import (
    DEVICE_INFO_TYPE,
    DEVICE_TYPES,
    device_info,
    load_user_agent_rules,
    parse_user_agent,
)
from workdev_pipeline.enrichment.geo import (
    GEO_LOCATION_TYPE,
    GEOIP_DATABASE_ENV,
    GeoLocator,
    geo_location,
    public_address,
)
from workdev_pipeline.enrichment.validation import SchemaValidator

__all__ = [
    "DEVICE_INFO_TYPE",
    "DEVICE_TYPES",
    "GEOIP_DATABASE_ENV",
    "GEO_LOCATION_TYPE",
    "GeoLocator",
    "SchemaValidator",
    "device_info",
    "geo_location",
    "load_user_agent_rules",
    "parse_user_agent",
    "public_address",
]
