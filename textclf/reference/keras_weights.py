"""Converters between Keras layers and the reference nets' specs and parameters.

A *spec* is a JSON-able dict describing a layer or a whole token-id model
(enough to rebuild it in NumPy without Keras); *params* map names to arrays.
Parameter names are Keras' own weight names, so the layouts are Keras'
(see the cell modules): ``kernel``, ``recurrent_kernel``, ``bias`` per cell,
prefixed ``forward/`` and ``backward/`` inside a Bidirectional layer. Whole-model
weights are keyed ``<layer name>/<param name>``, e.g. ``rnn_1/forward/kernel``,
``conv_3/bias``, ``embedding/embeddings``, ``output/kernel``.

This module never imports Keras: it reads the layer objects it is given
(class name, ``get_config()``, variables), so a spec can be rebuilt where
TensorFlow is absent.
"""

from __future__ import annotations

import numpy as np

from .gru import GRUCell
from .lstm import LSTMCell
from .recurrent import Bidirectional, Recurrent
from .rnn import SimpleRNNCell

SPEC_VERSION = 1
_CELL_KINDS = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}


class UnsupportedLayerError(ValueError):
    """A Keras layer uses an option the reference nets do not reproduce."""


# --- recurrent layers -------------------------------------------------------

def _cell_spec(layer) -> dict:
    # The first stock Keras class in the layer's ancestry (FusedLSTM is an LSTM).
    kind = next((_CELL_KINDS[cls.__name__] for cls in type(layer).__mro__
                 if cls.__name__ in _CELL_KINDS), None)
    if kind is None:
        raise UnsupportedLayerError(f"{layer.name}: expected SimpleRNN, LSTM or GRU; "
                                    f"got {type(layer).__name__}")
    config = layer.get_config()
    problems = []
    if not config.get("use_bias", True):
        problems.append("use_bias=False")
    if config.get("recurrent_activation", "sigmoid") != "sigmoid":
        problems.append(f"recurrent_activation={config['recurrent_activation']!r}")
    if config.get("stateful"):
        problems.append("stateful=True")
    if not config.get("return_sequences"):
        problems.append("return_sequences=False")
    if not isinstance(config.get("activation"), str):
        problems.append(f"activation={config.get('activation')!r}")
    if problems:
        raise UnsupportedLayerError(f"{layer.name}: the reference nets do not reproduce "
                                    + ", ".join(problems))
    return {"cell": kind, "units": int(config["units"]), "activation": config["activation"],
            "reset_after": bool(config.get("reset_after", True)),
            "go_backwards": bool(config.get("go_backwards", False)),
            "zero_output_for_mask": bool(config.get("zero_output_for_mask", False))}


def recurrent_spec(layer) -> dict:
    """Spec of a Keras SimpleRNN/LSTM/GRU layer, or of a Bidirectional wrapping one."""
    if type(layer).__name__ == "Bidirectional":
        forward = _cell_spec(layer.forward_layer)
        backward = _cell_spec(layer.backward_layer)
        if layer.merge_mode not in ("concat", "sum", "ave", "mul"):
            raise UnsupportedLayerError(f"{layer.name}: merge_mode {layer.merge_mode!r}")
        if forward["go_backwards"] or not backward["go_backwards"]:
            raise UnsupportedLayerError(f"{layer.name}: only the usual forward/backward pair")
        return {"name": layer.name, "bidirectional": True, "merge_mode": layer.merge_mode,
                "forward": forward, "backward": backward}
    return {"name": layer.name, "bidirectional": False, **_cell_spec(layer)}


def make_cell(spec: dict):
    """A cell object from a cell spec (``cell``, ``units``, ``activation``, ``reset_after``)."""
    if spec["cell"] == "simple_rnn":
        return SimpleRNNCell(spec["units"], spec["activation"])
    if spec["cell"] == "lstm":
        return LSTMCell(spec["units"], spec["activation"])
    if spec["cell"] == "gru":
        return GRUCell(spec["units"], spec["activation"], spec.get("reset_after", True))
    raise UnsupportedLayerError(f"unknown cell {spec['cell']!r}")


def build_recurrent(spec: dict) -> Recurrent | Bidirectional:
    """The reference layer for :func:`recurrent_spec`'s output."""
    if spec["bidirectional"]:
        return Bidirectional(make_cell(spec["forward"]), make_cell(spec["backward"]),
                             spec["merge_mode"])
    return Recurrent(make_cell(spec), go_backwards=spec["go_backwards"],
                     zero_output_for_mask=spec.get("zero_output_for_mask", False))


def _cell_variables(layer) -> dict:
    cell = layer.cell
    return {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel, "bias": cell.bias}


def _recurrent_variables(layer) -> dict:
    if type(layer).__name__ == "Bidirectional":
        out = {f"forward/{k}": v for k, v in _cell_variables(layer.forward_layer).items()}
        out.update({f"backward/{k}": v for k, v in _cell_variables(layer.backward_layer).items()})
        return out
    return _cell_variables(layer)


def recurrent_params(layer) -> dict[str, np.ndarray]:
    """Keras recurrent layer -> reference params (copies, the layer's dtype)."""
    return {name: np.array(var.numpy()) for name, var in _recurrent_variables(layer).items()}


def set_recurrent_params(layer, params: dict[str, np.ndarray]) -> None:
    """Reference params -> the Keras layer's variables (shapes must match exactly)."""
    for name, var in _recurrent_variables(layer).items():
        value = np.asarray(params[name])
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{layer.name}/{name}: expected shape {tuple(var.shape)}, "
                             f"got {value.shape}")
        var.assign(value.astype(var.dtype))


# --- whole token-id models ---------------------------------------------------

def _weights_of(layer) -> dict[str, np.ndarray]:
    """Plain layers: {weight name: array} (Embedding, Conv1D, Dense)."""
    return {var.name: np.array(var.numpy()) for var in layer.weights}


def _layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def model_spec(model) -> dict:
    """Spec of a textclf cnn or rnn token-id model (``textclf.models.build_model``).

    Relies on the layer names of that contract: ``end_padding``, ``embedding``,
    ``conv_K`` (and ``max_pool_K`` after a Conv1D), ``concat``, ``rnn_1..L``,
    ``mean_pool``, ``dropout``, ``output``.
    """
    names = _layer_names(model)
    embedding = model.get_layer("embedding")
    output = model.get_layer("output")
    output_config = output.get_config()
    spec = {"version": SPEC_VERSION,
            "vocab_size": int(embedding.input_dim), "embedding_dim": int(embedding.output_dim),
            "n_classes": int(output.units), "output_activation": output_config["activation"]}
    if "end_padding" in names:
        convs = []
        for name in names:
            if not name.startswith("conv_"):
                continue
            config = model.get_layer(name).get_config()
            if (config["padding"] != "valid" or tuple(config["strides"]) != (1,)
                    or tuple(config["dilation_rate"]) != (1,) or not config["use_bias"]
                    or not isinstance(config["activation"], str)):
                raise UnsupportedLayerError(f"{name}: only valid, stride 1, undilated Conv1D "
                                            "with bias and a named activation")
            width = int(config["kernel_size"][0])
            # A Conv1D is followed by max_pool_K; a MaxPooledConv1D pools inside
            # (pool None: its output is the pooled one). Both are f(conv + b), then the max.
            pool = f"max_pool_{width}"
            # How the max's gradient meets ties: MaxPooledConv1D's argmax sends it
            # to the first maximal window, pooling layers share it.
            ties = "first" if config.get("pool_gradient") == "argmax" else "shared"
            convs.append({"name": name, "width": width, "filters": int(config["filters"]),
                          "activation": config["activation"],
                          "pool": pool if pool in names else None, "ties": ties})
        spec.update(type="cnn", pad=int(model.get_layer("end_padding").pad), convs=convs)
    elif "mean_pool" in names:
        recurrent = [recurrent_spec(model.get_layer(name)) for name in names
                     if name.startswith("rnn_")]
        spec.update(type="rnn", mask_zero=bool(embedding.mask_zero), recurrent=recurrent)
    else:
        raise UnsupportedLayerError(f"{model.name}: neither a textclf cnn (end_padding) "
                                    "nor rnn (mean_pool) model")
    return spec


def model_weights(model, spec: dict | None = None) -> dict[str, np.ndarray]:
    """All weights of a textclf cnn/rnn model keyed ``<layer>/<param>`` (see module doc)."""
    spec = spec or model_spec(model)
    weights = {}
    plain = ["embedding", "output"] + [c["name"] for c in spec.get("convs", [])]
    for name in plain:
        for param, value in _weights_of(model.get_layer(name)).items():
            weights[f"{name}/{param}"] = value
    for layer_spec in spec.get("recurrent", []):
        for param, value in recurrent_params(model.get_layer(layer_spec["name"])).items():
            weights[f"{layer_spec['name']}/{param}"] = value
    return weights


def keras_variables(model, spec: dict | None = None) -> dict:
    """The Keras variables behind :func:`model_weights`' keys (for GradientTape)."""
    spec = spec or model_spec(model)
    variables = {}
    plain = ["embedding", "output"] + [c["name"] for c in spec.get("convs", [])]
    for name in plain:
        for var in model.get_layer(name).weights:
            variables[f"{name}/{var.name}"] = var
    for layer_spec in spec.get("recurrent", []):
        layer = model.get_layer(layer_spec["name"])
        for param, var in _recurrent_variables(layer).items():
            variables[f"{layer_spec['name']}/{param}"] = var
    return variables


def set_model_weights(model, weights: dict[str, np.ndarray]) -> None:
    """The inverse of :func:`model_weights`: assign every ``<layer>/<param>`` array to
    the Keras model's variable (cast to its dtype; shapes must match, no key may
    be missing or left over)."""
    variables = keras_variables(model)
    missing, extra = set(variables) - set(weights), set(weights) - set(variables)
    if missing or extra:
        raise ValueError(f"weights do not fit {model.name}: missing {sorted(missing)}, "
                         f"unexpected {sorted(extra)}")
    for name, var in variables.items():
        value = np.asarray(weights[name])
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{name}: expected shape {tuple(var.shape)}, got {value.shape}")
        var.assign(value.astype(var.dtype))
