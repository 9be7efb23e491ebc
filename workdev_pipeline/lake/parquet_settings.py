"""The lake's Parquet settings, in one place: the sweep's pyarrow writer (``lake/day_files.py``) and delta-rs's own
writes (compaction, retention's deletes) both take them from a :class:`FileSettings`.

Chosen by measurement (``bench/bench_parquet.py``: a day of 1,000,000 demo events written by the sweep's writer
and read by the day's hourly aggregation; figures in ``bench/README.md``, reasons in ``docs/lake.md``):

* **zstd level 1**: level 3 costs ~1.45x the encoding CPU for 2.5 % smaller files; snappy and lz4 encode no
  cheaper here and write files ~1.9x larger, which the day's aggregation reads no faster;
* **row groups of 128 Ki rows**: 32 Ki and 1 Mi rows both wrote slightly larger files for no faster read. Where
  this meets the lake's file size, the file size wins: the events' own files hold at most ``FILE_ROWS`` rows
  (``lake/day_files.py``, chosen for erasure), so each is a single row group; 128 Ki bounds delta-rs's writes
  (retention's deletes, z-order), whose files maintenance re-sorts into that layout;
* **no dictionary on the columns whose values are all distinct** (``PLAIN_COLUMNS``: ``event_id``, ``timestamp``):
  their dictionaries overflow to plain pages after the encoder has paid for them; every other column keeps its
  dictionary (each measured alone);
* **no compression of the columns of small closed sets** (``UNCOMPRESSED_COLUMNS``: event types and categories,
  roles, entity types, sources, geo and device fields, ``ingested_at``, ``amount_overflow``): in a file of
  ``FILE_ROWS`` rows their pages are a dictionary of a few values and its indices, which zstd barely shrinks for
  the cost of its context per page -- the lake's own writer leaves them uncompressed (delta-rs, whose writer has
  one codec for every column, compresses them: its files are few and large, where that cost does not count);
* **statistics only on the columns that prune** (``STATS_COLUMNS``, the Delta log's too, nothing personal): no
  footer holds the min/max of a personal column, and encoding is cheaper. They are not optional: delta-rs's
  compaction of files without footer statistics commits null min/max to the log, and readers through the Arrow
  dataset (the aggregations) then skip the whole day (delta-rs issue #3173); ``tests/test_lake_writes.py`` checks
  a compacted day still reads whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import ColumnProperties, WriterProperties

#: The only columns whose min/max/null counts go into the Delta log and the files' footers (what queries prune by;
#: nothing personal).
STATS_COLUMNS = ("event_type", "event_category", "timestamp", "ingested_at")
#: Columns written without a dictionary: every value distinct within a row group, so a dictionary costs CPU and
#: bytes (``bench/README.md``: per column, only these two gain from plain; entity_id, session_id and event_data
#: repeat enough within a day for their dictionaries to pay).
PLAIN_COLUMNS = ("event_id", "timestamp")
#: Columns whose pages the lake's own writer leaves uncompressed: values of small closed sets, so a file's pages of
#: them are a dictionary of a few values and its indices, which compression barely shrinks for the CPU of a codec
#: context per page (``bench/README.md``).
UNCOMPRESSED_COLUMNS = ("event_type", "event_category", "user_role", "entity_type", "source", "geo_location",
                        "device_info", "ingested_at", "amount_overflow")


@dataclass(frozen=True)
class FileSettings:
    """How one kind of write encodes the lake's data files."""

    compression: str = "zstd"  # pyarrow's name; delta-rs takes it upper-cased
    compression_level: int | None = 1
    row_group_rows: int = 128 * 1024
    stats_columns: tuple[str, ...] = STATS_COLUMNS
    #: columns without a dictionary (None: no column has one)
    plain_columns: tuple[str, ...] | None = PLAIN_COLUMNS
    #: columns left uncompressed by the lake's own (pyarrow) writer; delta-rs compresses every column alike
    uncompressed_columns: tuple[str, ...] = UNCOMPRESSED_COLUMNS

    def dictionary(self, column: str) -> bool:
        """Whether the top-level ``column`` (or a field of it) is dictionary-encoded."""
        return self.plain_columns is not None and column not in self.plain_columns

    def pyarrow_options(self, schema: pa.Schema) -> dict[str, Any]:
        """Keyword arguments of ``pyarrow.parquet.write_table`` / ``ParquetWriter`` for files of ``schema`` (page
        checksums on: a damaged page fails to read instead of decoding to wrong values)."""
        leaves = [(f.name, path) for f in schema for path in _leaf_paths(f)]
        compressed = [path for top, path in leaves if top not in self.uncompressed_columns]
        return {
            "compression": {path: self.compression if path in compressed else "none" for _, path in leaves},
            "compression_level": None if self.compression_level is None else dict.fromkeys(compressed,
                                                                                           self.compression_level),
            "row_group_size": self.row_group_rows,
            "use_dictionary": [path for top, path in leaves if self.dictionary(top)],
            "write_statistics": [path for top, path in leaves if top in self.stats_columns],
            "write_page_checksum": True,
        }

    def writer_properties(self) -> WriterProperties:
        """The same settings as delta-rs ``WriterProperties`` (its writes: compaction, deletes, overwrites)."""
        named = set(self.stats_columns) | set(self.plain_columns or ())
        return WriterProperties(
            compression=self.compression.upper(), compression_level=self.compression_level,
            max_row_group_size=self.row_group_rows,
            default_column_properties=ColumnProperties(dictionary_enabled=self.plain_columns is not None,
                                                       statistics_enabled="NONE"),
            column_properties={c: ColumnProperties(
                dictionary_enabled=self.dictionary(c),
                statistics_enabled="CHUNK" if c in self.stats_columns else "NONE") for c in sorted(named)})


def _leaf_paths(field: pa.Field) -> list[str]:
    """The Parquet column paths of ``field`` (a struct's fields as ``name.field``)."""
    if pa.types.is_struct(field.type):
        return [f"{field.name}.{path}" for child in field.type for path in _leaf_paths(child)]
    return [field.name]


#: Every write of the events table's data files, but those spanning many days.
FILE_SETTINGS = FileSettings()
#: A delta-rs write spanning more than ``WIDE_WRITE_DAYS`` days keeps one Parquet writer open per day until its
#: commit, and zstd's per-column contexts make each cost ~0.5 MiB: 1.5 GiB for 2,900 thin days. Such writes
#: (retention over years of history) use snappy without dictionaries: 0.77 GiB for the same write, files ~1.6x
#: larger (``bench/README.md``; compaction re-encodes a day with zstd once it holds several files).
WIDE_FILE_SETTINGS = FileSettings(compression="snappy", compression_level=None, plain_columns=None)
WIDE_WRITE_DAYS = 64


def file_settings(days: int | None) -> FileSettings:
    """The data files' settings for a write touching ``days`` days (None: unknown, as few as a sweep's)."""
    return WIDE_FILE_SETTINGS if days is not None and days > WIDE_WRITE_DAYS else FILE_SETTINGS
