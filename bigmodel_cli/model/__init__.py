"""The model: building it (``builders``, from its ``inputs``, the ``numeric``
preprocessing layers, the ``architectures`` and the ``ensemble``), a saved model read
back (``loading``) and a finished run (``saved``), export formats with their parity
checks (``export``, ``onnx_raw``), decisions and sets (``decide``, ``conformal``),
the steps after fitting (``afterfit_steps``), and metrics and plots of a model's
predictions (``metrics``).

It may import ``features``, ``data`` and the shared modules; never ``training``,
``inference`` or ``commands``.
"""
