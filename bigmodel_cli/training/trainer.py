"""The training driver: one path for every strategy.

A custom step (``strategy.run`` over a distributed dataset, loss averaged
over the *global* batch, ``optimizer.apply_gradients``) runs under
OneDevice, Mirrored and MultiWorkerMirrored strategies alike; Keras 3's
``model.fit`` does not work under MultiWorkerMirroredStrategy
(keras-team/keras#20585). Several steps run per compiled call
(``train.steps_per_execution``), which also makes it faster than ``fit`` on
CPU.

Data order is a pure function of (seed, epoch): each epoch's permutation is
``default_rng([seed, epoch])``, and workers take interleaved shards of it, so
every global batch holds the same rows whether one process or N train.

Resume state is embedded in the checkpoint itself (``bigmodel_state.json``
inside the ``.keras`` zip), written to a temporary name and renamed: a kill
at any instant leaves a consistent checkpoint.

Example::

    result = fit(cfg, base_dir, run_dir, datasets, observer)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from bigmodel_cli.config import ExperimentConfig, checkpoint_interval
from bigmodel_cli.data.sources import Datasets
from bigmodel_cli.errors import ConfigError, Interrupted, ModelFileError
from bigmodel_cli.training.pipeline import epoch_order, eval_batches, source_for, training_stats  # noqa: F401  (epoch_order: the order contract, re-exported)
from bigmodel_cli.runs import CHECKPOINTS, HISTORY_FILE, MODEL_FILE, atomic_path, atomic_write_text

STATE_NAME = "bigmodel_state.json"
LAST = "last.keras"
PREVIOUS = "previous.keras"  # the resume state before last.keras: what resume falls back to
BEST = "best.keras"


class Observer(Protocol):
    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_epoch_begin(self, epoch: int, steps: int) -> None: ...
    def on_steps(self, epoch: int, done: int, steps: int, logs: dict[str, float], samples_per_s: float) -> None: ...
    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None: ...
    def on_saved(self, path: Path) -> None: ...
    def on_train_end(self, info: dict[str, Any]) -> None: ...


class NullObserver:
    def __getattr__(self, name: str):
        return lambda *a, **k: None


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # steps completed inside epoch `epoch` (mid-epoch checkpoints)
    partial: list[float] = field(default_factory=list)  # metric sums of the unfinished epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_early: bool = False
    global_step: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "TrainState":
        return cls(**json.loads(text))


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    epochs_done: int
    best_epoch: int | None
    model_path: Path
    stopped_early: bool
    seconds: float
    samples_per_s: float
    strategy: dict[str, Any]
    times: dict[str, float] = field(default_factory=dict)  # seconds: build, epochs, validation, saves, finalize


# ----------------------------------------------------------------- signals


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks between compiled calls; a
    second signal exits at once (the last checkpoint on disk stays valid)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            os._exit(130)
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -------------------------------------------------------------- checkpoints


def save_checkpoint(model, path: Path, state: TrainState, also: Path | None = None) -> None:
    """model + optimizer + resume state in one file, atomically; ``also`` (the
    best checkpoint) gets the same file first, as a hard link: one
    serialisation, and a kill between the two renames leaves ``also`` newer
    than ``path``, never older (resume redoes the epoch from ``path``)."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(STATE_NAME, state.to_json())
        if path.name == LAST and path.is_file():
            keep_previous(path, path.with_name(PREVIOUS))
        if also is not None:
            with atomic_path(also, suffix=".keras") as tmp_also:
                tmp_also.unlink()
                try:
                    os.link(tmp, tmp_also)
                except OSError:  # a file system without hard links
                    import shutil

                    shutil.copyfile(tmp, tmp_also)


def keep_previous(last: Path, previous: Path) -> None:
    """The current last.keras becomes previous.keras before a new one replaces it: a
    hard link renamed into place (no moment without either), or a rename where
    the file system has no hard links (a kill in between leaves previous.keras)."""
    tmp = previous.with_name(f".{previous.name}.linking_.keras")  # a temporary name resume sweeps
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(last, tmp)
        os.replace(tmp, previous)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.replace(last, previous)


def damage(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it is whole): not a zip (a
    truncated file), a member whose CRC fails, or no model or resume state inside."""
    try:
        if path.stat().st_size == 0:
            return "empty"
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if STATE_NAME not in names or "config.json" not in names:
                return "no resume state inside"
            bad = z.testzip()
            if bad is not None:
                return f"{bad} fails its checksum"
            TrainState.from_json(z.read(STATE_NAME).decode())
    except zipfile.BadZipFile:
        return "not a whole zip file: truncated?"
    except (OSError, ValueError, TypeError, KeyError, EOFError) as e:
        return f"{type(e).__name__}: {str(e)[:80]}"
    return None


def resume_point(run_dir: Path) -> tuple[Path | None, TrainState | None, list[str]]:
    """The newest whole resume state of a run: last.keras, else the newer of
    previous.keras and best.keras; notes name each damaged one. (None, None, notes)
    when the run has none: resume then starts it again from step 0."""
    ckpt = run_dir / CHECKPOINTS
    notes: list[str] = []
    whole: list[tuple[Path, TrainState]] = []
    for name in (LAST, PREVIOUS, BEST):
        p = ckpt / name
        if not p.is_file():
            continue
        why = damage(p)
        if why:
            notes.append(f"checkpoint {p} is damaged ({why})")
            continue
        whole.append((p, read_state(p)))
        if name == LAST:
            break
    if not whole:
        return None, None, notes
    path, state = whole[0] if whole[0][0].name == LAST else max(whole, key=lambda ps: ps[1].global_step)
    if notes:
        where = f"epoch {state.epoch + 1}, step {state.step}" if state.step else f"the end of epoch {state.epoch}"
        notes[-1] += f"; resuming from {path.name} ({where})"
    return path, state, notes


def read_state(path: Path) -> TrainState:
    try:
        with zipfile.ZipFile(path) as z:
            return TrainState.from_json(z.read(STATE_NAME).decode())
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as e:
        raise ModelFileError(f"checkpoint {path} is unreadable ({type(e).__name__})", hint="the run cannot be resumed from it; start a new run") from None


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    if not rows:
        return
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(run_dir / HISTORY_FILE, buf.getvalue())


# ------------------------------------------------------------------ metrics


def metric_names(cfg: ExperimentConfig) -> list[str]:
    return list(cfg.train.metrics or [])


def _per_example(cfg: ExperimentConfig):
    """(y, p) -> [loss, metric...] per example, as tensors."""
    import keras
    import tensorflow as tf

    task, names = cfg.task, metric_names(cfg)
    loss_fn = {
        "sparse_categorical_crossentropy": lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p),
        "binary_crossentropy": lambda y, p: keras.losses.binary_crossentropy(tf.expand_dims(tf.cast(y, p.dtype), -1), p),
        "mse": lambda y, p: tf.square(p[:, 0] - y),
        "mae": lambda y, p: tf.abs(p[:, 0] - y),
        "huber": lambda y, p: keras.losses.huber(tf.expand_dims(y, -1), p),
    }[cfg.train.loss or ""]

    def metrics(y, p):
        out = []
        for m in names:
            if m == "accuracy":
                if task == "classification":
                    hit = tf.equal(tf.cast(tf.argmax(p, -1), y.dtype), y)
                else:
                    hit = tf.equal(tf.cast(p[:, 0] > 0.5, y.dtype), y)
                out.append(tf.cast(hit, tf.float32))
            elif m == "mae":
                out.append(tf.abs(p[:, 0] - y))
            elif m in ("mse", "rmse"):
                out.append(tf.square(p[:, 0] - y))
        return out

    return loss_fn, metrics


def finish_metrics(names: list[str], sums: np.ndarray, prefix: str = "") -> dict[str, float]:
    """sums = [loss_sum, count, metric sums...] -> averaged logs."""
    n = max(float(sums[1]), 1.0)
    logs = {prefix + "loss": float(sums[0]) / n}
    for i, m in enumerate(names):
        v = float(sums[2 + i]) / n
        logs[prefix + m] = math.sqrt(v) if m == "rmse" else v
    return logs


# ------------------------------------------------------------------ the fit


def monitor_mode(name: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if any(k in name for k in ("acc", "auc", "r2", "precision", "recall")) else "min"


def fit(
    cfg: ExperimentConfig,
    base_dir: Path,
    run_dir: "Path | Callable[[], Path]",
    data: Datasets,
    observer: Observer | None = None,
    strategy_plan=None,
    resume: bool = False,
) -> TrainResult:
    import keras
    import tensorflow as tf

    from bigmodel_cli.training import strategy as distribute
    from bigmodel_cli.model import builders as models

    obs: Any = observer or NullObserver()
    t_fit = time.perf_counter()
    times = {"build": 0.0, "epochs": 0.0, "validation": 0.0, "saves": 0.0, "finalize": 0.0}
    plan = strategy_plan or distribute.plan(cfg.train.distribute, distribute.visible_gpus(), os.environ, cfg.train.devices)
    if not plan.precision_reason:
        distribute.set_precision(plan, cfg.train.precision)
    strategy = distribute.make_strategy(plan)
    replicas = strategy.num_replicas_in_sync
    G = cfg.train.batch_size
    pipelines = plan.workers if plan.kind == "multi_worker" else 1
    batches = distribute.pipeline_batches(G, pipelines, replicas // pipelines)
    per_replica = batches[0] if len(set(batches)) == 1 else "/".join(map(str, batches))
    n_train = len(data.train)
    is_chief = plan.is_chief
    names = metric_names(cfg)
    # ---- data: the step loop only asks the source for an epoch's iterator
    source = source_for(data.train, G, cfg.seed, cfg.train.shuffle, cfg.train.steps_per_epoch)
    steps_per_epoch = source.steps_per_epoch(replicas)
    epoch_rows = source.epoch_rows(replicas)

    models.register_layers()  # bigmodel's layers are known to Keras before any load
    tokenizers = data.tokenizers or None
    train_x = getattr(data.train, "x", None)
    numeric_x, train_y = training_stats(data.train, train_x.get("features") if isinstance(train_x, dict) else train_x)
    n_numeric = len(data.numeric) if tokenizers else len(data.features)
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        if resume:
            assert isinstance(run_dir, Path), "resume needs the run folder"
            last, state, _ = resume_point(run_dir)
            if last is None or state is None:
                raise ModelFileError(f"{run_dir} has no whole checkpoint to resume from")
            from bigmodel_cli.features.backbone import import_if_needed

            import_if_needed(last)
            try:
                model = keras.models.load_model(last, compile=True)
            except Exception as e:
                raise ModelFileError(f"cannot load checkpoint {last}: {str(e).splitlines()[0][:200]}") from None
            optimizer = model.optimizer  # its learning rate and state come from the checkpoint
        else:
            state = TrainState()
            model = models.build_model(cfg, n_numeric, data.classes, base_dir, numeric_x, train_y, tokenizers=tokenizers, precision=plan.precision)
            chosen, why = distribute.refine_precision(_setting(plan), plan.precision, plan.precision_reason, plan.devices, models.macs_per_sample(model))
            if (chosen, why) != (plan.precision, plan.precision_reason):
                if chosen != plan.precision:  # build again, from the same seed, as float32
                    keras.utils.set_random_seed(cfg.seed)
                    model = models.build_model(cfg, n_numeric, data.classes, base_dir, numeric_x, train_y, tokenizers=tokenizers, precision=chosen)
                plan.precision, plan.precision_reason = chosen, why
                cfg.train.precision = chosen  # the run's config.yaml says what it trained with
            optimizer = models.make_optimizer(cfg, replicas, plan.precision, total_steps=steps_per_epoch * cfg.train.epochs)
            model.compile(optimizer=optimizer, loss=cfg.train.loss)
            optimizer.build(model.trainable_variables)
    loss_fn, metric_fn = _per_example(cfg)
    members = models.members_model(model)  # model.ensemble: each member is trained on its own loss

    n_sums = 2 + len(names)
    single = replicas == 1
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    # data.normalize_target: optimise the loss of the standardised target (the
    # model ends in Rescaling(std, mean)); log losses in the target's units.
    t_mean, t_std = models.target_stats(models.target_space(train_y, cfg)) if cfg.data.normalize_target else (0.0, 1.0)
    log_target = cfg.data.target_transform == "log"

    def optimised(y, p):
        """The per-example loss the optimizer sees: in standardised (and log) target units."""
        if not (cfg.data.normalize_target or log_target):
            return loss_fn(y, p)
        ty, tp = (tf.math.log1p(tf.maximum(y, 0.0)), tf.math.log1p(tf.maximum(tf.cast(p, tf.float32), -1.0 + 1e-6))) if log_target else (y, p)
        return loss_fn((ty - t_mean) / t_std, (tp - t_mean) / t_std)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            if members is None:
                p = model(x, training=True)
                per, opt_per = loss_fn(y, p), optimised(y, p)
            else:  # the mean of the members' losses; metrics of their mean prediction
                stacked = members(x, training=True)
                k = stacked.shape[1]
                p = tf.reduce_mean(stacked, axis=1)
                per = tf.add_n([loss_fn(y, stacked[:, i]) for i in range(k)]) / k
                opt_per = tf.add_n([optimised(y, stacked[:, i]) for i in range(k)]) / k
            if single:
                loss = tf.reduce_mean(opt_per)
            else:
                loss = tf.nn.compute_average_loss(opt_per, global_batch_size=G)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            if scaled:  # mixed_float16: the LossScaleOptimizer unscales the gradients it applies
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        # An embedding's gradient is IndexedSlices. Across workers a collective
        # all-gathers them and needs equal shapes, but each replica's batch holds a
        # different number of ids (text): "Shape mismatch in the collective". And
        # Keras's Adam updates IndexedSlices differently from dense gradients, so a
        # one-process run would drift from a multi-worker one. Dense everywhere: the
        # same numbers under every strategy, and no slower here (template: 13.0 s
        # against 13.4 s for 5 epochs).
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        parts = [tf.reduce_sum(per), tf.cast(tf.shape(per)[0], tf.float32)] + [tf.reduce_sum(m) for m in metric_fn(y, p)]
        return tf.stack(parts)

    @tf.function
    def train_chunk(iterator, k):
        acc = tf.zeros([n_sums], tf.float32)
        for _ in tf.range(k):
            x, y = next(iterator)
            per_replica_sums = strategy.run(replica_step, args=(x, y))
            acc += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_sums, axis=None)
        return acc

    @tf.function
    def eval_batch(x, y):
        p = model(x, training=False)
        parts = [tf.reduce_sum(loss_fn(y, p)), tf.cast(tf.shape(y)[0], tf.float32)] + [tf.reduce_sum(m) for m in metric_fn(y, p)]
        return tf.stack(parts)

    def evaluate_split(split) -> np.ndarray:
        sums = np.zeros(n_sums, np.float64)
        for xb, yb in eval_batches(split, max(256, G)):
            sums += eval_batch(tf.nest.map_structure(tf.constant, xb), tf.constant(yb)).numpy()
        return sums

    # ---- monitoring, early stopping, best model
    es = cfg.train.early_stopping
    has_val = data.validation is not None and len(data.validation) > 0
    monitor = es.monitor if es else ("val_loss" if has_val else "loss")
    mode = monitor_mode(monitor, es.mode if es else "auto")
    valid_monitors = ["loss", *names] + (["val_loss", *[f"val_{m}" for m in names]] if has_val else [])
    if monitor not in valid_monitors:
        raise ConfigError(f"train.early_stopping.monitor '{monitor}' is not logged", hint=f"choose one of: {', '.join(valid_monitors)}")

    # Every check has passed: only now does the run folder come into being.
    if callable(run_dir):
        run_dir = run_dir()
    ckpt_dir = run_dir / CHECKPOINTS
    K = cfg.train.steps_per_execution
    every_s, every = checkpoint_interval(cfg.train.checkpoint_every) if cfg.train.checkpoint_every is not None else (None, None)
    if cfg.train.checkpoint_every_steps:  # the older key, kept working
        every_s, every = None, cfg.train.checkpoint_every_steps
    info = {
        "epochs": cfg.train.epochs, "steps_per_epoch": steps_per_epoch, "metrics": names, "validation": has_val,
        "strategy": {"one_device": "OneDeviceStrategy", "mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy"}.get(plan.kind, type(strategy).__name__), "replicas": replicas, "global_batch": G, "per_replica_batch": per_replica,
        "learning_rate": float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate))), "devices": plan.devices,
        "start_epoch": state.epoch, "train_rows": n_train, "val_rows": len(data.validation) if has_val else 0,
        "params": int(model.count_params()), "is_chief": is_chief, "plan": plan.as_dict(), "stream": data.stream,
        "precision": plan.precision, "precision_reason": plan.precision_reason, "run_dir": str(run_dir),
    }
    times["build"] = time.perf_counter() - t_fit
    obs.on_train_begin(info)
    t_start = time.perf_counter()
    samples_seen = 0
    last_ckpt_step, last_ckpt_time = state.global_step, time.monotonic()

    def save(path_name: str, st: TrainState, best_too: bool = False) -> None:
        if is_chief:
            t = time.perf_counter()
            save_checkpoint(model, ckpt_dir / path_name, st, also=ckpt_dir / BEST if best_too else None)
            times["saves"] += time.perf_counter() - t

    def interrupted(st: TrainState, sig: int) -> Interrupted:
        save(LAST, st)
        if is_chief:
            write_history(run_dir, st.history)
        name = "SIGINT (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM" if sig == signal.SIGTERM else f"signal {sig}"
        where = f"epoch {st.epoch + 1}, step {st.step}/{steps_per_epoch}" if st.step else f"after epoch {st.epoch}"
        return Interrupted(f"training interrupted by {name} at {where}; resume state saved in {run_dir}", f"bigmodel train {run_dir} --resume", str(run_dir))

    tb = None
    if is_chief and cfg.train.tensorboard:
        from bigmodel_cli.training.tensorboard import TensorBoardLog

        tb = TensorBoardLog(run_dir, steps_per_epoch)
    with StopFlag() as stop, peer_failures(plan, run_dir), _closing(tb):
        epoch = state.epoch
        iterator, iterator_end = None, epoch
        span = source.epochs_per_iterator(replicas)
        while epoch < cfg.train.epochs and not state.stopped_early:
            start_step = state.step
            if epoch >= iterator_end:  # one iterator serves several epochs: tearing one down costs ~1 s
                iterator_end = min(cfg.train.epochs, epoch + span)
                iterator = source.iterator(strategy, batches, epoch, start_step, iterator_end)
            sums = np.array(state.partial, np.float64) if state.partial else np.zeros(n_sums, np.float64)
            obs.on_epoch_begin(epoch + 1, steps_per_epoch)
            t0 = time.perf_counter()
            done = start_step
            epoch_samples = 0
            while done < steps_per_epoch:
                k = min(K, steps_per_epoch - done)
                try:
                    sums += train_chunk(iterator, tf.constant(k)).numpy()
                except tf.errors.OpError as e:
                    raise _reader_error(e) from None
                rows = min(k * G, epoch_rows - done * G)
                done += k
                epoch_samples += rows
                state.global_step += k
                dt = time.perf_counter() - t0
                logs = finish_metrics(names, sums)
                obs.on_steps(epoch + 1, done, steps_per_epoch, logs, epoch_samples / max(dt, 1e-9))
                if tb is not None:
                    tb.steps(state.global_step, logs)
                if not np.isfinite(sums[0]):
                    raise ConfigError(f"the loss became {sums[0]} in epoch {epoch + 1} (step {done}): training diverged", hint="lower train.learning_rate, or set data.normalize: true")
                due = (every and state.global_step - last_ckpt_step >= every) or (every_s and time.monotonic() - last_ckpt_time >= every_s)
                if stop.signal is not None or (due and done < steps_per_epoch):
                    state.step, state.partial = done, sums.tolist()
                    if stop.signal is not None:
                        raise interrupted(state, stop.signal)
                    save(LAST, state)
                    last_ckpt_step, last_ckpt_time = state.global_step, time.monotonic()
            seconds = time.perf_counter() - t0
            times["epochs"] += seconds
            samples_seen += epoch_samples
            row: dict[str, Any] = {"epoch": epoch + 1, **finish_metrics(names, sums)}
            if has_val:
                t_val = time.perf_counter()
                row.update(finish_metrics(names, evaluate_split(data.validation), "val_"))
                times["validation"] += time.perf_counter() - t_val
            row["seconds"] = round(seconds, 3)
            row["samples_per_s"] = round(epoch_samples / max(seconds, 1e-9), 1)
            value = row[monitor]
            improved = state.best is None or (value < state.best - (es.min_delta if es else 0) if mode == "min" else value > state.best + (es.min_delta if es else 0))
            if improved:
                state.best, state.best_epoch, state.wait = float(value), epoch + 1, 0
            else:
                state.wait += 1
            epoch += 1
            state.epoch, state.step, state.partial = epoch, 0, []
            state.history.append(row)
            if es and state.wait > es.patience:
                state.stopped_early = True
            save(LAST, state, best_too=improved)
            last_ckpt_step, last_ckpt_time = state.global_step, time.monotonic()
            if is_chief:
                write_history(run_dir, state.history)
            if tb is not None:
                tb.epoch(epoch, row, float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate))))
            obs.on_epoch_end(epoch, row)
            if stop.signal is not None:
                raise interrupted(state, stop.signal)

    final_src = ckpt_dir / (BEST if (ckpt_dir / BEST).is_file() else LAST)
    model_path = run_dir / MODEL_FILE
    if is_chief:
        t_final = time.perf_counter()
        with StopFlag() as stop:  # SIGTERM now waits for model.keras: it takes a moment, and the run is done
            finalize_model(final_src, model_path, (lambda core: models.with_raw_text(core, tokenizers)) if tokenizers else None)
        times["finalize"] = time.perf_counter() - t_final
        obs.on_saved(model_path)
        if stop.signal is not None:
            name = "SIGINT (Ctrl-C)" if stop.signal == signal.SIGINT else "SIGTERM" if stop.signal == signal.SIGTERM else f"signal {stop.signal}"
            raise Interrupted(f"{name} came while the final model was being saved; {model_path} was finished first and the run is complete", None, str(run_dir))
    total = time.perf_counter() - t_start
    result = TrainResult(
        run_dir=run_dir, history=state.history, epochs_done=state.epoch, best_epoch=state.best_epoch, model_path=model_path,
        stopped_early=state.stopped_early, seconds=total, samples_per_s=samples_seen / max(total, 1e-9), strategy=info,
        times={k: round(v, 3) for k, v in times.items()},
    )
    obs.on_train_end({"result": result, "monitor": monitor, "best": state.best})
    return result


class _closing:
    """Close the TensorBoard writers however the loop ends (their last events flushed)."""

    def __init__(self, tb):
        self.tb = tb

    def __enter__(self):
        return self.tb

    def __exit__(self, *exc) -> bool:
        if self.tb is not None:
            self.tb.close()
        return False


def _setting(plan) -> str:
    """The train.precision setting behind a plan's choice (api resolves 'auto' into the config)."""
    return "auto" if plan.precision_reason.startswith("auto:") else plan.precision


def _reader_error(e: Exception) -> Exception:
    """A streamed source's DataError (a file that broke after the checks, an
    unreadable image) reaches the loop wrapped in a TensorFlow error: unwrap it."""
    import re

    from bigmodel_cli.errors import DataError

    m = re.search(r"(?:DataError|ConfigError): (.+)", str(e))
    return DataError(m.group(1).strip(), hint="fix or remove that file, then: bigmodel train RUN --resume") if m else e


def describe_peer(plan, text: str) -> str:
    """'worker 1 (127.0.0.1:5001)': a cluster member whose address the error names."""
    import re

    for kind, members in (plan.cluster or {}).items():
        for i, member in enumerate(members if isinstance(members, list) else []):
            if member and re.search(re.escape(member) + r"(?!\d)", text):  # :5001 is not :50011
                return f"{kind} {i} ({member})"
    # The coordination service names tasks instead: /job:worker/replica:0/task:1
    for kind, index in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text):
        if (kind, int(index)) != (plan.task_type, plan.task_index):
            members = (plan.cluster or {}).get(kind) or []
            where = f" ({members[int(index)]})" if int(index) < len(members) else ""
            return f"{kind} {index}{where}"
    return "another worker"


class peer_failures:
    """In a multi-worker run, a collective that fails because a peer is gone
    becomes one clear WorkerFailed line naming the worker, with the resume command."""

    def __init__(self, plan, run_dir: Path):
        self.plan, self.run_dir = plan, run_dir

    def __enter__(self) -> "peer_failures":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or self.plan.kind != "multi_worker":
            return False
        import tensorflow as tf

        if isinstance(exc, (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
            from bigmodel_cli.errors import WorkerFailed

            me = f"{self.plan.task_type or 'worker'} {self.plan.task_index}"
            raise WorkerFailed(
                f"{me}: {describe_peer(self.plan, str(exc))} stopped answering ({type(exc).__name__}); this worker stops too",
                hint=f"restart every worker with: bigmodel train {self.run_dir} --resume (it continues from the last checkpoint)",
            ) from None
        return False


def finalize_model(src: Path, dst: Path, wrap: Callable[[Any], Any] | None = None) -> None:
    """The final model: the best checkpoint without optimizer or resume state;
    ``wrap`` turns a text model's integer-id core into the raw-text model."""
    import keras

    from bigmodel_cli.model.builders import float32_copy, register_layers
    from bigmodel_cli.features.backbone import import_if_needed

    register_layers()
    import_if_needed(src)
    model = float32_copy(keras.models.load_model(src, compile=False))
    if wrap is not None:
        model = wrap(model)
    with atomic_path(dst, suffix=".keras") as tmp:
        model.save(tmp)
