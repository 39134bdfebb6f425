"""Rich rendering: the live training table, summaries, and JSON mode.

Progress and tables go to stderr; stdout carries only results (a path, or
one JSON document with ``--json``). Without a TTY there are no colours and no
live redraws: one plain line per epoch.

- ``console``: the consoles, JSON mode, shared formats;
- ``progress``: live progress (train's table, predict's rows/s, tune's trials);
- ``summaries``: what a command says when it ends, and the JSON documents;
- ``tables``: eval, explain, info, templates, init's profile, runs.

Example::

    obs = progress.TrainProgress(console.err_console())
    api.train("exp", observer=obs)
"""
