"""bigmodel: scaffold, train, evaluate, predict and export Keras models.

The Python API lives in :mod:`bigmodel_cli.api`; the CLI in :mod:`bigmodel_cli.cli`.
"""

__version__ = "0.1.0"
