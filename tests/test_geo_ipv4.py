"""Dotted-quad IPv4 addresses in ``enrichment/geo.py``: the table of :mod:`ipaddress`'s special networks and the
search of the bundled data give what :mod:`ipaddress` and geoip2fast's own ``lookup`` give, at every edge.

Pure functions: no database.
"""

from __future__ import annotations

import ipaddress
import random

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
