"""Pieces shared by the model builders: embedding, the softmax head, the saved copy."""

from __future__ import annotations

import keras
import numpy as np

from ..config import ModelConfig


def regularizer(cfg: ModelConfig):
    return keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None


def token_embedding(cfg: ModelConfig, vocab_size: int, mask_zero: bool,
                    pretrained: np.ndarray | None = None, trainable: bool = True):
    """Embedding (B, T) -> (B, T, embedding_dim); row 0 is padding.

    ``pretrained`` (vocab_size, embedding_dim) replaces the random start
    (Kim's CNN-static when ``trainable`` is False, non-static otherwise).
    """
    layer = keras.layers.Embedding(vocab_size, cfg.embedding_dim, mask_zero=mask_zero,
                                   embeddings_initializer="uniform", trainable=trainable,
                                   name="embedding")
    if pretrained is not None:
        # Built and assigned here, not through a Constant initializer: that would
        # write the whole matrix into the model's JSON config on every save.
        layer.build((None, None))
        layer.embeddings.assign(np.asarray(pretrained, dtype=layer.embeddings.dtype))
    return layer


def softmax_head(x, cfg: ModelConfig, n_classes: int, max_norm: float | None = None):
    """Dropout then Dense softmax: (B, D) -> (B, n_classes) probabilities.

    The head runs in float32 even under a mixed-precision policy so that the
    softmax and the loss keep their precision.
    """
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm, axis=0) if max_norm else None
    return keras.layers.Dense(n_classes, activation="softmax", name="output",
                              kernel_initializer=cfg.kernel_initializer,
                              kernel_regularizer=regularizer(cfg),
                              kernel_constraint=constraint, dtype="float32")(x)


def uncompiled_copy(model: keras.Model) -> keras.Model:
    """A twin of ``model`` (same class, config and weights) that was never
    compiled: what a run directory saves. Without the optimizer, model.keras
    holds no slots (Adam's two moments would triple its size) and loads
    without the optimizer's class. Built from the config because
    ``keras.models.clone_model`` compiles the twin too."""
    copy = type(model).from_config(model.get_config())
    if not copy.built:  # a subclassed model (TreeNet); a functional one is built
        copy.build()
    copy.set_weights(model.get_weights())
    return copy
