"""Country, region and city of each event's IP address.

Two sources:

* a MaxMind DB file (GeoLite2-City/-Country, or any file of that layout), read with ``maxminddb``, when a
  path is given (the pipeline takes it from ``WORKDEV_GEOIP_DATABASE``, see :meth:`GeoLocator.from_env`);
* otherwise the offline country data that ships inside the ``geoip2fast`` package (IPv4 and IPv6;
  region and city are always null). Nothing is downloaded.

Addresses are parsed strictly with :mod:`ipaddress` first (a dotted-quad IPv4 address by a regular expression
and a table of :mod:`ipaddress`'s own special networks: the same verdict, ~10x cheaper): malformed text
(``999.1.1.1``, ``1.2.3``, ``010.1.1.1``, surrounding spaces), private, loopback, link-local, multicast, reserved,
shared (100.64/10) and documentation ranges all give null fields and are never looked up. IPv4-mapped IPv6
(``::ffff:a.b.c.d``) is looked up as its IPv4 address.

Each distinct address is resolved once per call, and each reader is loaded once per process, on first use. With
the bundled data, a batch's distinct dotted-quad addresses are resolved column-wise (:class:`_CountryTable`: the
same verdicts, searched with numpy); every other address is resolved one by one, the results kept in an LRU cache
per :class:`GeoLocator`. That table is cached in ``$WORKDEV_HOME/cache`` (its file named by the data file it comes
from): a process that finds it reads ~5 MB of arrays instead of loading geoip2fast's data and building the table
(~0.15 CPU-s, which every sweep's process paid), and loads geoip2fast's data only when an address needs it (public
IPv6).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import ipaddress
import logging
import os
import re
import socket
import sys
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.enrichment._arrow import StringColumn, distinct_array, scatter
from workdev_pipeline.settings import workdev_home

log = logging.getLogger(__name__)

__all__ = ["GEOIP_DATABASE_ENV", "GEO_LOCATION_TYPE", "GeoLocator", "geo_location", "public_address"]

GEO_LOCATION_TYPE = pa.struct([("country", pa.string()), ("region", pa.string()), ("city", pa.string())])
#: Environment variable naming a MaxMind DB file; unset or empty means the bundled geoip2fast data.
GEOIP_DATABASE_ENV = "WORKDEV_GEOIP_DATABASE"
CACHE_SIZE = 65_536

Location = tuple[str | None, str | None, str | None]
_NOWHERE: Location = (None, None, None)


#: An IPv4 address in the only text form :mod:`ipaddress` takes (four ASCII decimal bytes, no leading zero).
_DOTTED_QUAD = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                          r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


#: :data:`_DOTTED_QUAD` for Arrow's (RE2) matcher: the whole text (``$`` is the end of the text only).
_DOTTED_QUAD_WHOLE = "^" + _DOTTED_QUAD.pattern.removesuffix(r"\Z") + "$"


def _ipv4_number(text: str) -> int | None:
    """``text`` as a 32-bit number when it is a dotted-quad IPv4 address as :mod:`ipaddress` reads it, else None."""
    return int.from_bytes(socket.inet_aton(text), "big") if _DOTTED_QUAD.match(text) else None


@functools.cache
def _ipv4_public_ranges() -> tuple[list[int], list[bool | None]]:
    """IPv4 cut where any of :mod:`ipaddress`'s special networks starts or ends: each range's first number and
    whether :func:`public_address` takes its addresses (None when its first and last address disagree)."""
    networks: list[ipaddress.IPv4Network] = []
    for value in vars(getattr(ipaddress.IPv4Address, "_constants", object)).values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, ipaddress.IPv4Network):
                networks.append(item)
    cuts = sorted({0, *(int(n.network_address) for n in networks),
                   *(int(n.broadcast_address) + 1 for n in networks if int(n.broadcast_address) < 2**32 - 1)})
    verdicts: list[bool | None] = []
    for first, end in zip(cuts, [*cuts[1:], 2**32], strict=True):
        at_first, at_last = (_public_address(str(ipaddress.IPv4Address(n))) is not None for n in (first, end - 1))
        verdicts.append(at_first if at_first == at_last else None)
    return cuts, verdicts


def public_address(text: str) -> str | None:
    """The canonical form of ``text`` if it is a well-formed, globally routable unicast address, else None."""
    number = _ipv4_number(text)
    if number is not None:
        cuts, verdicts = _ipv4_public_ranges()
        public = verdicts[bisect.bisect_right(cuts, number) - 1]
        if public is not None:
            return text if public else None  # a dotted quad is its own canonical form
    return _public_address(text)


def _public_address(text: str) -> str | None:
    """:func:`public_address` by :mod:`ipaddress` alone."""
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
#: The cached table's layout and derivation (``_CountryTable.of`` / ``save``): changing either changes this, which names
#: new cache files.
_TABLE_LAYOUT = 1
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
                    # a release without the IPv6 file: its default, IPv4 only
                    path = _ipv6_data_file() or Path(module.GEOIP2FAST_DAT_GZ_FILE)
                    # an absolute path: given a bare name, geoip2fast prefers a file in the current directory
                    _geoip2fast_reader = module.GeoIP2Fast(verbose=False, geoip2fast_data_file=str(path))
    return _geoip2fast_reader


def _ipv6_data_file() -> Path | None:
    """geoip2fast's bundled data file with IPv6 (``_GEOIP2FAST_FILE``), found without importing the package; None when
    its release has none."""
    spec = importlib.util.find_spec("geoip2fast")
    path = None if spec is None or spec.origin is None else Path(spec.origin).with_name(_GEOIP2FAST_FILE)
    return path if path is not None and path.is_file() else None


class _Countries:
    """The bundled data's networks, searched as geoip2fast's ``lookup`` searches them (two bisections over its
    lists), without the objects and text that lookup builds for each address (~15 us of its ~16)."""

    def __init__(self, module: Any) -> None:
        self.roots, self.firsts = module.mainIndex, module.mainListFirstIP
        self.lengths, self.ids, self.sizes = module.mainListNetlength, module.mainListIDCountryCodes, module.numIPsv4
        self.codes: list[str | None] = []
        for index, entry in enumerate(module.mainListNamesCountry):
            parts = entry.split(":")
            code = parts[0] if len(parts) == 2 else ""
            # below 16: geoip2fast's private and reserved ranges, and "not found"
            self.codes.append(code.upper() if index >= 16 and len(code) == 2 and code.isalpha() else None)

    def country(self, number: int) -> str | None:
        """The country code of the IPv4 address ``number``; None when the data has none for it."""
        root = bisect.bisect_right(self.roots, number) - 1
        firsts = self.firsts[root]
        chunk = bisect.bisect_right(firsts, number) - 1
        if number >= firsts[chunk] + self.sizes[self.lengths[root][chunk]]:
            return None
        return self.codes[self.ids[root][chunk]]


class _CountryTable:
    """The bundled data's IPv4 networks as sorted numpy arrays: a column of addresses searched at once, with the
    verdicts :class:`_Countries` and :func:`public_address` give one address at a time."""

    def __init__(self, firsts: np.ndarray, lasts: np.ndarray, ids: np.ndarray, codes: pa.Array) -> None:
        # each network's first and last address (both below 2**32) and its country's index: ~10 bytes a network
        self.firsts, self.lasts, self.ids, self.codes = firsts, lasts, ids, codes
        cuts, verdicts = _ipv4_public_ranges()
        self.cuts = np.array(cuts, dtype=np.uint32)
        self.public = np.array([-1 if v is None else int(v) for v in verdicts], dtype=np.int8)  # -1: undecided

    @classmethod
    def of(cls, countries: _Countries) -> _CountryTable | None:
        """The table, when the networks are laid out as one sorted run (each root its list's first network)."""
        if any(firsts and root != firsts[0] for root, firsts in zip(countries.roots, countries.firsts, strict=True)):
            return None
        firsts, lengths, ids = [], [], []
        for row, row_lengths, row_ids in zip(countries.firsts, countries.lengths, countries.ids, strict=True):
            ipv4 = len(row) if not row or row[-1] < 2**32 else bisect.bisect_left(row, 2**32)  # IPv6 follows
            for column, values in ((firsts, row), (lengths, row_lengths), (ids, row_ids)):
                column.append(np.array(values[:ipv4], dtype=np.int64))
        starts = np.concatenate(firsts)
        if not bool(np.all(np.diff(starts) > 0)):
            return None
        lasts = starts + np.array(countries.sizes, dtype=np.int64)[np.concatenate(lengths)] - 1
        return cls(starts.astype(np.uint32), lasts.astype(np.uint32), np.concatenate(ids).astype(np.int16),
                   pa.array(countries.codes, pa.string()))

    def save(self, path: Path) -> None:
        """Write the table to ``path`` (atomically: a reader finds the whole file or none)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        codes = self.codes.fill_null("").to_numpy(zero_copy_only=False).astype("U2")
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(temporary, "wb") as file:
                np.savez(file, firsts=self.firsts, lasts=self.lasts, ids=self.ids, codes=codes,
                         known=self.codes.is_valid().to_numpy(zero_copy_only=False))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> _CountryTable | None:
        """The table :meth:`save` wrote to ``path``; None when there is none or it is not such a table."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                firsts, lasts, ids = saved["firsts"], saved["lasts"], saved["ids"]
                codes, known = saved["codes"], saved["known"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        shapes_agree = firsts.shape == lasts.shape == ids.shape and codes.shape == known.shape
        if not (shapes_agree and firsts.dtype == lasts.dtype == np.uint32 and ids.dtype == np.int16
                and known.dtype == np.bool_ and codes.dtype.kind == "U" and len(firsts)
                and ids.min() >= 0 and ids.max() < len(codes)):
            return None
        return cls(firsts, lasts, ids, pa.array(codes.tolist(), pa.string(), mask=~known))

    def countries(self, values: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """Per value of ``values`` (strings, no null): its country code when it is a public dotted quad (null when
        it is a dotted quad that is not public or not found), and whether it needs :func:`public_address`'s own
        verdict instead (not a dotted quad, or a range the table leaves undecided)."""
        quad = pc.fill_null(pc.match_substring_regex(values, _DOTTED_QUAD_WHOLE), False).to_numpy(
            zero_copy_only=False)
        numbers = np.zeros(len(values), dtype=np.uint32)
        at = np.flatnonzero(quad)
        if len(at):
            octets = pc.split_pattern(values.take(pa.array(at)), ".").flatten().cast(pa.uint32()).to_numpy()
            octets = octets.reshape(-1, 4)
            numbers[at] = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        public = self.public[np.searchsorted(self.cuts, numbers, side="right") - 1]
        network = np.searchsorted(self.firsts, numbers, side="right") - 1
        found = quad & (public == 1) & (network >= 0) & (numbers <= self.lasts[np.maximum(network, 0)])
        codes = self.codes.take(pa.array(np.where(found, self.ids[np.maximum(network, 0)], 0), mask=~found))
        return codes, ~quad | (public < 0)


@functools.cache
def _bundled_table() -> _CountryTable | None:
    """The bundled data's :class:`_CountryTable`, when it has the layout it reads (else None): read from its cache
    file when there is one (geoip2fast's own data is then not loaded unless an address needs it), else built and
    cached. A cache that cannot be read is built again; one that cannot be written is only not kept."""
    cache = _table_cache_file()
    table = None if cache is None else _CountryTable.load(cache)
    if table is None:
        countries = _bundled_countries()
        table = None if countries is None else _CountryTable.of(countries)
        if table is not None and cache is not None:
            try:
                table.save(cache)
            except OSError as exc:  # a read-only home: every process builds its own table
                log.debug("geo table not cached at %s: %s", cache, exc)
    return table


def _table_cache_file() -> Path | None:
    """Where the bundled data's table is cached: ``$WORKDEV_HOME/cache``, named by the data file it comes from
    (geoip2fast's version, the file's path, size and time) and the table's layout; None when that file is not
    found without loading it."""
    data = _ipv6_data_file()
    if data is None:
        return None
    try:
        stat = data.stat()
        home = workdev_home()
    except OSError:
        return None
    source = f"{_TABLE_LAYOUT}|{importlib.metadata.version('geoip2fast')}|{data}|{stat.st_size}|{stat.st_mtime_ns}"
    return home / "cache" / f"geo-countries-{hashlib.sha256(source.encode()).hexdigest()[:16]}.npz"


@functools.cache
def _bundled_countries() -> _Countries | None:
    """The bundled data's IPv4 networks when they have the layout :class:`_Countries` reads, else None."""
    reader = _geoip2fast()
    module = sys.modules.get(type(reader).__module__)
    try:
        if not reader.country or reader.city or reader.asn or module.mainIndex[0] != 0:
            return None
        return _Countries(module)
    except (AttributeError, IndexError, TypeError):
        return None


def _geoip2fast_lookup(address: str) -> Location:
    number = _ipv4_number(address)
    countries = _bundled_countries() if number is not None else None
    if countries is not None:
        code = countries.country(number)
        return _NOWHERE if code is None else (code, None, None)
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
            if _bundled_table() is None:  # else geoip2fast's own data is loaded when an address needs it
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
        indices, values = distinct_array(ips)
        self.load()  # a missing or invalid file fails every call, not only those with a public address
        table = _bundled_table() if self.database is None and not values.null_count else None
        if table is None:
            lookup = self.lookup
            return scatter(indices, [None if value is None else lookup(value) for value in values.to_pylist()],
                           GEO_LOCATION_TYPE)
        countries, one_by_one = table.countries(values)
        if one_by_one.any():
            at = np.flatnonzero(one_by_one)
            found = [self.lookup(value)[0] for value in values.take(pa.array(at)).to_pylist()]
            countries = pc.replace_with_mask(countries, pa.array(one_by_one), pa.array(found, pa.string()))
        nothing = pa.nulls(len(values), pa.string())  # the bundled data has countries only
        return pa.StructArray.from_arrays([countries, nothing, nothing], fields=list(GEO_LOCATION_TYPE)).take(indices)

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
