"""train layer: losses, LR schedule, and the DeepSpeed engine (import `train.engine` explicitly).

`engine` is not imported here so that using the losses does not start DeepSpeed.
"""
from genomics_bigbird.train.losses import (
    PretrainingLoss, bce_with_pos_weight, mlm_accuracy, mlm_loss, nsp_accuracy, nsp_loss, pretraining_loss)
from genomics_bigbird.train.schedule import warmup_linear_decay, warmup_linear_decay_scheduler

__all__ = ["PretrainingLoss", "bce_with_pos_weight", "mlm_accuracy", "mlm_loss", "nsp_accuracy", "nsp_loss",
           "pretraining_loss", "warmup_linear_decay", "warmup_linear_decay_scheduler"]
