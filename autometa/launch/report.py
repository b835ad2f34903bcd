"""What a search did, said at its end (``autometa run``) and again later (``autometa show``):
the best trial and config, the errors grouped by their last line, how far the hypergradients
can be trusted, and how many of the planned trials finished (:mod:`autometa.launch.outcome`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from autometa.space import Experiment, SpaceError, load_space

if TYPE_CHECKING:
    from autometa.launch.outcome import Outcome
    from autometa.launch.show import ExperimentSummary


def saved_progress(exp: Experiment) -> dict[str, int] | None:
    """Reports saved per trial of the experiment to resume (None: nothing readable), read
    after its last snapshot is put back (:func:`restore_snapshot`, which says so)."""
    from autometa.launch.durable import restore_snapshot
    from autometa.launch.run import find_experiment
    from autometa.launch.show import summarize

    path = find_experiment(exp)
    try:
        message = restore_snapshot(path) if path else None  # run_experiment then finds it done
        if message:
            print(message, flush=True)
        return reports_per_trial(summarize(path, metric=exp.metric, mode=exp.mode)) if path else None
    except (FileNotFoundError, ValueError):  # NoSavedState too: run_experiment starts over
        return None


def reports_per_trial(summary: ExperimentSummary) -> dict[str, int]:
    return dict(zip(summary.table["trial_id"], summary.table["iterations"], strict=True))


def unfinished(results: object) -> int:
    try:
        return len(results) - results.num_terminated - results.num_errors  # type: ignore
    except (AttributeError, TypeError):
        return 0


def print_report(results: object, path: str, exp: Experiment, planned: int | None,
            saved: dict[str, int] | None = None) -> Outcome | None:
    """Print the results; return how the run ended (None: no trial reported the metric).
    ``planned``: the trials a complete run finishes; ``saved``: the reports per trial before a
    resume."""
    import yaml

    from autometa.launch.show import summarize, write_best_config

    metric, mode = exp.metric, exp.mode
    print()
    errors = list(getattr(results, "errors", []) or [])
    try:
        summary = summarize(path, metric=metric, mode=mode)
    except ValueError as err:
        if errors:
            print(f"{len(errors)} trial(s) failed; their errors are in {path}")
        print(f"{err}; results are in {path}")
        return None
    if errors or summary.errors:
        print(f"{max(len(errors), sum(map(len, summary.errors.values())))} trial(s) failed; "
              f"their errors are in {path}:")
        print(error_lines(summary.errors))
    outcome = outcome_of(summary, exp, planned)
    best = summary.table.iloc[0]
    config_file = os.path.join(path, "best_config.yaml")
    write_best_config(summary, config_file)
    if summary.candidates is not None:
        top = summary.candidates.iloc[0]
        print(f"Race winner: mean {metric} = {top[f'mean_{metric}']:.6g} over "
              f"{top['instances']} instances ({len(summary.candidates)} candidates, "
              f"{len(summary.table)} trials)")
        if "survivor" in summary.candidates:
            print("  " + race_line(summary))
    else:
        print(f"Best trial {best['trial_id']}: {metric} = {best[metric]:.6g} at its last "
              f"report ({best['iterations']} reports; {len(summary.table)} trials)")
        if summary.ranked_by != metric:
            print(f"  chosen by {summary.ranked_by} = {best[summary.ranked_by]:.6g}, the "
                  f"held-out metric (the descent follows {metric}, so its own best is biased)")
    print("Best config:")
    print("  " + yaml.safe_dump(summary.best_config, sort_keys=False).rstrip().replace("\n", "\n  "))
    learned = learned_line(summary, best["trial_id"])
    if learned:
        print(learned)
    if summary.hypergrad_checks:
        print(hypergrad_summary(*summary.hypergrad_checks))
    policy = policy_summary(summary)
    if policy:
        print(policy)
    print(f"Results: {path}")
    print(f"Best config written to {config_file}; more with: autometa show {path}")
    if saved and saved == reports_per_trial(summary):
        print("(the experiment had finished already: nothing was left to run; the results "
              "above are those saved)")
    print(outcome.line())
    return outcome


def outcome_of(summary: ExperimentSummary, exp: Experiment, planned: int | None) -> Outcome:
    from autometa.launch.outcome import count_outcome
    from autometa.schedulers import scheduler_spec

    pausing = scheduler_spec(exp.scheduler.name).stops_by_pausing
    table = summary.table
    statuses = ["TERMINATED" if pausing and s == "PAUSED" else s for s in table["status"]]
    done = table["status"].isin(["TERMINATED", "PAUSED"] if pausing else ["TERMINATED"])
    return count_outcome(statuses, planned, exp.time_budget_s,
                         stopped_early=int((done & table["stopped_early"] & ~table["diverged"])
                                           .sum()),
                         diverged=int((done & table["diverged"]).sum()))


def learned_line(summary: ExperimentSummary, trial_id: str, most: int = 8) -> str:
    """What the trial learned during its run (its ``hparams/<name>`` from its first report to
    its last): the config above is where it started."""
    moves = [(name, paths[trial_id][1]) for name, paths in sorted(summary.trajectories.items())
             if trial_id in paths and paths[trial_id][1]]
    if not moves:
        return ""
    shown = ", ".join(f"{name} {values[0]:.4g} -> {values[-1]:.4g}" for name, values in moves[:most])
    more = f" and {len(moves) - most} more" if len(moves) > most else ""
    return (f"Learned during the trial (hparams/<name>, first report -> last; the config is "
            f"where it started): {shown}{more}")


def error_lines(errors: dict[str, list[str]], most: int = 5) -> str:
    """One line per distinct error (its last line), with the trials that ended with it."""
    lines = []
    for message, trials in sorted(errors.items(), key=lambda item: -len(item[1]))[:most]:
        shown = ", ".join(trials[:4]) + (f" and {len(trials) - 4} more" if len(trials) > 4 else "")
        lines.append(f"  {message}  (trial{'s' if len(trials) > 1 else ''} {shown})")
    if len(errors) > most:
        lines.append(f"  ... and {len(errors) - most} other distinct errors")
    return "\n".join(lines)


def race_line(summary: ExperimentSummary) -> str:
    """How many candidates survived (irace: its last race) and why the race ended."""
    survived = int(summary.candidates["survivor"].sum())
    from autometa.searchers import SEARCHERS, searcher_spec

    one_race = summary.searcher not in SEARCHERS or searcher_spec(summary.searcher).replays_race
    which, what = (("", "the race") if one_race
                   else (f" {summary.searcher}'s last race", summary.searcher))
    return (f"{survived} of {len(summary.candidates)} candidates survived{which}; {what} "
            f"ended because {summary.race_end or 'it was stopped before its end'}")


def hypergrad_summary(reports: int, failed: int, last: int, last_failed: int) -> str:
    """One line on how far the trials' hypergradients can be trusted."""
    if not failed:
        return (f"Hypergradients: all {reports} reports met their tolerances "
                "(hypergrad_converged = 1).")
    return (f"Hypergradients: {failed} of {reports} reports did not meet their tolerances "
            f"(hypergrad_converged = 0), {last_failed} of the {last} last reports a searcher "
            "reads; hypergrad_residual and hypergrad_inner_gap in the results say why, and "
            "each trial's log says what to change (usually: train closer to the optimum).")


def policy_summary(summary: ExperimentSummary) -> str | None:
    """One line on the learned augmentation policies (None when no trial learned one): how
    far the best trial's moved, and how many did not move."""
    from autometa.trial.keys import (
        POLICY_ENTROPY,
        POLICY_MOVED,
        POLICY_SNR,
        POLICY_STILL,
        finite_number,
    )

    table = summary.table
    if POLICY_MOVED not in table or table[POLICY_MOVED].isna().all():
        return None
    best = table.iloc[0]
    still = int((table[POLICY_STILL] == 1).sum()) if POLICY_STILL in table else 0
    learned = int(table[POLICY_MOVED].notna().sum())
    if finite_number(best[POLICY_MOVED]) is None:
        line = (f"The best trial learned no augmentation policy ({learned} of {len(table)} "
                "trials did)")
    else:
        line = (f"Augmentation policy of the best trial: moved {best[POLICY_MOVED]:.3f} from "
                f"its start (entropy {best.get(POLICY_ENTROPY, float('nan')):.2f} nats, "
                f"signal/noise of its last hypergradient {best.get(POLICY_SNR, float('nan')):.2f})")
    if still:
        line += (f"; {still} of {len(table)} trials' policies did not move (augment_still = 1: "
                 "each trial's log says what to change)")
    return line + "."


def saved_outcome(summary: ExperimentSummary) -> Outcome | None:
    """The outcome of the run in ``summary.path``, counted against the plan of the space copy
    ``autometa run`` left there (None without one)."""
    from autometa.launch.plan import plan_experiment
    from autometa.launch.run import SPACE_COPY, planned_trials

    copy = os.path.join(summary.path, SPACE_COPY)
    if not os.path.isfile(copy):
        return None
    try:
        space = load_space(copy)
        exp = plan_experiment(space, need_trainable=False)
        return outcome_of(summary, exp, planned_trials(space, exp))
    except (SpaceError, ValueError):
        return None
