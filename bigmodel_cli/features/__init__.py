"""Column types: how a column is fitted on training rows, encoded, saved with the
run and read back. One module per type: ``number`` (statistics and quantiles),
``category``, ``text`` (with ``wordpiece``), ``date``; ``backbone`` finds a
pretrained encoder's weights and vocabulary.

It sits just above the shared modules (``config``, ``runs``, ``errors``) and
imports nothing else of the package.
"""
