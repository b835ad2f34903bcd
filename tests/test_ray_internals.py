"""The parts of Ray that are not its public API and that autometa relies on, each checked by
name: when a Ray release changes one, this test fails saying which and where autometa uses
it (pyproject.toml pins Ray to the releases these tests have passed on)."""

from __future__ import annotations

import copy
import fnmatch
import pickle

import pytest
import ray


def _hyperband():
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(metric="loss", mode="min")


def _bracket():
    from ray.tune.schedulers.hyperband import _Bracket

    return _Bracket("training_iteration", max_trials=3, init_t_attr=1, max_t_attr=9, eta=3, s=2)


def _bohb():
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB()


def _storage():
    import pyarrow.fs
    from ray.train._internal.storage import StorageContext

    return StorageContext(storage_path="/tmp/autometa-internals", experiment_dir_name="e",
                          storage_filesystem=pyarrow.fs.LocalFileSystem(), trial_dir_name="t")


def _services():
    import ray._private.services

    return ray._private.services


# (what holds it, attribute, the autometa module that uses it)
INTERNALS = [
    (_services, "canonicalize_bootstrap_address", "autometa.launch.run (--address checked "
                                                  "before ray.init)"),
    (_hyperband, "_trial_info", "autometa.schedulers.resumable (brackets put back on restore)"),
    (_hyperband, "_process_bracket", "autometa.schedulers.resumable"),
    (_bracket, "_live_trials", "autometa.schedulers.resumable"),
    (_bracket, "cleanup_trial", "autometa.schedulers.resumable"),
    (_bracket, "cleanup_full", "autometa.schedulers.resumable"),
    (_bracket, "is_being_processed", "autometa.schedulers.resumable"),
    (_bracket, "finished", "autometa.schedulers.resumable"),
    (_bohb, "trial_to_params", "autometa.searchers.bohb (configs of autometa's proposals)"),
    (_storage, "experiment_driver_staging_path", "autometa.launch.durable (state snapshots)"),
    (_storage, "experiment_fs_path", "autometa.launch.durable"),
    (_storage, "trial_fs_path", "autometa.launch.durable (checkpoint pruning)"),
    (_storage, "trial_driver_staging_path", "autometa.launch.durable (results copied before "
                                            "each snapshot)"),
    (_storage, "storage_filesystem", "autometa.launch.durable"),
]


@pytest.mark.parametrize(("holder", "attribute", "user"), INTERNALS,
                         ids=[f"{h.__name__.strip('_')}.{a}" for h, a, _ in INTERNALS])
def test_ray_internal_is_there(holder, attribute, user):
    assert attribute in dir(holder()), (  # (dir: a property is not evaluated)
        f"Ray {ray.__version__}: {holder.__name__.strip('_')} has no {attribute!r} any more, "
        f"which {user} uses")


def test_tune_state_file_names_are_the_ones_the_snapshots_copy():
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search import BasicVariantGenerator, Searcher
    from ray.tune.search.search_generator import SearchGenerator

    from autometa.launch.durable import STATE_FILES

    for cls in (TuneController, SearchGenerator, Searcher, BasicVariantGenerator, CallbackList):
        name = cls.CKPT_FILE_TMPL.format("2026-01-01_00-00-00")
        assert any(fnmatch.fnmatch(name, p) for p in STATE_FILES), (
            f"Ray {ray.__version__}: {cls.__name__} saves {cls.CKPT_FILE_TMPL!r}, which "
            f"autometa.launch.durable.STATE_FILES does not copy into its snapshots")


def test_the_differentiable_mark_survives_what_tune_does_to_a_domain():
    from autometa.convert.tune import to_tune
    from autometa.space import space_from_text

    domain = to_tune(space_from_text("parameters:\n  lr: {type: loguniform, low: 1.0e-4, "
                                     "high: 1.0e-1, differentiable: true}\n"))["lr"]
    for copied in (copy.deepcopy(domain), pickle.loads(pickle.dumps(domain)),
                   ray.cloudpickle.loads(ray.cloudpickle.dumps(domain))):
        assert getattr(copied, "_autometa_differentiable", False), (
            f"Ray {ray.__version__}: a copied {type(domain).__name__} lost the attribute that "
            f"autometa.convert.tune sets on it")


def test_tune_resume_still_forgets_num_samples():
    """Tune's restore runs ``num_samples=1`` when it finds no saved state (so autometa starts
    such a search again itself: autometa.launch.run). If a release passes ``num_samples``,
    that workaround may go."""
    import inspect

    from ray.tune.impl.tuner_internal import TunerInternal

    source = inspect.getsource(TunerInternal._fit_resume)
    assert "num_samples" not in source, "Tune's resume passes num_samples now: see the docstring"
