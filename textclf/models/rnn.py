"""Recurrent classifier: masked embedding, LSTM/GRU/SimpleRNN over the whole
sequence, mean over the unpadded steps, dropout, softmax."""

from __future__ import annotations

import keras
import numpy as np

from ..config import ModelConfig
from .common import regularizer, softmax_head, token_embedding
from .fused_gru import FusedGRU
from .fused_lstm import FusedLSTM
from .layers import MaskedMeanPooling

_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
          "simple_rnn": keras.layers.SimpleRNN}
# model.cpu_loop auto: the cells with a fused CPU loop of textclf's own.
_FUSED_CELLS = {"lstm": FusedLSTM, "gru": FusedGRU}


def recurrent_layer(cfg: ModelConfig, index: int) -> keras.layers.Layer:
    """One (B, T, D) -> (B, T, units[*2]) recurrent layer named ``rnn_{index}``.

    The defaults (tanh, sigmoid gates, bias, no recurrent dropout, GRU
    ``reset_after=True``) are exactly what makes Keras pick the fused cuDNN
    kernel on a GPU; ``model.activation: relu`` trades that for the course's
    remedy against vanishing gradients. ``model.cpu_loop: auto`` builds an
    LSTM as :class:`~textclf.models.fused_lstm.FusedLSTM` and a GRU as
    :class:`~textclf.models.fused_gru.FusedGRU` (same weights, a faster loop
    on CPUs, cuDNN on GPUs).
    """
    cells = {**_CELLS, **_FUSED_CELLS} if cfg.cpu_loop == "auto" else _CELLS
    options = dict(units=cfg.units, return_sequences=True,
                   kernel_initializer=cfg.kernel_initializer,
                   recurrent_initializer=cfg.recurrent_initializer,
                   kernel_regularizer=regularizer(cfg))
    if cfg.activation:
        options["activation"] = cfg.activation
    if not cfg.bidirectional:
        return cells[cfg.cell](name=f"rnn_{index}", **options)
    return keras.layers.Bidirectional(cells[cfg.cell](**options), merge_mode="concat",
                                      name=f"rnn_{index}")


def build_rnn(cfg: ModelConfig, vocab_size: int, n_classes: int,
              pretrained: np.ndarray | None = None, trainable: bool = True) -> keras.Model:
    """Token ids (B, T) int32, 0 = padding -> class probabilities (B, n_classes).

    Layer names (contract with ``textclf.reference``): ``embedding``,
    ``rnn_1`` ... ``rnn_L``, ``mean_pool``, ``dropout``, ``output``.
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # mask_zero carries the padding mask through every recurrent layer to the pooling.
    x = token_embedding(cfg, vocab_size, mask_zero=True, pretrained=pretrained,
                        trainable=trainable)(ids)  # (B, T, E)
    for index in range(1, cfg.layers + 1):
        x = recurrent_layer(cfg, index)(x)  # (B, T, units or 2*units)
    x = MaskedMeanPooling(name="mean_pool")(x)  # (B, units or 2*units)
    probabilities = softmax_head(x, cfg, n_classes)
    return keras.Model(ids, probabilities, name=f"{cfg.cell}_mean_pool")
