"""Kim (2014) TextCNN: parallel Conv1D widths, max over time, dropout, softmax."""

from __future__ import annotations

import keras
import numpy as np

from ..config import ModelConfig
from .common import regularizer, softmax_head, token_embedding
from .layers import (MONOTONE_ACTIVATIONS, EndPadding, LengthMaskedMaxPooling,
                     MaxPooledConv1D)


def pools_in_conv(cfg: ModelConfig) -> bool:
    """Whether each branch is one :class:`MaxPooledConv1D` (bias and activation
    after the max): ``model.pool_in_conv`` and a non-decreasing activation."""
    return cfg.pool_in_conv and (cfg.activation or "relu") in MONOTONE_ACTIVATIONS


def build_cnn(cfg: ModelConfig, vocab_size: int, n_classes: int,
              pretrained: np.ndarray | None = None, trainable: bool = True) -> keras.Model:
    """Token ids (B, T) int32, 0 = padding -> class probabilities (B, n_classes).

    Layer names are part of the contract with ``textclf.reference`` (which
    rebuilds the model in NumPy): ``embedding``, ``end_padding``, per kernel
    width K either ``conv_K`` (a :class:`MaxPooledConv1D`, (B, F):
    ``model.pool_in_conv`` and a non-decreasing activation) or ``conv_K`` and
    ``max_pool_K`` (Conv1D then pooling: gelu, ``pool_in_conv: false``, and runs
    trained before MaxPooledConv1D), ``concat``, ``dropout``, ``output``.
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # Padding by the widest kernel gives every real token a window in each branch.
    padded = EndPadding(max(cfg.kernel_sizes), name="end_padding")(ids)
    x = token_embedding(cfg, vocab_size, mask_zero=False, pretrained=pretrained,
                        trainable=trainable)(padded)  # (B, T + pad, E)
    activation = cfg.activation or "relu"
    pooled = []
    for width in cfg.kernel_sizes:
        options = dict(kernel_initializer=cfg.kernel_initializer,
                       kernel_regularizer=regularizer(cfg), activation=activation)
        if pools_in_conv(cfg):
            # Bias and activation after the max: the same function, cheaper to train.
            pooled.append(MaxPooledConv1D(cfg.filters, width, name=f"conv_{width}",
                                          pool_gradient=cfg.pool_gradient,
                                          **options)([x, ids]))  # (B, F)
            continue
        features = keras.layers.Conv1D(cfg.filters, width, name=f"conv_{width}",
                                       **options)(x)  # (B, T + pad - width + 1, F)
        pooled.append(LengthMaskedMaxPooling(name=f"max_pool_{width}")([features, ids]))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    probabilities = softmax_head(x, cfg, n_classes, max_norm=cfg.max_norm)
    return keras.Model(ids, probabilities, name="textcnn")
