"""train layer: losses, LR schedule, the DeepSpeed configuration, and the DeepSpeed engine
(import `train.engine` explicitly).

Exports are imported on first use, so reading a DeepSpeed config or a checkpoint's bookkeeping
(`train.deepspeed_config`) imports neither torch nor DeepSpeed.
"""
from genomics_bigbird.lazy import lazy_exports

_EXPORTS = {name: "losses" for name in ("PretrainingLoss", "bce_with_pos_weight", "mlm_accuracy", "mlm_loss",
                                         "nsp_accuracy", "nsp_loss", "pretraining_loss")}
_EXPORTS.update({name: "schedule" for name in ("warmup_linear_decay", "warmup_linear_decay_scheduler")})
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
