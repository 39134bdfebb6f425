"""The experiment schema, loading, ``--set`` overrides and validation errors.

The pydantic models of this package are the single source of truth for
``experiment.yaml``: defaults, accepted values and ranges live here and
nowhere else. Unknown keys are errors with a did-you-mean hint; every error
names the dotted key path and, when it came from a file, the file and line.

- ``base``: the frozen base model, tasks, losses, metrics, column types' spellings;
- ``data``, ``train``: the sections (data:, text:, augment:; model:, train:, tune:);
- ``experiment``: the whole file and the checks across sections;
- ``load``: reading, overrides, errors, :func:`~bigmodel_cli.config.load.resolved`.

Example::

    cfg, base = load_experiment("exp/", overrides=["train.epochs=3"])
    cfg.train.epochs  # 3
"""
