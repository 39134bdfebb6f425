"""The model: Keras builders and custom layers (``builders``), a finished run read
back (``saved``), export formats with their parity checks (``export``), and metrics
and plots of a model's predictions (``metrics``).

It may import ``features``, ``data`` and the shared modules; never ``training``,
``inference`` or ``commands``.
"""
