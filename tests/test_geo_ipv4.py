"""Dotted-quad IPv4 addresses in ``enrichment/geo.py``: the table of :mod:`ipaddress`'s special networks and the
search of the bundled data give what :mod:`ipaddress` and geoip2fast's own ``lookup`` give, at every edge; the
search's table read from its cache file is the one built from the data.

No database.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from workdev_pipeline.enrichment import GeoLocator, geo, public_address


def _edges(numbers: list[int]) -> list[str]:
    return sorted({str(ipaddress.IPv4Address(n)) for x in numbers for n in (x - 1, x, x + 1) if 0 <= n < 2**32})


def test_public_address_of_a_dotted_quad_is_ipaddress_verdict_at_every_edge() -> None:
    networks = [value for values in vars(ipaddress.IPv4Address._constants).values()
                for value in (values if isinstance(values, list) else [values])
                if isinstance(value, ipaddress.IPv4Network)]
    assert len(networks) >= 10
    cuts, verdicts = geo._ipv4_public_ranges()
    assert None not in verdicts  # each range is decided by the table
    edges = [int(n.network_address) for n in networks] + [int(n.broadcast_address) + 1 for n in networks] + cuts
    rng = random.Random(14)
    texts = _edges(edges) + [str(ipaddress.IPv4Address(rng.randrange(2**32))) for _ in range(20_000)]
    assert [public_address(t) for t in texts] == [geo._public_address(t) for t in texts]


@pytest.mark.parametrize("text", ["010.1.1.1", "1.2.3", "1.2.3.4.5", " 8.8.8.8", "8.8.8.8 ", "8.8.8.8\n", "256.1.1.1",
                                  "8.8.8.08", "\u0663.1.1.1", "8.8.8.\u0668", "0x8.8.8.8", "8..8.8", "::ffff:8.8.8.8",
                                  "1.1.1.1", "0.0.0.0", "255.255.255.255", "100.127.255.255", "100.128.0.0"])
def test_public_address_of_near_quads_is_ipaddress_verdict(text: str) -> None:
    assert public_address(text) == geo._public_address(text)


def test_bundled_countries_are_geoip2fast_lookup_at_network_edges() -> None:
    reader = geo._geoip2fast()
    countries = geo._bundled_countries()
    assert countries is not None  # the bundled file has the layout it reads: else every lookup is geoip2fast's
    starts = [(first, length) for firsts, lengths in zip(countries.firsts, countries.lengths, strict=True)
              for first, length in zip(firsts, lengths, strict=True) if first < 2**32]
    rng = random.Random(14)
    sample = rng.sample(starts, 3_000) + starts[:20] + starts[-20:]
    edges = [first for first, _ in sample] + [first + countries.sizes[length] - 1 for first, length in sample]
    texts = _edges(edges) + [str(ipaddress.IPv4Address(rng.randrange(2**32))) for _ in range(3_000)]

    def geoip2fast_says(text: str) -> geo.Location:
        result = reader.lookup(text)
        code = result.country_code
        return geo._NOWHERE if result.is_private or len(code) != 2 or not code.isalpha() else (code.upper(), None, None)

    found = [geo._geoip2fast_lookup(t) for t in texts]
    assert found == [geoip2fast_says(t) for t in texts]
    assert sum(f != geo._NOWHERE for f in found) > len(texts) // 2


def test_a_column_of_addresses_gets_each_addresss_own_verdict() -> None:
    """The column-wise search (dotted quads of a batch at once) against each address resolved alone."""
    countries = geo._bundled_countries()
    assert countries is not None and geo._bundled_table() is not None  # else the column-wise path is not taken
    networks = [value for values in vars(ipaddress.IPv4Address._constants).values()
                for value in (values if isinstance(values, list) else [values])
                if isinstance(value, ipaddress.IPv4Network)]
    rng = random.Random(15)
    starts = [(first, length) for firsts, lengths in zip(countries.firsts, countries.lengths, strict=True)
              for first, length in zip(firsts, lengths, strict=True) if first < 2**32]
    sample = rng.sample(starts, 2_000) + starts[:10] + starts[-10:]
    edges = ([first for first, _ in sample] + [first + countries.sizes[length] - 1 for first, length in sample]
             + [int(n.network_address) for n in networks] + [int(n.broadcast_address) + 1 for n in networks])
    texts: list[str | None] = [*_edges(edges)]
    texts += [str(ipaddress.IPv4Address(rng.randrange(2**32))) for _ in range(3_000)]
    texts += ["010.1.1.1", "1.2.3", " 8.8.8.8", "8.8.8.8\n", "256.1.1.1", "\u0663.1.1.1", "::ffff:8.8.8.8",
              "2001:4860:4860::8888", "abc", "", None, "8.8.8.8"]
    locator = GeoLocator()
    found = locator.locate(pa.array(texts)).to_pylist()
    alone = [None if t is None else dict(zip(("country", "region", "city"), locator._lookup(t), strict=True))
             for t in texts]
    assert found == alone
    assert sum(f is not None and f["country"] is not None for f in found) > len(texts) // 3


# -- the table's cache file ----------------------------------------------------------------------------------------

_LOCATE_IN_A_FRESH_PROCESS = """
import json, sys
import pyarrow as pa
from workdev_pipeline.enrichment import GeoLocator, geo
found = GeoLocator().load().locate(pa.array(sys.argv[1:])).to_pylist()
print(json.dumps({"found": found, "data_loaded": geo._geoip2fast_reader is not None}))
"""


def _locate_in_a_fresh_process(home: Path, addresses: list[str]) -> dict:
    """Countries of ``addresses`` found by a new interpreter with ``home`` as its WORKDEV_HOME, and whether it loaded
    geoip2fast's own data."""
    done = subprocess.run([sys.executable, "-c", _LOCATE_IN_A_FRESH_PROCESS, *addresses], capture_output=True,
                          text=True, env={**os.environ, "WORKDEV_HOME": str(home)}, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


_ADDRESSES = ["8.8.8.8", "1.1.1.1", "81.2.69.160", "10.0.0.5", "not-an-ip", "::1", "203.0.113.9", "41.0.0.1"]


def test_a_process_that_finds_the_cached_table_needs_no_geoip2fast_data(tmp_path: Path) -> None:
    first = _locate_in_a_fresh_process(tmp_path, _ADDRESSES)
    cached = list((tmp_path / "cache").glob("geo-countries-*.npz"))
    assert len(cached) == 1
    second = _locate_in_a_fresh_process(tmp_path, _ADDRESSES)
    assert second["found"] == first["found"]
    assert first["data_loaded"] and not second["data_loaded"]
    assert sum(f["country"] is not None for f in first["found"]) >= 4
    # a public IPv6 address still gets geoip2fast's data, then
    assert _locate_in_a_fresh_process(tmp_path, ["2001:4860:4860::8888"])["data_loaded"]


def test_the_cached_table_is_the_built_one(tmp_path: Path) -> None:
    built = geo._CountryTable.of(geo._bundled_countries())
    assert built is not None
    built.save(tmp_path / "table.npz")
    read = geo._CountryTable.load(tmp_path / "table.npz")
    assert read is not None
    for name in ("firsts", "lasts", "ids", "cuts", "public"):
        assert np.array_equal(getattr(read, name), getattr(built, name)) and getattr(read, name).dtype == getattr(
            built, name).dtype, name
    assert read.codes.equals(built.codes) and read.codes.null_count > 0


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a table"])
def test_a_damaged_cache_is_built_again(tmp_path: Path, damage: str) -> None:
    expected = _locate_in_a_fresh_process(tmp_path, _ADDRESSES)["found"]
    (cached,) = (tmp_path / "cache").glob("geo-countries-*.npz")
    if damage == "empty":
        cached.write_bytes(b"")
    elif damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:100_000])
    else:
        np.savez(cached, firsts=np.arange(3, dtype=np.uint32))
    assert geo._CountryTable.load(cached) is None
    again = _locate_in_a_fresh_process(tmp_path, _ADDRESSES)
    assert again["found"] == expected and again["data_loaded"]  # built again...
    assert geo._CountryTable.load(cached) is not None  # ...and cached again
    assert not _locate_in_a_fresh_process(tmp_path, _ADDRESSES)["data_loaded"]


def test_a_home_where_nothing_can_be_cached_still_locates(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    expected = _locate_in_a_fresh_process(tmp_path / "elsewhere", _ADDRESSES)["found"]
    assert _locate_in_a_fresh_process(tmp_path, _ADDRESSES)["found"] == expected
    assert _locate_in_a_fresh_process(tmp_path, _ADDRESSES)["data_loaded"]  # built again each time
