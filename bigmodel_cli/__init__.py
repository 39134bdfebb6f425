"""bigmodel: scaffold, train, evaluate, predict and export Keras models.

The Python API lives in :mod:`bigmodel_cli.api`; the CLI in :mod:`bigmodel_cli.cli`.

The house, top to bottom (a package imports only the ones below it; the
contract is ``[tool.importlinter]`` in pyproject.toml, checked by ``make test``):

- ``cli``, ``ui``: the Typer app and the rich rendering;
- ``api``: the Python face, re-exporting ``commands``;
- ``commands/``: one module per command;
- ``inference/`` | ``training/``: predict and serve | the Trainer, strategy, launch;
- ``model/``: builders, the saved run, export formats, metrics and plots;
- ``data/``: tables, shards, the block cache, image folders, splits;
- ``features/``: one module per column type (number, category, text, date), backbones;
- ``config``, ``runs``, ``runtime``, ``errors``: the schema, the run folder, TensorFlow's quiet
  import, errors.
"""

__version__ = "0.1.0"
