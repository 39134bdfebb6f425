"""The command functions of the CLI, one a command: they parse arguments (Typer), call
:mod:`bigmodel_cli.api` and hand the outcome to :mod:`bigmodel_cli.ui`. ``cli`` registers
them on its app. ``make``: what builds (init, templates, train, prepare, runs, tune, submit);
``use``: what reads a trained run (serve, eval, predict, explain, export, info); ``options``:
the options several share. Like ``cli``, they import nothing heavy at the top: ``--help``,
``init`` and ``templates`` never import TensorFlow."""
