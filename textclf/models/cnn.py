"""Kim (2014) TextCNN: parallel Conv1D widths, max over time, dropout, softmax."""

from __future__ import annotations

import keras
import numpy as np

from ..config import ModelConfig
from .common import regularizer, softmax_head, token_embedding
from .layers import EndPadding, LengthMaskedMaxPooling


def build_cnn(cfg: ModelConfig, vocab_size: int, n_classes: int,
              pretrained: np.ndarray | None = None, trainable: bool = True) -> keras.Model:
    """Token ids (B, T) int32, 0 = padding -> class probabilities (B, n_classes).

    Layer names are part of the contract with ``textclf.reference`` (which
    rebuilds the model in NumPy): ``embedding``, ``end_padding``, ``conv_K`` and
    ``max_pool_K`` per kernel width K, ``concat``, ``dropout``, ``output``.
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # Padding by the widest kernel gives every real token a window in each branch.
    padded = EndPadding(max(cfg.kernel_sizes), name="end_padding")(ids)
    x = token_embedding(cfg, vocab_size, mask_zero=False, pretrained=pretrained,
                        trainable=trainable)(padded)  # (B, T + pad, E)
    pooled = []
    for width in cfg.kernel_sizes:
        features = keras.layers.Conv1D(
            cfg.filters, width, activation=cfg.activation or "relu",
            kernel_initializer=cfg.kernel_initializer, kernel_regularizer=regularizer(cfg),
            name=f"conv_{width}")(x)  # (B, T + pad - width + 1, F)
        pooled.append(LengthMaskedMaxPooling(name=f"max_pool_{width}")([features, ids]))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    probabilities = softmax_head(x, cfg, n_classes, max_norm=cfg.max_norm)
    return keras.Model(ids, probabilities, name="textcnn")
