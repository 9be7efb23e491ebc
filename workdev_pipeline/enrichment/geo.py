"""Country, region and city of each event's IP address.

Two sources:

* a MaxMind DB file (GeoLite2-City/-Country, or any file of that layout), read with ``maxminddb``, when a
  path is given (the pipeline takes it from ``WORKDEV_GEOIP_DATABASE``, see :meth:`GeoLocator.from_env`);
* otherwise the offline country data that ships inside the ``geoip2fast`` package (IPv4 and IPv6;
  region and city are always null). Nothing is downloaded.

Addresses are parsed strictly with :mod:`ipaddress` first: malformed text (``999.1.1.1``, ``1.2.3``,
``010.1.1.1``, surrounding spaces), private, loopback, link-local, multicast, reserved, shared
(100.64/10) and documentation ranges all give null fields and are never looked up. IPv4-mapped IPv6
(``::ffff:a.b.c.d``) is looked up as its IPv4 address.

Each distinct address is resolved once per call, results are kept in an LRU cache per
:class:`GeoLocator`, and each reader is loaded once per process, on first use.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from workdev_pipeline.enrichment._arrow import StringColumn, distinct_strings, scatter

__all__ = ["GEOIP_DATABASE_ENV", "GEO_LOCATION_TYPE", "GeoLocator", "geo_location", "public_address"]

GEO_LOCATION_TYPE = pa.struct([("country", pa.string()), ("region", pa.string()), ("city", pa.string())])
#: Environment variable naming a MaxMind DB file; unset or empty means the bundled geoip2fast data.
GEOIP_DATABASE_ENV = "WORKDEV_GEOIP_DATABASE"
CACHE_SIZE = 65_536

Location = tuple[str | None, str | None, str | None]
_NOWHERE: Location = (None, None, None)


def public_address(text: str) -> str | None:
    """The canonical form of ``text`` if it is a well-formed, globally routable unicast address, else None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast or address.is_reserved:
        return None
    return str(address)


# -- geoip2fast (bundled data) ---------------------------------------------------------------------------------

_GEOIP2FAST_FILE = "geoip2fast-ipv6.dat.gz"  # country, IPv4 + IPv6; geoip2fast.dat.gz has IPv4 only
_geoip2fast_lock = threading.Lock()
_geoip2fast_reader: Any = None


@contextlib.contextmanager
def _quiet_geoip2fast_import() -> Iterator[Any]:
    """Undo geoip2fast's import-time side effects and keep its loader from spawning ``ps``.

    (It prints nothing with ``verbose=False``, so stdout is left alone: swapping it is process-wide.)
    """
    saved = {name: os.environ.get(name) for name in ("PYTHONWARNINGS", "PYTHONIOENCODING")}
    try:
        import geoip2fast.geoip2fast as module
    finally:  # the module sets both variables for the whole process (and its children) on import
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    mem_usage = getattr(module, "get_mem_usage", None)
    if mem_usage is not None:
        module.get_mem_usage = lambda: 0.0  # only feeds a load-time message; it runs `ps` in a subprocess
    try:
        yield module
    finally:
        if mem_usage is not None:
            module.get_mem_usage = mem_usage


def _geoip2fast() -> Any:
    """The process-wide geoip2fast reader, loaded on first use (~0.15 s, ~50 MiB).

    geoip2fast keeps its data in module globals, so a process can only hold one data file: always this one.
    """
    global _geoip2fast_reader
    if _geoip2fast_reader is None:
        with _geoip2fast_lock:
            if _geoip2fast_reader is None:
                with _quiet_geoip2fast_import() as module:
                    path = Path(module.__file__).with_name(_GEOIP2FAST_FILE)
                    if not path.is_file():  # a release without the IPv6 file: its default, IPv4 only
                        path = Path(module.GEOIP2FAST_DAT_GZ_FILE)
                    # an absolute path: given a bare name, geoip2fast prefers a file in the current directory
                    _geoip2fast_reader = module.GeoIP2Fast(verbose=False, geoip2fast_data_file=str(path))
    return _geoip2fast_reader


def _geoip2fast_lookup(address: str) -> Location:
    result = _geoip2fast().lookup(address)
    code = result.country_code
    if result.is_private or len(code) != 2 or not code.isalpha():  # "--": private or not found, "": invalid
        return _NOWHERE
    return code.upper(), None, None


# -- MaxMind DB -------------------------------------------------------------------------------------------------

def _name(record: Any) -> str | None:
    """English name of a GeoIP2 place record (else any name, else its ISO code)."""
    if not isinstance(record, Mapping):
        return None
    names = record.get("names")
    if isinstance(names, Mapping) and names:
        name = names.get("en") or next(iter(names.values()))
        if isinstance(name, str) and name:
            return name
    code = record.get("iso_code")
    return code if isinstance(code, str) and code else None


def _mmdb_location(record: Any) -> Location:
    """(country, region, city) of a GeoIP2 City/Country-layout record; nulls for anything else."""
    if not isinstance(record, Mapping):
        return _NOWHERE
    country = None
    for key in ("country", "registered_country"):  # where it is; else where it is registered
        place = record.get(key)
        code = place.get("iso_code") if isinstance(place, Mapping) else None
        if isinstance(code, str) and len(code) == 2 and code.isalpha():
            country = code.upper()
            break
    subdivisions = record.get("subdivisions")
    region = _name(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else None
    return country, region, _name(record.get("city"))


# -- the locator ------------------------------------------------------------------------------------------------

class GeoLocator:
    """Resolves IP addresses with one source: a MaxMind DB file, or the bundled geoip2fast data (``None``).

    The file is opened on first use and kept open; results are cached (LRU, ``cache_size`` entries).
    Thread-safe for lookups.
    """

    def __init__(self, database: str | os.PathLike[str] | None = None, *, cache_size: int = CACHE_SIZE) -> None:
        self.database = Path(database).expanduser() if database else None
        self._reader: Any = None
        self._lock = threading.Lock()
        self.lookup = functools.lru_cache(maxsize=cache_size)(self._lookup)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> GeoLocator:
        """A locator for the file named by ``WORKDEV_GEOIP_DATABASE`` (bundled data when unset or empty)."""
        value = (os.environ if environ is None else environ).get(GEOIP_DATABASE_ENV, "").strip()
        return cls(value or None, **kwargs)

    def __repr__(self) -> str:
        return f"GeoLocator({str(self.database) if self.database else 'bundled geoip2fast data'!r})"

    def load(self) -> GeoLocator:
        """Open the data now rather than on first lookup; raises if the file is missing or not a MaxMind DB."""
        if self.database is None:
            _geoip2fast()
        elif self._reader is None:
            import maxminddb

            with self._lock:
                if self._reader is None:
                    self._reader = maxminddb.open_database(str(self.database))
        return self

    def _lookup(self, ip: str) -> Location:
        """(country, region, city) of one address; nulls when it is not public or not found. Never raises."""
        address = public_address(ip)
        if address is None:
            return _NOWHERE
        if self.database is None:
            return _geoip2fast_lookup(address)
        reader = self._reader or self.load()._reader
        try:
            record = reader.get(address)
        except ValueError:  # e.g. an IPv6 address in an IPv4-only database
            return _NOWHERE
        return _mmdb_location(record)

    def locate(self, ips: StringColumn | Sequence[str | None]) -> pa.StructArray:
        """Per row: struct ``{country, region, city}``; a null struct for a null address."""
        indices, values = distinct_strings(ips)
        self.load()  # a missing or invalid file fails every call, not only those with a public address
        lookup = self.lookup
        return scatter(indices, [None if value is None else lookup(value) for value in values], GEO_LOCATION_TYPE)

    def cache_info(self) -> tuple[int, int, int | None, int]:
        """``(hits, misses, maxsize, currsize)`` of this locator's cache (a ``functools`` CacheInfo)."""
        return self.lookup.cache_info()

    def cache_clear(self) -> None:
        """Forget cached lookups (the reader stays loaded)."""
        self.lookup.cache_clear()


@functools.lru_cache(maxsize=8)
def _locator(database: str | None) -> GeoLocator:
    return GeoLocator(database)


def geo_location(ips: StringColumn | Sequence[str | None], *, database: str | Path | None = None) -> pa.StructArray:
    """Per row: struct ``{country, region, city}`` (ISO 3166-1 alpha-2 code and English names) of the IP address.

    ``database``: a MaxMind DB file (e.g. GeoLite2-City); ``None`` uses the bundled geoip2fast country data
    (region and city null). Private, loopback, reserved, malformed or unknown addresses give null fields; a
    null address gives a null struct. Never raises over the data; a missing or invalid file raises.
    """
    key = str(Path(database).expanduser().resolve()) if database else None
    return _locator(key).locate(ips)
