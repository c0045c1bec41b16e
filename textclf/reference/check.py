"""``textclf check``: the Keras model against its NumPy re-implementation.

``check_texts(end_to_end_model, texts, labels, run_dir, gradients)`` is the
whole command: it also checks that the NumPy engine's tokenisation gives the
saved vectorizer's ids, then calls ``check_run`` on those ids with the NumPy
model read from the run's ``weights.npz``.

``check_run(keras_classifier, numpy_model, ids, labels, gradients)`` runs both
on the same token ids and measures, per layer (Keras layer names), the largest
absolute difference of the activations, then of the probabilities, the share
of identical predicted labels and, with ``gradients=True``, the difference of
the gradients of the mean cross-entropy w.r.t. every weight (NumPy backward
pass against ``tf.GradientTape``). ``format_check(report)`` renders it.

Recurrent layers' outputs are compared at the unpadded steps only: at a
padded step the generic kernel repeats the previous output while cuDNN (on a
GPU) writes zeros, and nothing downstream reads them. TF32 matmuls are
switched off for the comparison (they would cost 1e-3 on an Ampere+ GPU).

A model trained with mixed precision computes in bfloat16 or float16 (its
weights are float32). :func:`check_texts` then compares the same weights
computing in float32, which is what the reference validates, and reports
separately how far the 16-bit model itself is from the reference
(``mixed``: its compute dtype, label agreement and largest probability
difference; information, not a failure).

Tolerances (float32 Keras against the float64 reference, see REFERENCE_SPEC):
activations ``|k - n| <= atol + rtol |n|`` with atol = rtol = 1e-5, the
probabilities ``|k - n| <= 1e-5`` absolute; gradients rtol 1e-4, atol 1e-5.
Everything but :func:`format_check` needs TensorFlow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from .keras_weights import keras_variables
from .model import NumpyModel

ATOL, RTOL = 1e-5, 1e-5
GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-4


@dataclass
class Diff:
    """One compared quantity: the largest |keras - numpy|, the largest
    |keras - numpy| / max|numpy|, and whether it is within tolerance."""

    name: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass
class CheckReport:
    n_examples: int
    layers: list[Diff]
    probabilities: Diff
    same_labels: int
    gradients: list[Diff] | None = None
    gradient_examples: int = 0
    same_token_ids: int | None = None  # texts whose NumPy token ids equal Keras' (check_texts)
    # A mixed-precision model as saved: {"compute_dtype", "same_labels", "max_abs"}
    # against the reference; the rows above then compare it computing in float32.
    mixed: dict | None = None
    tolerances: dict = field(default_factory=lambda: {
        "atol": ATOL, "rtol": RTOL, "grad_atol": GRAD_ATOL, "grad_rtol": GRAD_RTOL})

    @property
    def label_agreement(self) -> float:
        return self.same_labels / max(self.n_examples, 1)

    @property
    def ok(self) -> bool:
        parts = self.layers + [self.probabilities] + (self.gradients or [])
        ids_ok = self.same_token_ids is None or self.same_token_ids == self.n_examples
        return ids_ok and all(d.ok for d in parts)


def _trim(ids: np.ndarray) -> np.ndarray:
    """Drop all-padding columns at the right (keeping one): the models mask them."""
    used = np.flatnonzero(ids.any(axis=0))
    return ids[:, :max(1, used[-1] + 1 if used.size else 1)]


class _Stats:
    def __init__(self, name, atol, rtol):
        self.name, self.atol, self.rtol = name, atol, rtol
        self.max_abs = self.max_ref = 0.0
        self.ok = True

    def add(self, keras_value, numpy_value):
        keras_value = np.asarray(keras_value, dtype=np.float64)
        numpy_value = np.asarray(numpy_value, dtype=np.float64)
        if keras_value.shape != numpy_value.shape:
            self.ok, self.max_abs = False, float("inf")
            return
        diff = np.abs(keras_value - numpy_value)
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_ref = max(self.max_ref, float(np.abs(numpy_value).max()))
            self.ok &= bool(np.all(diff <= self.atol + self.rtol * np.abs(numpy_value)))
        self.ok &= bool(np.all(np.isfinite(keras_value)) and np.all(np.isfinite(numpy_value)))

    def result(self) -> Diff:
        return Diff(self.name, self.max_abs, self.max_abs / self.max_ref if self.max_ref else 0.0,
                    self.ok)


def _activation_probe(keras_classifier, names):
    import keras

    outputs = {name: keras_classifier.get_layer(name).output for name in names}
    return keras.Model(keras_classifier.input, outputs, name="activation_probe")


def check_run(keras_classifier, numpy_model: NumpyModel | None, ids: np.ndarray,
              labels: np.ndarray | None = None, gradients: bool = False,
              batch_size: int = 64, gradient_examples: int = 32,
              atol: float = ATOL, rtol: float = RTOL,
              grad_atol: float = GRAD_ATOL, grad_rtol: float = GRAD_RTOL) -> CheckReport:
    """Compare ``keras_classifier`` (token ids -> probabilities) with ``numpy_model``
    (``NumpyModel.from_keras(keras_classifier)`` when None) on ``ids`` (N, T) int.

    ``labels`` (N,) int class indices are needed for ``gradients=True``: the
    gradients are taken on the first ``gradient_examples`` examples.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or len(ids) == 0:
        raise ValueError(f"ids must be a non-empty (examples, steps) array; got {ids.shape}")
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)
    if numpy_model is None:
        numpy_model = NumpyModel.from_keras(keras_classifier)
    numpy_model.forward(ids[:1])
    names = [n for n in numpy_model.activations_ if n != "output"]
    keras_names = {layer.name for layer in keras_classifier.layers}
    names = [n for n in names if n in keras_names]
    probe = _activation_probe(keras_classifier, names + ["output"])
    stats = {n: _Stats(n, atol, rtol) for n in names}
    probabilities = _Stats("probabilities", atol, 0.0)
    same = 0
    for start in range(0, len(ids), batch_size):
        batch = _trim(ids[start:start + batch_size])
        numpy_probs = numpy_model.forward(batch)
        keras_out = {k: np.asarray(v) for k, v in probe(batch, training=False).items()}
        steps = (batch != 0)[..., None]  # (B, T, 1): the unpadded steps
        for name in names:
            ours, theirs = numpy_model.activations_[name], keras_out[name]
            if name.startswith("rnn_") and numpy_model.spec["type"] == "rnn":
                ours, theirs = ours * steps, theirs * steps
            stats[name].add(theirs, ours)
        probabilities.add(keras_out["output"], numpy_probs)
        same += int(np.sum(keras_out["output"].argmax(axis=1) == numpy_probs.argmax(axis=1)))
    report = CheckReport(len(ids), [stats[n].result() for n in names], probabilities.result(),
                         same)
    if gradients:
        if labels is None:
            raise ValueError("gradients=True needs the labels")
        batch = _trim(ids[:gradient_examples])
        report.gradients = compare_gradients(keras_classifier, numpy_model, batch,
                                             np.asarray(labels)[:gradient_examples],
                                             grad_atol, grad_rtol)
        report.gradient_examples = len(batch)
    return report


def check_texts(end_to_end_model, texts, labels=None, run_dir=None, gradients: bool = False,
                **options) -> CheckReport:
    """``textclf check`` on raw texts: the saved end-to-end model (``vectorizer`` ->
    ``truncate`` -> classifier) against the NumPy engine of ``run_dir``.

    The Keras ids (from the model's own vectorizer and truncation) feed both
    nets, so the per-layer comparison is not blurred by tokenisation; the
    engine's tokenisation is compared with those ids separately
    (``same_token_ids``). Without ``run_dir`` the NumPy model is rebuilt from
    the Keras weights and tokenisation is not checked. ``labels``: class
    indices (N,), needed with ``gradients``. ``options`` go to :func:`check_run`.
    """
    import tensorflow as tf

    from .export import find_layer, nested_classifier

    texts = list(texts)
    vectorizer = end_to_end_model.get_layer("vectorizer")
    ids = vectorizer(tf.constant(texts, dtype=tf.string))
    truncate = find_layer(end_to_end_model, "truncate")
    ids = np.asarray(ids if truncate is None else truncate(ids))
    classifier = nested_classifier(end_to_end_model)
    ids = _at_least_one_step(ids)
    same_ids = None
    numpy_model = None
    if run_dir is not None:
        from .engine import NumpyEngine

        engine = NumpyEngine(run_dir)
        numpy_model = engine.model
        ours = engine.vectorizer.encode(texts)
        width = max(ours.shape[1], ids.shape[1])
        ours, theirs = (np.pad(a, [(0, 0), (0, width - a.shape[1])]) for a in (ours, ids))
        same_ids = int(np.sum(np.all(ours == theirs, axis=1)))
    compute_dtype = _compute_dtype(classifier)
    if compute_dtype == "float32":
        report = check_run(classifier, numpy_model, ids, labels, gradients, **options)
    else:
        saved_probs = _probabilities(classifier, ids)
        with _computing_in_float32(classifier):
            report = check_run(classifier, numpy_model, ids, labels, gradients, **options)
        numpy_model = numpy_model or NumpyModel.from_keras(classifier)
        reference = numpy_model.forward(ids)
        report.mixed = {
            "compute_dtype": compute_dtype,
            "same_labels": int(np.sum(saved_probs.argmax(axis=1) == reference.argmax(axis=1))),
            "max_abs": float(np.abs(saved_probs - reference).max())}
    report.same_token_ids = same_ids
    return report


def _layers(model) -> list:
    # Keras' own walk over nested layers (sub-models, wrappers, cells), as its
    # jit_compile support check uses; there is no public equivalent.
    return list(model._flatten_layers(include_self=True))


def _compute_dtype(model) -> str:
    """The 16-bit compute dtype of a mixed-precision model, else "float32"."""
    for layer in _layers(model):
        dtype = layer.dtype_policy.compute_dtype
        if dtype in ("bfloat16", "float16"):
            return dtype
    return "float32"


def _probabilities(classifier, ids: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(classifier(_trim(ids[i:i + batch_size]), training=False),
                                      dtype=np.float64)
                           for i in range(0, len(ids), batch_size)])


@contextlib.contextmanager
def _computing_in_float32(model):
    """Within the block, every layer of ``model`` computes in float32 (same weights:
    a mixed policy keeps its variables in float32); the policies come back after."""
    layers = _layers(model)
    saved = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = "float32"
        yield
    finally:
        for layer, policy in zip(layers, saved):
            layer.dtype_policy = policy


def _at_least_one_step(ids: np.ndarray) -> np.ndarray:
    """All-empty texts give (N, 0) ids; the models treat one padding step the same."""
    return ids if ids.shape[1] else np.zeros((len(ids), 1), dtype=ids.dtype)


def keras_gradients(keras_classifier, ids: np.ndarray, labels: np.ndarray,
                    spec: dict) -> dict[str, np.ndarray]:
    """d(mean cross-entropy)/d weight by ``tf.GradientTape``, keyed like NumpyModel.weights.

    Frozen (non-trainable) weights are watched explicitly, so they are compared too.
    """
    import tensorflow as tf

    variables = keras_variables(keras_classifier, spec)
    names = list(variables)
    tf_vars = [variables[n].value for n in names]
    with tf.GradientTape() as tape:
        for var in tf_vars:
            tape.watch(var)
        probs = keras_classifier(tf.constant(ids), training=False)
        picked = tf.gather(probs, tf.constant(labels, dtype=tf.int32), axis=1, batch_dims=1)
        loss = -tf.reduce_mean(tf.math.log(picked))
    grads = tape.gradient(loss, tf_vars)
    out = {}
    for name, var, grad in zip(names, tf_vars, grads):
        out[name] = (np.zeros(var.shape, var.dtype.as_numpy_dtype) if grad is None
                     else tf.convert_to_tensor(grad).numpy())
    return out


def compare_gradients(keras_classifier, numpy_model: NumpyModel, ids, labels,
                      atol: float = GRAD_ATOL, rtol: float = GRAD_RTOL) -> list[Diff]:
    """Per weight: the NumPy backward pass against ``tf.GradientTape``."""
    _, numpy_grads = numpy_model.loss_and_gradients(ids, labels)
    tf_grads = keras_gradients(keras_classifier, ids, labels, numpy_model.spec)
    diffs = []
    for name in sorted(numpy_model.weights):
        stat = _Stats(name, atol, rtol)
        if name not in tf_grads:
            stat.ok, stat.max_abs = False, float("inf")
        else:
            stat.add(tf_grads[name], numpy_grads[name])
        diffs.append(stat.result())
    return diffs


def format_check(report: CheckReport) -> str:
    """A plain-text table of ``report``, ending with the verdict."""
    tol = report.tolerances
    width = max([len(d.name) for d in report.layers + (report.gradients or [])] + [13])
    lines = [f"{report.n_examples} examples; activations |keras - numpy| <= "
             f"{tol['atol']:g} + {tol['rtol']:g} |numpy|, probabilities <= {tol['atol']:g}",
             f"{'layer':<{width}}  {'max abs diff':>12}  {'relative':>9}"]
    for d in report.layers + [report.probabilities]:
        lines.append(f"{d.name:<{width}}  {d.max_abs:12.3e}  {d.max_rel:9.2e}"
                     f"{'' if d.ok else '  EXCEEDS TOLERANCE'}")
    if report.same_token_ids is not None:
        lines.append(f"identical token ids (NumPy engine vs the saved vectorizer): "
                     f"{report.same_token_ids}/{report.n_examples}")
    lines.append(f"identical predicted labels: {report.same_labels}/{report.n_examples} "
                 f"({report.label_agreement:.2%})")
    if report.gradients is not None:
        lines.append(f"gradients of the mean cross-entropy on {report.gradient_examples} "
                     f"examples, NumPy backward vs tf.GradientTape "
                     f"(|tf - numpy| <= {tol['grad_atol']:g} + {tol['grad_rtol']:g} |numpy|)")
        lines.append(f"{'weight':<{width}}  {'max abs diff':>12}  {'relative':>9}")
        for d in report.gradients:
            lines.append(f"{d.name:<{width}}  {d.max_abs:12.3e}  {d.max_rel:9.2e}"
                         f"{'' if d.ok else '  EXCEEDS TOLERANCE'}")
    if report.mixed is not None:
        mixed = report.mixed
        lines.append(f"the run computes in {mixed['compute_dtype']} (mixed precision): the rows "
                     f"above compare its weights computing in float32; as saved, in "
                     f"{mixed['compute_dtype']}, it gives the reference's label on "
                     f"{mixed['same_labels']}/{report.n_examples}, probabilities within "
                     f"{mixed['max_abs']:.1e}")
    failed = [d.name for d in report.layers + [report.probabilities] + (report.gradients or [])
              if not d.ok]
    if report.same_token_ids is not None and report.same_token_ids != report.n_examples:
        failed.insert(0, "token ids")
    lines.append("OK: Keras and NumPy agree" if not failed else
                 "FAILED: beyond tolerance: " + ", ".join(failed))
    return "\n".join(lines)
