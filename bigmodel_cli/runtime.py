"""TensorFlow's quiet import: the one way any module of the package starts TensorFlow.

Shared by every stage (loading a model, predicting, training), so it sits at the
bottom with ``config`` and ``runs``; strategy and precision choices stay in
``training.strategy``.
"""

from __future__ import annotations

import os


def quiet_tensorflow(verbose: bool) -> None:
    """Silence TensorFlow's C++ and Python log noise unless --verbose.

    Only environment variables, loggers and warning filters: importing this
    costs nothing, so the CLI calls it before any command runs."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if verbose:
        return
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "tf2onnx", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for mod in ("keras", "tensorflow", "tf2onnx", "google", "absl", "onnx", "numpy", "h5py"):
        warnings.filterwarnings("ignore", module=mod)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def import_tensorflow(verbose: bool | None = None):
    """Import TensorFlow and Keras with their C++ start-up logs silenced.

    TensorFlow 2.21 logs through absl from C++ while importing, whatever
    TF_CPP_MIN_LOG_LEVEL says, so stderr's file descriptor is pointed at a
    temporary file for the import; if the import fails, the captured text is
    replayed so nothing useful is lost."""
    import sys

    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"]
    with _without_optional_imports():
        return _import_tensorflow(verbose)


# Keras 3 imports scikit-learn (keras.wrappers.SKLearn*) and matplotlib.pyplot
# (keras.visualization) when they are installed: 0.6 s and 0.5 s of a 3.5 s
# import here, for wrappers and galleries bigmodel never uses. Keras takes
# either being absent gracefully (try/except ImportError), so they are hidden
# while Keras imports and importable again afterwards; bigmodel's own plots
# import matplotlib when they draw. TensorFlow once made the same cut for
# sklearn (tensorflow/tensorflow#2178).
OPTIONAL_AT_KERAS_IMPORT = ("sklearn", "matplotlib")


class _without_optional_imports:
    def __enter__(self) -> None:
        import sys

        self.hidden = [m for m in OPTIONAL_AT_KERAS_IMPORT if m not in sys.modules]
        for m in self.hidden:
            sys.modules[m] = None  # type: ignore[assignment]  # "import m" raises ImportError

    def __exit__(self, *exc) -> bool:
        import sys

        for m in self.hidden:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]
        return False


def _import_tensorflow(verbose: bool | None):
    import sys
    import tempfile

    verbose = bool(os.environ.get("BIGMODEL_VERBOSE")) if verbose is None else verbose
    quiet_tensorflow(verbose)
    if verbose:
        import keras  # noqa: F401
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            tf.config.list_physical_devices("GPU")
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf
