"""One module per command: ``init``, ``train``, ``prepare``, ``eval``, ``predict``,
``export``, ``tune``, ``runs``, ``info`` (``serve`` is :mod:`bigmodel_cli.inference.serve`).

A command turns its arguments into a result object; it never prints (``ui`` renders)
and never parses argv (``cli`` does). It owns the run folder's bookkeeping
(``session``: meta.json) and may import every stage below; nothing below may
import it. ``api`` re-exports the public entry points.
"""
