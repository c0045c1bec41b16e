"""``train.optimizer`` and its options -> a Keras optimizer (one place for every model)."""

from __future__ import annotations


def make_optimizer(cfg):
    """The configured optimizer with clipping (TrainConfig -> keras optimizer)."""
    import keras

    clip = {}
    if cfg.clipnorm is not None:
        clip["clipnorm"] = cfg.clipnorm
    if cfg.clipvalue is not None:
        clip["clipvalue"] = cfg.clipvalue
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.learning_rate, **clip)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, **clip)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(cfg.learning_rate, momentum=cfg.momentum, **clip)
    return keras.optimizers.Adagrad(cfg.learning_rate, **clip)
