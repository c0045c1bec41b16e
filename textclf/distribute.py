"""``train.distribute``: one device, ``MirroredStrategy``, or ``MultiWorkerMirroredStrategy``.

Batch size is global. ``train.batch_size`` examples make one optimizer step
whatever the strategy; ``tf.distribute`` splits each batch across the
``R = strategy.num_replicas_in_sync`` replicas (``batch_size / R`` each, the
last batch of an epoch possibly uneven) and sums the replicas' gradients of the
loss scaled by ``1 / R``, so a step's update is that of the mean loss over the
whole batch, as on one device. An epoch therefore has
``ceil(N_train / batch_size)`` steps on any number of replicas, and the
learning rate needs no rescaling.

Multi-worker training: every worker runs the same ``textclf train`` command
with its own ``TF_CONFIG``; each reads and tokenises the data itself (the same
seed gives every worker the same batches) and keeps the batches whose position
is its own (``AutoShardPolicy.DATA``). The chief (task type ``chief``, or
``worker`` 0 when the cluster has no chief) writes the run directory; the other
workers write theirs to a scratch folder that is removed at the end.

Nothing here imports TensorFlow at module import time.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class WorkerRole:
    """Where this process sits in a ``TF_CONFIG`` cluster."""

    task_type: str  # "chief" or "worker"
    index: int  # task index within its type
    n_workers: int  # chief + workers
    is_chief: bool  # the one process that writes the run directory


def read_tf_config(environ=os.environ) -> dict:
    """``TF_CONFIG`` as a dict, checked enough to give a one-line error."""
    text = environ.get("TF_CONFIG")
    if not text:
        raise UsageError("train.distribute is multi_worker but TF_CONFIG is not set "
                         "(see docs/SCALE_AND_SERVE.md for its form)")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"TF_CONFIG must be JSON; got {text[:80]!r} ({exc})") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError("TF_CONFIG must be {\"cluster\": {\"worker\": [host:port, ...]}, "
                         "\"task\": {\"type\": \"worker\", \"index\": i}}; got " + text[:120])
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if kind not in ("chief", "worker") or not isinstance(members, list):
        raise UsageError(f"TF_CONFIG task.type must be chief or worker and name a list in "
                         f"cluster; got {kind!r}")
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise UsageError(f"TF_CONFIG task.index must be in [0, {len(members) - 1}] for "
                         f"{kind}; got {index!r}")
    return value


def worker_role(environ=os.environ) -> WorkerRole:
    """This process's role in the ``TF_CONFIG`` cluster (no TensorFlow needed)."""
    value = read_tf_config(environ)
    cluster, task = value["cluster"], value["task"]
    n_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    has_chief = bool(cluster.get("chief"))
    is_chief = task["type"] == "chief" or (not has_chief and task["index"] == 0)
    return WorkerRole(task["type"], task["index"], n_workers, is_chief)


def is_chief(train_cfg, environ=os.environ) -> bool:
    """True unless this is a non-chief worker of a multi-worker run."""
    if train_cfg.distribute != "multi_worker":
        return True
    return worker_role(environ).is_chief


def make_strategy(train_cfg):
    """The ``tf.distribute.Strategy`` for ``train.distribute`` (and ``train.devices``).

    Must run before TensorFlow executes its first op: ``MultiWorkerMirroredStrategy``
    configures the collective runtime, which is fixed once the runtime starts.
    """
    import tensorflow as tf

    if train_cfg.distribute == "mirrored":
        devices = list(train_cfg.devices) if train_cfg.devices else None
        if devices:
            known = {d.name.lower() for d in tf.config.list_logical_devices()}
            for device in devices:
                if _canonical(device) not in known:
                    raise UsageError(f"train.devices names {device}, which is not a device "
                                     f"of this machine; found {', '.join(sorted(known))}")
        # No device list: every visible GPU, or the CPU when there is none.
        return tf.distribute.MirroredStrategy(devices=devices)
    if train_cfg.distribute == "multi_worker":
        worker_role()  # a clear error for a missing or malformed TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _canonical(device: str) -> str:
    """'/cpu:1', 'GPU:0' or '/job:localhost/.../device:GPU:0' -> '/device:gpu:0'."""
    name = device.strip().lower().split("device:")[-1]
    return "/device:" + name.lstrip("/")


def describe(strategy, batch_size: int) -> str:
    """One log line: replicas and how a global batch is split among them."""
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return f"one device, batch of {batch_size}"
    # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
    name = ("MultiWorkerMirroredStrategy" if is_multi_worker(strategy)
            else type(strategy).__name__)
    per_replica = batch_size / replicas
    share = f"{per_replica:g}" if per_replica.is_integer() else f"about {per_replica:.1f}"
    return (f"{name} over {replicas} replica(s): global batch of {batch_size} = {share} "
            f"per replica per step")


def is_multi_worker(strategy) -> bool:
    """True for ``MultiWorkerMirroredStrategy`` (TensorFlow calls it CollectiveAllReduce)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def keras_multi_worker_fit(model, strategy, batch):
    """Around ``model.fit``: work around Keras 3's ``fit`` under ``MultiWorkerMirroredStrategy``.

    Two defects (keras-team/keras#20585; still so in Keras 3.15) stop it:

    1. before training ``fit`` draws one distributed batch and reduces the whole
       ``(x, y)`` tuple with ``strategy.reduce`` to build metrics and optimizer
       ("Attempt to convert a value (PerReplica ...) to a Tensor"). Here that
       build is done from one local batch ``(ids (B, T), one-hot (B, C)[,
       weights (B,)])`` inside the strategy's scope, and Keras' own attempt is
       turned off for this model. Only shapes are read from the batch.
    2. each step's logs (scalars) are averaged with ``strategy.reduce("MEAN",
       v, axis=0)``, which fails on a scalar ("Invalid reduction dimension 0").
       For the length of ``fit`` the trainer's reduction averages scalars over
       replicas with ``axis=None`` instead.

    No-op for other strategies.
    """
    if not is_multi_worker(strategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = _already_built
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy_):
            import keras

            def mean(value):
                if isinstance(value, tf_trainer.tf.distribute.DistributedValues):
                    return strategy_.reduce("MEAN", value, axis=None)
                return value

            return keras.tree.map_structure(mean, values)
        return original(values, strategy_, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original


def _already_built(iterator=None, data_batch=None) -> None:
    """Stands in for ``Trainer._maybe_symbolic_build`` once the model is built."""
