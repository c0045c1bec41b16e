"""``train.distribute``: roles from TF_CONFIG, MirroredStrategy over two logical
CPUs, and two worker processes on 127.0.0.1 training one model.

TensorFlow fixes its devices and its collective runtime when it starts, so every
strategy test runs ``textclf`` in a fresh subprocess through ``LAUNCHER``: it
splits the CPU into two logical devices, optionally stops a run after an epoch
(as Ctrl-C would) and optionally logs the rows of every per-replica batch, then
runs the CLI commands it is given in that one process.

Tolerance: with ``model.dropout: 0`` a replica count changes only the order of
floating-point sums, so per-epoch losses agree to 1e-4 (relative) and test
accuracy to within ``ACCURACY_TOLERANCE``.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textclf.config import load_config
from textclf.distribute import is_chief, worker_role
from textclf.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_TOLERANCE = 0.02  # test accuracy, one device vs several (24 test examples: 0 of 24 differ)
LOSS_RTOL = 1e-4  # per-epoch train and validation loss, one device vs several

LAUNCHER = r'''
"""Run textclf commands in one process (two logical CPUs unless a cluster worker)."""
import json, os, sys
import tensorflow as tf

if "TF_CONFIG" not in os.environ:  # a worker of a cluster keeps its one CPU device
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

if os.environ.get("LOG_REPLICA_BATCHES"):
    import keras
    step = keras.Model.train_step

    def train_step(self, data):
        tf.print("replica batch rows:", tf.shape(data[0])[0], output_stream=sys.stderr)
        return step(self, data)

    keras.Model.train_step = train_step

from textclf import training
from textclf.cli import cli

make_callbacks = training.make_callbacks


def interrupting(after_epoch):
    def make(cfg, work, progress):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == after_epoch:
                    raise KeyboardInterrupt

        callbacks, nan_stop = make_callbacks(cfg, work, progress)
        return callbacks + [Interrupt()], nan_stop
    return make


codes = []
for command in json.loads(sys.argv[1]):
    after = command.pop(0) if isinstance(command[0], int) else None
    training.make_callbacks = interrupting(after) if after is not None else make_callbacks
    try:
        cli.main(command, prog_name="textclf", standalone_mode=False)
        codes.append(0)
    except Exception as exc:  # the CLI's one-line errors carry an exit code
        print(f"textclf failed: {exc}", file=sys.stderr)
        codes.append(getattr(exc, "exit_code", 1))
print("EXIT CODES", json.dumps(codes), file=sys.stderr)
'''


def launcher(tmp_path: Path) -> Path:
    path = tmp_path / "launch_textclf.py"
    path.write_text(LAUNCHER, encoding="utf-8")
    return path


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return {**env, **extra}


def run_textclf(tmp_path: Path, commands: list[list], timeout: float = 240, **env):
    """Run ``commands`` (each a textclf argv, optionally led by an epoch to stop
    after) in one subprocess; returns (exit codes, stderr)."""
    result = subprocess.run(
        [sys.executable, str(launcher(tmp_path)), json.dumps([[*c] for c in commands])],
        cwd=tmp_path, env=subprocess_env(**env), capture_output=True, text=True,
        timeout=timeout)
    codes = [line for line in result.stderr.splitlines() if line.startswith("EXIT CODES")]
    assert codes, result.stderr[-3000:]
    return json.loads(codes[-1].split(" ", 2)[2]), result.stderr


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def assert_same_training(a: Path, b: Path) -> None:
    """Same per-epoch losses (to LOSS_RTOL) and test accuracy (to ACCURACY_TOLERANCE)."""
    import numpy as np

    ha, hb = history(a), history(b)
    assert len(ha) == len(hb)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in ha], [r[key] for r in hb], rtol=LOSS_RTOL,
                                   err_msg=key)
    acc_a = json.loads((a / "metrics.json").read_text())["test"]["accuracy"]
    acc_b = json.loads((b / "metrics.json").read_text())["test"]["accuracy"]
    assert abs(acc_a - acc_b) <= ACCURACY_TOLERANCE, (acc_a, acc_b)


NO_DROPOUT = ["--set", "model.dropout=0.0", "--set", "train.patience=null"]


# --------------------------------------------------------------------------
# TF_CONFIG and config checks (no TensorFlow).
# --------------------------------------------------------------------------


def tf_config(cluster: dict, kind: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


@pytest.mark.parametrize("cluster, kind, index, chief, n", [
    ({"worker": ["a:1", "b:2"]}, "worker", 0, True, 2),
    ({"worker": ["a:1", "b:2"]}, "worker", 1, False, 2),
    ({"chief": ["c:0"], "worker": ["a:1"]}, "chief", 0, True, 2),
    ({"chief": ["c:0"], "worker": ["a:1"]}, "worker", 0, False, 2),
])
def test_the_chief_is_chief_or_worker_zero(cluster, kind, index, chief, n):
    role = worker_role(tf_config(cluster, kind, index))
    assert (role.is_chief, role.n_workers) == (chief, n)


@pytest.mark.parametrize("environ, message", [
    ({}, "TF_CONFIG is not set"),
    ({"TF_CONFIG": "{nope"}, "TF_CONFIG must be JSON"),
    (tf_config({"worker": ["a:1"]}, "ps", 0), "task.type must be chief or worker"),
    (tf_config({"worker": ["a:1"]}, "worker", 1), "task.index must be in [0, 0] for worker"),
])
def test_bad_tf_config_is_a_one_line_usage_error(environ, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        worker_role(environ)


def test_devices_need_mirrored(tiny_config):
    with pytest.raises(ConfigError, match="train.devices must be left out unless "
                                          "train.distribute is mirrored"):
        load_config(tiny_config, ["train.devices=[/cpu:0]"])
    cfg = load_config(tiny_config, ["train.distribute=mirrored", "train.devices=[/cpu:0]"])
    assert cfg.train.devices == ("/cpu:0",) and is_chief(cfg.train)


# --------------------------------------------------------------------------
# MirroredStrategy over two logical CPUs.
# --------------------------------------------------------------------------

MIRRORED = ["--set", "train.distribute=mirrored", "--set", "train.devices=[/cpu:0, /cpu:1]"]


def test_mirrored_on_two_cpus_trains_like_one_device_and_resumes(tmp_path, tiny_config):
    """Global batch 16 = 8 rows on each replica; the same losses as one device;
    an interrupted mirrored run resumes to the uninterrupted mirrored result;
    a device the machine lacks is a one-line error."""
    train = ["train", "-c", str(tiny_config), *NO_DROPOUT, "--set", "train.epochs=2"]
    codes, log = run_textclf(tmp_path, [
        [*train, "-o", "one"],
        [*train, *MIRRORED, "-o", "two"],
        ["train", "-c", str(tiny_config), "-o", "bad", "--set", "train.distribute=mirrored",
         "--set", "train.devices=[/cpu:0, /gpu:7]"],
        [0, *train, *MIRRORED, "-o", "resumed"],  # stopped after epoch 1 of 2
    ], LOG_REPLICA_BATCHES="1")
    assert codes == [0, 0, 2, 1], log[-3000:]
    assert "MirroredStrategy over 2 replica(s): global batch of 16 = 8 per replica" in log
    rows = {int(line.rsplit(" ", 1)[1]) for line in log.splitlines()
            if line.startswith("replica batch rows:")}
    assert rows == {8, 16}, "one device sees batches of 16, each of two replicas 8"
    assert_same_training(tmp_path / "one", tmp_path / "two")
    assert "train.devices names /gpu:7, which is not a device of this machine" in log
    # A new process, as after a real interruption (an interrupted step leaves
    # TensorFlow's collective runtime aborted for the rest of the process).
    resumed, resume_log = run_textclf(tmp_path, [["train", "--resume", "resumed"]])
    assert resumed == [0], resume_log[-3000:]
    # Resuming under the strategy continues the same run exactly.
    assert (tmp_path / "resumed" / "history.csv").read_text() == \
        (tmp_path / "two" / "history.csv").read_text()
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text()) == \
        json.loads((tmp_path / "two" / "metrics.json").read_text())


# --------------------------------------------------------------------------
# Two worker processes, MultiWorkerMirroredStrategy.
# --------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """Ports free now (bound then released together, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_workers(tmp_path: Path, command: list, n: int = 2) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(n)]}
    workers = []
    for index in range(n):
        env = subprocess_env(LOG_REPLICA_BATCHES="1", **tf_config(cluster, "worker", index))
        log = open(tmp_path / f"worker{index}.log", "w")
        workers.append(subprocess.Popen(
            [sys.executable, str(launcher(tmp_path)), json.dumps([command])],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        log.close()
    return workers


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)


@pytest.mark.slow
def test_two_workers_train_one_model_and_the_chief_writes_the_run(tmp_path, tiny_config):
    command = ["train", "-c", str(tiny_config), "-o", "together", *NO_DROPOUT,
               "--set", "train.distribute=multi_worker"]
    started = time.perf_counter()
    workers = start_workers(tmp_path, command)
    try:
        for worker in workers:
            worker.wait(timeout=240)
    finally:
        stop(workers)
    wall = time.perf_counter() - started
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    for log in logs:
        assert "EXIT CODES [0]" in log, log[-3000:]
        assert "MultiWorkerMirroredStrategy over 2 replica(s): global batch of 16 = 8" in log
    assert "the chief writes the run directory" in logs[1]
    assert not list(tmp_path.glob(".*partial")), "the chief finished its run"
    # Each worker took half of every global batch: 192 training rows / 16 = 12 steps
    # an epoch, 8 rows each on each worker.
    epochs = len(history(tmp_path / "together"))
    for log in logs:
        rows = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines()
                if line.startswith("replica batch rows:")]
        assert rows == [8] * 12 * epochs

    started = time.perf_counter()
    codes, _ = run_textclf(tmp_path, [["train", "-c", str(tiny_config), "-o", "alone",
                                       *NO_DROPOUT]])
    alone_wall = time.perf_counter() - started
    assert codes == [0]
    assert_same_training(tmp_path / "alone", tmp_path / "together")
    accuracy = {name: json.loads((tmp_path / name / "metrics.json").read_text())["test"]
                ["accuracy"] for name in ("alone", "together")}
    print(f"\ntwo workers: {wall:.1f} s wall, test accuracy {accuracy['together']:.4f}; "
          f"one process: {alone_wall:.1f} s wall, test accuracy {accuracy['alone']:.4f}")
