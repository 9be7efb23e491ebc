"""The WorkDev event pipeline. Importing the package sets Arrow's jemalloc options (``arrow_memory.py``), which
jemalloc reads when pyarrow is imported: before any module of the package imports it."""

from workdev_pipeline.arrow_memory import keep_freed_pages

keep_freed_pages()
