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

The loop is :class:`Trainer`; what it does besides stepping (early stopping,
checkpoints, history, TensorBoard, the interrupt save) is in :mod:`.callbacks`.

Example::

    result = fit(cfg, base_dir, run_dir, datasets, observer)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.config.train import checkpoint_interval
from bigmodel_cli.config.load import resolved
from bigmodel_cli.data.sources import Datasets
from bigmodel_cli.errors import ConfigError, Interrupted, ModelFileError

from bigmodel_cli.training.pipeline import eval_batches, source_for, training_stats
from bigmodel_cli.runs import (
    CALIBRATION_FILE,
    CHECKPOINTS,
    MODEL_FILE,
)

from bigmodel_cli.training.callbacks import (
    Observer,
    CallbackList,
    Checkpoints,
    EarlyStopping,
    HistoryLog,
    InterruptSave,
    TensorBoard,
    signal_name,
)
from bigmodel_cli.training.checkpoints import (
    BEST,
    LAST,
    TrainState,
    finalize_model,
    resume_point,
    save_checkpoint,
    write_history,
)
from bigmodel_cli.training.objective import (
    finish_metrics,
    metric_names,
    monitor_mode,
    numpy_loss,
)
from bigmodel_cli.training.peers import reader_error, peer_failures


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
    times: dict[str, float] = field(
        default_factory=dict
    )  # seconds: build, epochs, validation, saves, finalize


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


# ------------------------------------------------------------------ metrics


# ------------------------------------------------------------------ the fit


def fit(
    cfg: ExperimentConfig,
    base_dir: Path,
    run_dir: Path,
    data: Datasets,
    observer: Observer | None = None,
    strategy_plan=None,
    resume: bool = False,
) -> TrainResult:
    """Train (or resume) one run in ``run_dir``. See :class:`Trainer`; a caller that makes
    the folder only once every check has passed (``bigmodel train``) calls
    :meth:`Trainer.build` first, then creates the folder from ``Trainer.cfg`` (the config
    as the build settled it), then :meth:`Trainer.fit`."""
    return Trainer(cfg, base_dir, data, observer, strategy_plan).fit(run_dir, resume)


class Trainer:
    """The step loop and its named parts, after Keras' ``TensorFlowTrainer.fit``:
    :meth:`build` (fresh or resumed), :meth:`compile_steps` (the step functions),
    :meth:`train_epoch`, :meth:`validate`, :meth:`end_epoch`, :meth:`finalize`.
    Early stopping, checkpoints, history, TensorBoard and the interrupt save are
    callbacks (:mod:`.callbacks`) beside the user's observer."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        base_dir: Path,
        data: Datasets,
        observer: Observer | None = None,
        strategy_plan=None,
    ) -> None:
        from bigmodel_cli.training import strategy as distribute

        self.t_fit = time.perf_counter()
        self.cfg, self.base_dir, self.data = cfg, base_dir, data
        self.observer: Any = observer  # None: nobody watches
        self.times = {"build": 0.0, "epochs": 0.0, "validation": 0.0, "saves": 0.0, "finalize": 0.0}
        plan = strategy_plan or distribute.plan(
            cfg.train.distribute, distribute.visible_gpus(), os.environ, cfg.train.devices
        )
        if not plan.precision_reason:
            distribute.set_precision(plan, cfg.train.precision)
        self.plan, self.is_chief = plan, plan.is_chief
        self.strategy = distribute.make_strategy(plan)
        self.replicas = self.strategy.num_replicas_in_sync
        self.G = cfg.train.batch_size
        pipelines = plan.workers if plan.kind == "multi_worker" else 1
        self.batches = distribute.pipeline_batches(self.G, pipelines, self.replicas // pipelines)
        self.names = metric_names(cfg)
        self.n_sums = 2 + len(self.names)
        # the step loop only asks the source for an epoch's iterator
        self.source = source_for(
            data.train, self.G, cfg.seed, cfg.train.shuffle, cfg.train.steps_per_epoch
        )
        self.steps_per_epoch = self.source.steps_per_epoch(self.replicas)
        self.epoch_rows = self.source.epoch_rows(self.replicas)
        self.has_val = data.validation is not None and len(data.validation) > 0
        self.calibration: dict[str, Any] | None = None
        self.conformal: dict[str, Any] | None = None  # afterfit: what predict --coverage stands on
        if cfg.train.calibrate == "temperature" and (cfg.task == "regression" or not self.has_val):
            why = (
                "a regression has no probabilities to calibrate"
                if cfg.task == "regression"
                else "there is no validation split to fit it on"
            )
            raise ConfigError(
                f"train.calibrate: temperature, but {why}",
                hint="set data.validation (a share such as 0.2, or a file)"
                if cfg.task != "regression"
                else "leave train.calibrate at auto",
            )
        self.tokenizers = data.tokenizers or None
        self.state = TrainState()
        self.stop: Any = None
        self.run_dir: Path | None = None
        self.built = False
        self.sums = np.zeros(self.n_sums, np.float64)

    # ------------------------------------------------------------ build
    def build(self, resume: bool, run_dir: Path | None = None) -> None:
        """The model and optimizer: built from the config, or loaded with the resume state
        (from ``run_dir``). Every check has passed when it returns, and ``self.cfg`` is the
        config as the build settled it (its precision): what the run folder records."""
        import keras

        self.built = True

        from bigmodel_cli.model import builders as models
        from bigmodel_cli.model import loading
        from bigmodel_cli.training import strategy as distribute

        cfg, data, plan = self.cfg, self.data, self.plan
        loading.register_layers()  # bigmodel's layers are known to Keras before any load
        train_x = getattr(data.train, "x", None)
        numeric_x, self.train_y = training_stats(
            data.train, train_x.get("features") if isinstance(train_x, dict) else train_x
        )
        from bigmodel_cli.training.afterfit import class_weights

        self.class_weights, self.class_weight_why = class_weights(
            cfg, data.class_counts(), data.classes
        )
        n_numeric = len(data.numeric) if self.tokenizers else len(data.features)
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            if resume:
                self.model, self.state = self._load_resume(run_dir)
                self.optimizer = (
                    self.model.optimizer
                )  # its learning rate and state come from the checkpoint
                return

            def build(precision):
                return models.build_model(
                    cfg,
                    n_numeric,
                    data.classes,
                    self.base_dir,
                    numeric_x,
                    self.train_y,
                    tokenizers=self.tokenizers,
                    precision=precision,
                )

            self.model = build(plan.precision)
            chosen, why = distribute.refine_precision(
                _setting(plan),
                plan.precision,
                plan.precision_reason,
                plan.devices,
                models.macs_per_sample(self.model),
            )
            if (chosen, why) != (plan.precision, plan.precision_reason):
                if chosen != plan.precision:  # build again, from the same seed, as float32
                    keras.utils.set_random_seed(cfg.seed)
                    self.model = build(chosen)
                plan.precision, plan.precision_reason = chosen, why
                # the run's config.yaml says what it trained with
                self.cfg = cfg = resolved(cfg, precision=chosen)
            self.optimizer = models.make_optimizer(
                cfg,
                self.replicas,
                plan.precision,
                total_steps=self.steps_per_epoch * cfg.train.epochs,
            )
            self.model.compile(optimizer=self.optimizer, loss=cfg.train.loss)
            self.optimizer.build(self.model.trainable_variables)

    def _load_resume(self, run_dir: Any) -> tuple[Any, TrainState]:
        import keras

        assert isinstance(run_dir, Path), "resume needs the run folder"
        last, state, _ = resume_point(run_dir)
        if last is None or state is None:
            raise ModelFileError(f"{run_dir} has no whole checkpoint to resume from")
        from bigmodel_cli.features.backbone import import_if_needed

        import_if_needed(last)
        try:
            return keras.models.load_model(last, compile=True), state
        except Exception as e:
            raise ModelFileError(
                f"cannot load checkpoint {last}: {str(e).splitlines()[0][:200]}"
            ) from None

    # ------------------------------------------------------------ steps
    def compile_steps(self) -> None:
        """``train_chunk`` (K steps per compiled call, summed over replicas) and ``eval_batch``:
        :func:`training.steps.compile_steps` on what this Trainer has built."""
        from bigmodel_cli.training.steps import compile_steps

        steps = compile_steps(
            self.cfg,
            self.model,
            self.optimizer,
            self.strategy,
            batch=self.G,
            replicas=self.replicas,
            train_y=self.train_y,
            class_weights=self.class_weights,
            n_sums=self.n_sums,
        )
        self.train_chunk, self.eval_batch = steps.train_chunk, steps.eval_batch
        self.eval_outputs, self.loss_fn = steps.eval_outputs, steps.loss_fn
        self.members_predict = steps.members_predict

    # ------------------------------------------------------------ callbacks
    def monitor(self) -> tuple[str, str]:
        es = self.cfg.train.early_stopping
        monitor = es.monitor if es else ("val_loss" if self.has_val else "loss")
        valid = ["loss", *self.names] + (
            ["val_loss", *[f"val_{m}" for m in self.names]] if self.has_val else []
        )
        if monitor not in valid:
            raise ConfigError(
                f"train.early_stopping.monitor '{monitor}' is not logged",
                hint=f"choose one of: {', '.join(valid)}",
            )
        return monitor, monitor_mode(monitor, es.mode if es else "auto")

    def make_callbacks(self, monitor: str, mode: str) -> CallbackList:
        t = self.cfg.train
        every_s, every = (
            checkpoint_interval(t.checkpoint_every)
            if t.checkpoint_every is not None
            else (None, None)
        )
        if t.checkpoint_every_steps:  # the older key, kept working
            every_s, every = None, t.checkpoint_every_steps
        early = EarlyStopping(self, monitor, mode, t.early_stopping)
        cbs: list[Any] = [early, Checkpoints(self, every_s, every, early), HistoryLog(self)]
        if self.is_chief and t.tensorboard:
            cbs.append(TensorBoard(self, self.run_dir, self.steps_per_epoch))
        watching = [self.observer] if self.observer is not None else []
        return CallbackList([*cbs, *watching, InterruptSave(self)])

    def hold_partial(self, done: int) -> None:
        """The unfinished epoch's place and sums, into the state a checkpoint saves."""
        self.state.step, self.state.partial = done, self.sums.tolist()

    def save_state(self, best_too: bool = False) -> None:
        if self.is_chief:
            t = time.perf_counter()
            ckpt = self.run_dir / CHECKPOINTS
            save_checkpoint(
                self.model, ckpt / LAST, self.state, also=ckpt / BEST if best_too else None
            )
            self.times["saves"] += time.perf_counter() - t

    def write_history(self) -> None:
        if self.is_chief:
            write_history(self.run_dir, self.state.history)

    def learning_rate(self) -> float:
        import keras

        return float(np.asarray(keras.ops.convert_to_numpy(self.optimizer.learning_rate)))

    # ------------------------------------------------------------ the loop
    def fit(self, run_dir: Path, resume: bool = False) -> TrainResult:
        """Train in ``run_dir`` (built first, unless :meth:`build` was called already)."""
        if not self.built:
            self.build(resume, run_dir)
        self.compile_steps()
        monitor, mode = self.monitor()
        self.run_dir = run_dir
        self.callbacks = self.make_callbacks(monitor, mode)
        info = self.describe()
        self.times["build"] = time.perf_counter() - self.t_fit
        self.callbacks.on_train_begin({**info, "monitor": monitor, "mode": mode})
        t_start, samples = time.perf_counter(), 0
        tb = next((c for c in self.callbacks.callbacks if isinstance(c, TensorBoard)), None)
        with (
            StopFlag() as self.stop,
            peer_failures(self.plan, self.run_dir),
            contextlib.ExitStack() as closing,
        ):
            if tb is not None:
                closing.callback(tb.close)
            epoch, iterator, iterator_end = self.state.epoch, None, self.state.epoch
            span = self.source.epochs_per_iterator(self.replicas)
            while epoch < self.cfg.train.epochs and not self.state.stopped_early:
                if (
                    epoch >= iterator_end
                ):  # one iterator serves several epochs: tearing one down costs ~1 s
                    iterator_end = min(self.cfg.train.epochs, epoch + span)
                    iterator = self.source.iterator(
                        self.strategy, self.batches, epoch, self.state.step, iterator_end
                    )
                seconds, epoch_samples = self.train_epoch(epoch, iterator)
                samples += epoch_samples
                epoch = self.end_epoch(epoch, seconds, epoch_samples)
        model_path = self.finalize()
        total = time.perf_counter() - t_start
        result = TrainResult(
            run_dir=self.run_dir,
            history=self.state.history,
            epochs_done=self.state.epoch,
            best_epoch=self.state.best_epoch,
            model_path=model_path,
            stopped_early=self.state.stopped_early,
            seconds=total,
            samples_per_s=samples / max(total, 1e-9),
            strategy=info,
            times={k: round(v, 3) for k, v in self.times.items()},
        )
        self.callbacks.on_train_end({"result": result, "monitor": monitor, "best": self.state.best})
        return result

    def describe(self) -> dict[str, Any]:
        """What ``on_train_begin`` and the result's ``strategy`` say of this run."""
        plan, data, batches = self.plan, self.data, self.batches
        kinds = {
            "one_device": "OneDeviceStrategy",
            "mirrored": "MirroredStrategy",
            "multi_worker": "MultiWorkerMirroredStrategy",
        }
        return {
            "epochs": self.cfg.train.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "metrics": self.names,
            "validation": self.has_val,
            "strategy": kinds.get(plan.kind, type(self.strategy).__name__),
            "replicas": self.replicas,
            "global_batch": self.G,
            "per_replica_batch": batches[0]
            if len(set(batches)) == 1
            else "/".join(map(str, batches)),
            "learning_rate": self.learning_rate(),
            "devices": plan.devices,
            "start_epoch": self.state.epoch,
            "train_rows": len(data.train),
            "val_rows": len(data.validation) if self.has_val else 0,
            "params": int(self.model.count_params()),
            "is_chief": self.is_chief,
            "plan": plan.as_dict(),
            "stream": data.stream,
            "precision": plan.precision,
            "precision_reason": plan.precision_reason,
            "run_dir": str(self.run_dir),
        }

    def train_epoch(self, epoch: int, iterator: Any) -> tuple[float, int]:
        """One epoch's steps from the state's step on, K per compiled call; (seconds, samples)."""
        import tensorflow as tf

        st, steps, K, G = (
            self.state,
            self.steps_per_epoch,
            self.cfg.train.steps_per_execution,
            self.G,
        )
        self.sums = (
            np.array(st.partial, np.float64) if st.partial else np.zeros(self.n_sums, np.float64)
        )
        self.callbacks.on_epoch_begin(epoch + 1, steps)
        t0, done, samples = time.perf_counter(), st.step, 0
        while done < steps:
            k = min(K, steps - done)
            try:
                self.sums += self.train_chunk(iterator, tf.constant(k)).numpy()
            except tf.errors.OpError as e:
                raise reader_error(e) from None
            samples += min(k * G, self.epoch_rows - done * G)
            done += k
            st.global_step += k
            if not np.isfinite(self.sums[0]):
                raise ConfigError(
                    f"the loss became {self.sums[0]} in epoch {epoch + 1} (step {done}): "
                    "training diverged",
                    hint="lower train.learning_rate, or set data.normalize: true",
                )
            self.callbacks.on_steps(
                epoch + 1,
                done,
                steps,
                finish_metrics(self.names, self.sums),
                samples / max(time.perf_counter() - t0, 1e-9),
            )
        seconds = time.perf_counter() - t0
        self.times["epochs"] += seconds
        return seconds, samples

    def validate(self) -> dict[str, float]:
        """The validation split's loss and metrics (``val_`` names)."""
        import tensorflow as tf

        t = time.perf_counter()
        if self.members_predict is not None:
            # one pass: the members' outputs choose the weights, and their weighted mean
            # (the model's output) is scored, instead of running the model a second time
            p, y = self.weigh_members()
            sums = self.eval_outputs(tf.constant(p), tf.constant(y)).numpy().astype(np.float64)
        else:
            sums = np.zeros(self.n_sums, np.float64)
            for xb, yb in eval_batches(self.data.validation, max(256, self.G)):
                x = tf.nest.map_structure(tf.constant, xb)
                sums += self.eval_batch(x, tf.constant(yb)).numpy()
        self.times["validation"] += time.perf_counter() - t
        return finish_metrics(self.names, sums, "val_")

    def weigh_members(self) -> tuple[np.ndarray, np.ndarray]:
        """``model.ensemble_weights: validation``: the members' weights for the
        validation split's loss, by greedy ensemble selection; every process
        computes the same from the same rows. (the weighted outputs, the labels)."""
        import tensorflow as tf

        from bigmodel_cli.model import ensemble

        stacked, ys = [], []
        for xb, yb in eval_batches(self.data.validation, max(256, self.G)):
            stacked.append(self.members_predict(tf.nest.map_structure(tf.constant, xb)).numpy())
            ys.append(np.asarray(yb))
        p, y = np.concatenate(stacked).astype(np.float64), np.concatenate(ys)
        per_example = numpy_loss(self.cfg.train.loss or "", y)
        weights = ensemble.select_members(
            lambda w: float(np.mean(per_example(np.einsum("bkn,k->bn", p, w)))), p.shape[1]
        )
        ensemble.set_member_weights(self.model, weights)
        return np.einsum("bkn,k->bn", p, weights.astype(np.float64)).astype(np.float32), y

    def end_epoch(self, epoch: int, seconds: float, samples: int) -> int:
        """The epoch's history row, then the callbacks (monitor,
        checkpoints, history, ...); the next epoch."""
        row: dict[str, Any] = {"epoch": epoch + 1, **finish_metrics(self.names, self.sums)}
        if self.has_val:
            row.update(self.validate())
        row["seconds"] = round(seconds, 3)
        row["samples_per_s"] = round(samples / max(seconds, 1e-9), 1)
        st = self.state
        st.epoch, st.step, st.partial = epoch + 1, 0, []
        st.history.append(row)
        self.callbacks.on_epoch_end(epoch + 1, row)
        return epoch + 1

    def finalize(self) -> Path:
        """model.keras from the best (else last) checkpoint; a signal now waits for it."""
        from bigmodel_cli.model import inputs

        ckpt_dir, model_path = self.run_dir / CHECKPOINTS, self.run_dir / MODEL_FILE
        if not self.is_chief:
            return model_path
        t = time.perf_counter()
        tokenizers = self.tokenizers
        from bigmodel_cli.training import afterfit

        (self.run_dir / CALIBRATION_FILE).unlink(missing_ok=True)
        afterfit.forget_conformal(self.run_dir)
        adjust = (lambda core: afterfit.adjust(self, core)) if afterfit.needed(self) else None
        with (
            StopFlag() as stop
        ):  # SIGTERM now waits for model.keras: it takes a moment, and the run is done
            finalize_model(
                ckpt_dir / (BEST if (ckpt_dir / BEST).is_file() else LAST),
                model_path,
                (lambda core: inputs.with_raw_text(core, tokenizers)) if tokenizers else None,
                adjust,
            )
        self.times["finalize"] = time.perf_counter() - t
        self.callbacks.on_saved(model_path)
        if stop.signal is not None:
            raise Interrupted(
                f"{signal_name(stop.signal)} came while the final model was being saved; "
                f"{model_path} was finished first and the run is complete",
                None,
                str(self.run_dir),
            )
        return model_path


def _setting(plan) -> str:
    """The train.precision setting behind a plan's choice (api resolves 'auto' into the config)."""
    return "auto" if plan.precision_reason.startswith("auto:") else plan.precision
