r"""Hypergradients of your own ``nn.Module`` and loss closures (the trial-side API).

Three objects, for a training loop you already have:

* :class:`Hyperparameters`: the search space's differentiable hyperparameters as tensors,
  keyed by their names in the space file and built from the trial's ``config`` in one call
  (transforms and bounds from the space: log for ``loguniform``, logit to the bounds of a
  bounded ``uniform``).
* :class:`ImplicitEngine`: ``engine.hypergradients(train_loss, val_loss)`` with closures that
  call your model as usual (``model(x)``) and read hyperparameters as ``hp["weight_decay"]``;
  it differentiates through the model's own parameters (nothing is copied, no functional
  rewrite), keeps BatchNorm statistics and every ``.grad`` as they were, warm-starts each
  linear solve from the previous one, and checks what it returns.
* :class:`Hypergradients`: the result in value units with its checks
  (:class:`~autometa.hypergrad.implicit.HypergradientInfo`); ``.metrics()`` gives the Tune
  result keys (:mod:`autometa.trial.keys`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from autometa.space import space_from_dict
    >>> space = space_from_dict({"parameters": {"weight_decay": {"type": "loguniform",
    ...     "low": 1e-4, "high": 1.0, "differentiable": True}}})
    >>> hp = Hyperparameters.from_config({"weight_decay": 0.1}, space, dtype=torch.float64)
    >>> torch.manual_seed(0) and None
    >>> x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    >>> model = nn.Linear(3, 1, dtype=torch.float64)
    >>> def train_loss(hp):
    ...     fit = ((model(x).squeeze(1) - y) ** 2).mean()
    ...     return fit + hp["weight_decay"] * (model.weight ** 2).sum()
    >>> def val_loss(hp):
    ...     return ((model(x[:5]).squeeze(1) - y[:5]) ** 2).mean()
    >>> opt = torch.optim.LBFGS(model.parameters(), max_iter=200, tolerance_grad=1e-12,
    ...                         line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad(); loss = train_loss(hp); loss.backward(); return loss
    >>> _ = opt.step(closure)
    >>> result = ImplicitEngine(model, hp).hypergradients(train_loss, val_loss)
    >>> result.info.converged, result.grads["weight_decay"] > 0   # less decay fits better
    (True, tensor(True))
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autometa.hypergrad.families.transforms import (
    Hyperparameter,
    IdentityTransform,
    LogitTransform,
    LogTransform,
    Transform,
)
from autometa.hypergrad.implicit import (
    DEFAULT_INNER_TOL,
    DEFAULT_TOL,
    HypergradientInfo,
    implicit_hypergradient,
)
from autometa.space import Space
from autometa.space import unconstrained as coords
from autometa.space.parameters import Parameter
from autometa.trial.keys import (
    CONVERGED,
    WARNINGS_ENV,
    finite_number,
    hypergrad_metrics,
    warnings_mode,
)

Closure = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


class Hyperparameters:
    """Named hyperparameter tensors for a trial: ``hp["weight_decay"]`` is the current value.

    Indexing gives the value detached (for the ordinary training step); the engines pass
    their closures a mapping of the same names whose values carry a graph. The values are
    always inside their bounds.

    Args:
        hparams: The hyperparameters (:class:`~autometa.hypergrad.families.Hyperparameter`).
    """

    def __init__(self, hparams: Sequence[Hyperparameter]) -> None:
        names = [h.name for h in hparams]
        if len(set(names)) != len(names):
            raise ValueError(f"hyperparameter names must be unique: {names}")
        self.hparams = list(hparams)
        self._by_name = {h.name: h for h in self.hparams}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], space: Space | str | Mapping[str, Any],
                    names: Sequence[str] | None = None, *, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Hyperparameters:
        """The space's differentiable hyperparameters (or ``names``) at the trial's config values.

        Args:
            config: The trial's config (nested as Tune passes it).
            space: The search space: a :class:`~autometa.space.Space`, a file's path, a
                space document, or the Tune ``param_space`` dict the Tuner was given.
            names: Space keys to use; default: those marked ``differentiable``, and in a Tune
                ``param_space`` (which has no such marker) every continuous parameter
                (``tune.uniform``, ``tune.loguniform``, ``tune.randn``, without q). Inactive
                conditional parameters are left out.
            device, dtype: Of the tensors (default: the default dtype, CPU).

        Raises:
            ValueError: no differentiable parameter, an unknown name, a parameter that is not
                continuous, or a config without its value.
        """
        tune_dict = False
        if isinstance(space, str):
            from autometa.space import load_space

            space = load_space(_space_file(space))
        elif not isinstance(space, Space):
            from autometa.convert.coerce import as_space, is_document

            if isinstance(space, Mapping):
                space = dict(space)
                tune_dict = not is_document(space)
            try:
                space = as_space(space)
            except ValueError:
                if not tune_dict:
                    raise
                from autometa.convert.coerce import continuous_part

                space = continuous_part(space)  # all a trial's engine needs of it
        params = _chosen(space, names, every_continuous=tune_dict)
        flat = space.flatten(dict(config))
        dtype = dtype or torch.get_default_dtype()
        out = []
        for p in params:
            if not space.is_active(p, flat):
                continue
            value = finite_number(flat.get(p.key))   # NumPy scalars too
            if value is None:
                raise ValueError(f"{p.key}: the config has no finite number for it "
                                 f"(got {flat.get(p.key)!r})")
            raw = torch.tensor(coords.to_unconstrained(p, value), dtype=dtype, device=device)
            out.append(Hyperparameter(p.key, raw, transform_of(p), p.low, p.high))
        return cls(out)

    # ------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._by_name:
            raise KeyError(f"no hyperparameter {name!r}; these are: {self.names}")
        return self._by_name[name].value().detach()

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self.hparams)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def values(self) -> dict[str, torch.Tensor]:
        """Current values by name (detached)."""
        return {h.name: h.value().detach() for h in self.hparams}

    def floats(self) -> dict[str, float]:
        """Current values of the scalar hyperparameters as floats."""
        return {n: float(v) for n, v in self.values().items() if v.numel() == 1}

    def tracked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(raws, values)``: fresh leaves of the unconstrained tensors, and the values computed
        from them (a graph to differentiate through)."""
        raws = {h.name: h.raw.detach().requires_grad_() for h in self.hparams}
        return raws, {n: self._by_name[n].value(r) for n, r in raws.items()}

    def value_grads(self, raw_grads: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:math:`\\partial L/\\partial x` from the gradients with respect to the raw tensors."""
        return {n: self._by_name[n].value_grad(g).detach() for n, g in raw_grads.items()}

    def raw_grads(self, value_grads: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r"""Inverse of :meth:`value_grads`: :math:`\partial L/\partial u = (\partial L/\partial x)
        \, dx/du` for the names given (the chain rule through each transform)."""
        out = {}
        for n, g in value_grads.items():
            h = self._by_name[n]
            out[n] = (torch.as_tensor(g, dtype=h.raw.dtype, device=h.raw.device)
                      * h.transform.derivative(h.raw)).detach()
        return out

    def shift(self, name: str, delta: torch.Tensor) -> None:
        """Move ``name``'s unconstrained tensor by ``delta``, then back inside its bounds."""
        h = self._by_name[name]
        with torch.no_grad():
            h.raw = (h.raw + delta.to(h.raw)).detach()
        h.clip_()

    def set(self, name: str, value: float | torch.Tensor) -> None:
        """Move ``name`` to ``value`` (clipped to its bounds)."""
        h = self._by_name[name]
        value = torch.as_tensor(value, dtype=h.raw.dtype, device=h.raw.device)
        if h.low is not None or h.high is not None:
            value = value.clamp(min=h.low, max=h.high)
        with torch.no_grad():
            h.raw = h.transform.inverse(h.inside(value)).detach()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The unconstrained tensors by name (values resume exactly)."""
        return {h.name: h.raw.detach().clone() for h in self.hparams}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Put back what :meth:`state_dict` gave (names it lacks keep their values)."""
        for h in self.hparams:
            if h.name in state:
                h.raw = state[h.name].detach().clone().to(h.raw.device)

    def __repr__(self) -> str:
        return f"Hyperparameters({self.floats()})"


def _space_file(path: str) -> str:
    """A relative path as the user meant it: Tune runs each trial in a folder of its own, so it
    is also looked for in the working directory the run started from."""
    import os

    if os.path.isabs(path) or os.path.exists(path):
        return path
    start = os.environ.get("TUNE_ORIG_WORKING_DIR")
    if start and os.path.exists(os.path.join(start, path)):
        return os.path.join(start, path)
    raise FileNotFoundError(f"{path}: no such search-space file here ({os.getcwd()}) nor where the "
                            f"run started ({start or 'unknown'}); pass an absolute path, e.g. "
                            f"os.path.join(os.path.dirname(__file__), {path!r})")


def transform_of(param: Parameter) -> Transform:
    """The torch transform of a space parameter's unconstrained coordinate
    (:mod:`autometa.space.unconstrained`: log, logit to the bounds, or identity)."""
    kind = coords.kind(param)
    if kind == "log":
        return LogTransform()
    if kind == "logit":
        return LogitTransform(float(param.low), float(param.high))
    return IdentityTransform()


def _chosen(space: Space, names: Sequence[str] | None, *,
            every_continuous: bool = False) -> list[Parameter]:
    if names is None and every_continuous:  # a Tune param_space: no markers to read
        names = [p.key for p in space.parameters if coords.is_continuous(p)]
        if not names:
            raise ValueError("the Tune param_space has no continuous parameter (tune.uniform, "
                             "tune.loguniform, tune.randn, without q) to differentiate")
    if names is None:
        names = [p.key for p in space.differentiable()]
        if not names:
            raise ValueError("the space marks no parameter 'differentiable: true'; mark the "
                             "continuous ones a trial differentiates, or pass names=[...]")
    return coords.continuous(space, names)


@dataclass(frozen=True)
class Hypergradients:
    """Hypergradients of a validation loss, in each value's own units, with their checks.

    Attributes:
        grads: :math:`dL_{val}/dx` by hyperparameter name.
        values: The values they were taken at.
        val_loss: The validation loss at the weights they were taken at.
        info: The checks (``info.converged``, ``info.message``).
    """

    grads: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    val_loss: float
    info: HypergradientInfo

    def metrics(self) -> dict[str, float]:
        """The Tune result keys: ``hparams/<name>``, ``hypergrad/<name>`` and the checks."""
        return hypergrad_metrics(self.grads, self.values, self.info)

    def at(self, values: Mapping[str, torch.Tensor]) -> Hypergradients:
        """The same hypergradients and checks, reported with ``values`` (e.g. the values an
        online update has moved to since, ``updater.values()``, so that ``hparams/<name>``
        is what the trial uses now)."""
        return dataclasses.replace(self, values=dict(values))


class ImplicitEngine:
    """Implicit hypergradients of a model's validation loss, by the implicit function theorem.

    Args:
        model: The network; its parameters that require grad are the weights :math:`w`.
        hparams: The hyperparameters (:class:`Hyperparameters`).
        method: Linear solver: ``"auto"`` (MINRES), ``"cg"``, ``"exact"``, ``"neumann"``,
            ``"fixed_point"``.
        damping: Added to the Hessian's diagonal; ``"auto"`` (the default): none unless the
            undamped solve misses ``tol``, then the smallest damping that meets it (the
            hypergradient of the proximal inner problem, :mod:`autometa.hypergrad.implicit`;
            the damping used is ``info.damping`` and the ``hypergrad_damping`` result).
        tol: Largest relative residual of the linear solve accepted (it stops at half of it).
        inner_tol: Largest inner gap relative to the hypergradient's norm
            (:mod:`autometa.hypergrad.implicit`).
        warm_start: Start each solve from the previous solution.
        spectrum_every: Re-estimate the Hessian's extreme eigenvalues (20 products, needed
            only by the automatic damping and the advice of a failed solve) at most every
            this many calls, using the last estimate in between (1: every call). The residual
            check is not affected: ``converged`` means the same either way.
        **options: Solver options (``maxiter``: at most that many Hessian-vector products,
            300 by default, each about two backward passes).
    """

    def __init__(self, model: nn.Module, hparams: Hyperparameters, *, method: str = "auto",
                 damping: float | str = "auto", tol: float = DEFAULT_TOL,
                 inner_tol: float = DEFAULT_INNER_TOL, warm_start: bool = True,
                 spectrum_every: int = 5, **options: Any) -> None:
        if isinstance(spectrum_every, bool) or not isinstance(spectrum_every, int) or \
                spectrum_every < 1:
            raise ValueError(f"spectrum_every must be an integer >= 1, got {spectrum_every!r}")
        self.model, self.hparams = model, hparams
        self.method, self.damping, self.tol, self.inner_tol = method, damping, tol, inner_tol
        self.warm_start, self.options = warm_start, options
        self.spectrum_every = spectrum_every
        self.solution: torch.Tensor | None = None
        self.spectrum: tuple[float, float] | None = None  # the last estimate and its age
        self.spectrum_age = 0
        self.calls = self.unconverged = 0  # warnings: the 1st, 2nd, 4th, 8th... unconverged
        warnings_mode(os.environ)  # a bad setting fails here, not at the first unconverged call

    def hypergradients(self, train_loss: Closure, val_loss: Closure) -> Hypergradients:
        """:math:`dL_{val}/dx` for every hyperparameter at the model's current weights.

        Args:
            train_loss: ``train_loss(hp) -> scalar``, the training objective the weights were
                trained on (called with the model in training mode), reading hyperparameters
                as ``hp[name]``. It should be the full objective at (about) its minimum: the
                whole training set or a large batch.
            val_loss: ``val_loss(hp) -> scalar`` (called in evaluation mode).

        A failed check is in ``result.info`` and warns with
        :class:`~autometa.hypergrad.implicit.UnconvergedWarning` on the 1st, 2nd, 4th, 8th...
        unconverged call of this engine (each with the count so far: a long run is not flooded,
        every call's verdict is in its results), or only on the first in this process where
        the environment variable ``AUTOMETA_UNCONVERGED_WARNINGS`` is ``first`` (``autometa
        run`` sets it for its local workers at the default verbosity); a non-finite loss gives
        NaN hypergradients and ``info.finite`` False.
        """
        model = self.model
        weights = [p for p in model.parameters() if p.requires_grad]
        if not weights:
            raise ValueError("the model has no parameter that requires grad")
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        was_training = model.training
        raws, values = self.hparams.tracked()
        try:
            model.train()
            train_value = train_loss(values)
            model.eval()
            val_value = val_loss(values)
            init = self.solution if self.warm_start else None
            hint = self.spectrum if self.spectrum_age < self.spectrum_every else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # said once, below, from the caller's line
                result = implicit_hypergradient(
                    _scalar(train_value, "train_loss"), _scalar(val_value, "val_loss"), weights,
                    list(raws.values()), method=self.method, damping=self.damping, tol=self.tol,
                    inner_tol=self.inner_tol, init=init, spectrum=hint, **self.options)
        finally:
            model.train(was_training)
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
        if result.solution is not None:
            self.solution = result.solution
        if hint is not None:
            self.spectrum_age += 1
        elif result.spectrum is not None:  # estimated by this call
            self.spectrum, self.spectrum_age = result.spectrum, 1
        self.calls += 1
        if not result.info.converged:
            self.unconverged += 1
            said = _said_now(self.unconverged)
            if said:
                from autometa.hypergrad.implicit import UnconvergedWarning

                info = result.info
                short = info.finite and info.inner_gap > info.inner_tol * info.hypergrad_norm
                hint = ("; if training stops short of a minimum on purpose (an SGD budget), take "
                        "these hyperparameters through the steps instead, UnrolledEngine(model, "
                        "optimizer, hp, loss_hparams=[...]), which assumes no optimum"
                        if short else "")
                again = (f"said again at {2 * self.unconverged}" if said == "doubling" else
                         f"not said again in this process ({WARNINGS_ENV}=first): each report's "
                         f"{CONVERGED} says it")
                warnings.warn(f"{info.message}{hint} [unconverged on {self.unconverged} of "
                              f"{self.calls} calls of this engine; {again}]",
                              UnconvergedWarning, stacklevel=2)
        grads = self.hparams.value_grads(dict(zip(raws, result.grads, strict=True)))
        return Hypergradients(grads, self.hparams.values(), float(val_value.detach()), result.info)

    def state_dict(self) -> dict[str, Any]:
        """The warm-start solution, the spectrum estimate and the hyperparameters' raw tensors
        (to resume exactly)."""
        return {"solution": None if self.solution is None else self.solution.clone(),
                "spectrum": self.spectrum, "spectrum_age": self.spectrum_age,
                "calls": self.calls, "unconverged": self.unconverged,
                "hparams": self.hparams.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.solution = state.get("solution")
        self.spectrum = state.get("spectrum")
        self.spectrum_age = int(state.get("spectrum_age", 0))
        self.calls = int(state.get("calls", 0))
        self.unconverged = int(state.get("unconverged", 0))
        self.hparams.load_state_dict(state.get("hparams", {}))


_said_in_process = [False]  # an unconverged warning was printed here ("first" mode)


def _said_now(count: int) -> str | None:
    """Whether the engine's ``count``-th unconverged call warns: the mode it warns in
    (``WARNINGS_ENV``), or None."""
    mode = warnings_mode(os.environ)
    if mode == "first":
        if _said_in_process[0]:
            return None
        _said_in_process[0] = True
        return mode
    # warn on the 1st, 2nd, 4th, 8th... occurrence: count is a power of two
    return mode if count > 0 and count & (count - 1) == 0 else None


def _scalar(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise TypeError(f"{name} must return a scalar tensor, got {type(value).__name__}"
                        f"{'' if not isinstance(value, torch.Tensor) else tuple(value.shape)}")
    return value.reshape(())


__all__ = ["Hypergradients", "Hyperparameters", "ImplicitEngine", "transform_of"]
