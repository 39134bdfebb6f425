"""Training: the step loop (``trainer``), its input pipeline (``pipeline``), the
``tf.distribute`` strategy and precision (``strategy``), multi-worker launch
(``launch``), TensorBoard logs (``tensorboard``) and the after-training plot and
inference copy (``finish``).

It must not import ``inference``, ``commands``, ``api`` or ``cli``: a trained
run is handed over through the run folder, not through calls.
"""
