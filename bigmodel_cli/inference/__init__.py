"""Predictions from a trained run: the engine chooser (``engine.open_engine``,
onnxruntime or TensorFlow, one set of errors), the streaming file reader/writer
(``predict``) and the HTTP service (``serve``).

It owns what happens after training and must not import ``training``,
``commands``, ``api`` or ``cli``; the ONNX fast path must not import TensorFlow.
"""
