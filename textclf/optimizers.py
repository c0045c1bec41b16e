"""``train.optimizer`` and its options -> a Keras optimizer (one place for every model)."""

from __future__ import annotations


def learning_rate(cfg, steps_per_epoch: int):
    """``train.learning_rate`` as a float, or a Keras schedule of the optimizer step.

    cosine: ``warmup_epochs`` of linear rise from 0, then cosine decay to 0 at
    the end of ``train.epochs`` (Loshchilov & Hutter's SGDR without restarts).
    A step-indexed schedule lives in the optimizer's ``iterations``, which the
    epoch checkpoints keep, so a resumed run continues on the same curve.
    """
    import keras

    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    total = max(cfg.epochs * steps_per_epoch - warmup, 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(0.0, total, alpha=0.0, warmup_steps=warmup,
                                                  warmup_target=cfg.learning_rate)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches in an epoch of ``n_train`` examples (at least 1)."""
    return max(1, -(-n_train // batch_size))


def make_optimizer(cfg, n_train: int):
    """The configured optimizer with clipping and learning-rate schedule
    (TrainConfig -> keras optimizer); ``n_train`` training examples size the
    schedule."""
    import keras

    clip = {}
    if cfg.clipnorm is not None:
        clip["clipnorm"] = cfg.clipnorm
    if cfg.clipvalue is not None:
        clip["clipvalue"] = cfg.clipvalue
    rate = learning_rate(cfg, steps_per_epoch(n_train, cfg.batch_size))
    if cfg.optimizer == "adam":
        from .fused_adam import FusedAdam

        return FusedAdam(rate, **clip)
    if cfg.optimizer == "keras_adam":
        return keras.optimizers.Adam(rate, **clip)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=cfg.momentum, **clip)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, momentum=cfg.momentum, **clip)
    return keras.optimizers.Adagrad(rate, **clip)
