"""A PyTorch Lightning callback that logs hypergradients at the end of every validation epoch.

Put it before Ray's ``TuneReportCheckpointCallback`` in the ``Trainer``'s callbacks: it logs
``hypergrad/<name>``, ``hparams/<name>`` and the checks (:mod:`autometa.trial.keys`) with
``pl_module.log``, so they are in ``trainer.callback_metrics`` when Ray's callback reports them
at ``validation_end``, next to your own metrics::

    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
    from autometa.trial.lightning import HypergradientCallback

    hp = autometa.Hyperparameters.from_config(config, "space.yaml")
    trainer = lightning.Trainer(callbacks=[
        HypergradientCallback(hp, train_loss=lambda module, hp: ..., val_loss=...),
        TuneReportCheckpointCallback()])

``train_loss(pl_module, hp)`` and ``val_loss(pl_module, hp)`` return the two objectives (the
whole training set or a large batch; read hyperparameters as ``hp[name]``), as for
:class:`~autometa.hypergrad.model.ImplicitEngine`. Works with ``lightning`` and
``pytorch_lightning`` (the optional extra ``autometa[lightning]``). Never imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from autometa.hypergrad.model import Hypergradients, Hyperparameters, ImplicitEngine

try:  # the same package the user's Trainer comes from (Ray's own callbacks do the same)
    from lightning.pytorch import Callback
except ModuleNotFoundError:  # pragma: no cover - the older package name
    from pytorch_lightning import Callback

ModuleLoss = Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor]


class HypergradientCallback(Callback):
    """Hypergradients of a LightningModule's validation loss, logged at each validation end.

    Args:
        hparams: The hyperparameters (:class:`~autometa.hypergrad.model.Hyperparameters`);
            the module's training step should read them too (``hp[name]``).
        train_loss: ``train_loss(pl_module, hp) -> scalar``: the training objective.
        val_loss: ``val_loss(pl_module, hp) -> scalar``.
        **engine_options: Options of :class:`~autometa.hypergrad.model.ImplicitEngine`
            (``method``, ``tol``, ``inner_tol``, ``maxiter``, ...).

    Attributes:
        last: The latest :class:`~autometa.hypergrad.model.Hypergradients`, or None.
    """

    def __init__(self, hparams: Hyperparameters, train_loss: ModuleLoss, val_loss: ModuleLoss,
                 **engine_options: Any) -> None:
        super().__init__()
        self.hparams, self.train_loss, self.val_loss = hparams, train_loss, val_loss
        self.engine_options = engine_options
        self.engine: ImplicitEngine | None = None
        self.last: Hypergradients | None = None
        self._solution: torch.Tensor | None = None

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False):
            return
        if self.engine is None or self.engine.model is not pl_module:
            self.engine = ImplicitEngine(pl_module, self.hparams, **self.engine_options)
            self.engine.solution = self._solution
        # Lightning validates under inference mode; the hypergradient needs autograd
        with torch.inference_mode(False), torch.enable_grad():
            result = self.engine.hypergradients(lambda hp: self.train_loss(pl_module, hp),
                                                lambda hp: self.val_loss(pl_module, hp))
        self.last = result
        for key, value in result.metrics().items():
            pl_module.log(key, float(value), on_step=False, on_epoch=True, prog_bar=False)

    def state_dict(self) -> dict[str, Any]:
        """The warm start and the hyperparameters' values, saved in Lightning's checkpoints."""
        solution = self.engine.solution if self.engine is not None else self._solution
        return {"solution": solution, "hparams": self.hparams.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._solution = state_dict.get("solution")
        if self.engine is not None:
            self.engine.solution = self._solution
        self.hparams.load_state_dict(state_dict.get("hparams", {}))


__all__ = ["HypergradientCallback"]
