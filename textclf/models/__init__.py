"""Model builders: ``build_model(cfg, vocab_size, n_classes)`` picks by ``model.type``."""

from __future__ import annotations


def build_model(cfg, vocab_size: int, n_classes: int, pretrained=None, trainable: bool = True):
    """Token ids (B, T) -> probabilities (B, n_classes) for ``cfg.type`` cnn or rnn."""
    if cfg.type == "cnn":
        from .cnn import build_cnn
        return build_cnn(cfg, vocab_size, n_classes, pretrained, trainable)
    if cfg.type == "rnn":
        from .rnn import build_rnn
        return build_rnn(cfg, vocab_size, n_classes, pretrained, trainable)
    raise ValueError(f"build_model handles cnn and rnn, not {cfg.type!r}")
