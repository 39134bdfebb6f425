"""Rows in, checked splits out: table formats and shards (``sources``), in-memory
tables (``tables``), the block cache for data bigger than memory (``blocks``),
image folders (``images``), the choice between them (``streaming``), the loader
(``load``) and ``init --data``'s profiling (``profile``).

It reads files and encodes columns through ``features``; it must not import
``model``, ``training``, ``inference`` or ``commands``.
"""
