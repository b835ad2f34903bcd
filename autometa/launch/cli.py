"""The ``autometa`` command line: validate, run, show, convert, curate.

Bad input (a malformed file, an unknown name) prints one line naming the file,
key path and line, and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from autometa.launch.console import (
    log_to_stderr,
    no_tuner_restore_hint,
    quiet_ray_logs,
    warnings_as_log_lines,
    workers_warn_once,
)
from autometa.launch.outcome import EXIT_TRIALS_LOST
from autometa.launch.report import (
    error_lines,
    hypergrad_summary,
    learned_line,
    policy_summary,
    print_report,
    race_line,
    saved_outcome,
    saved_progress,
    unfinished,
)
from autometa.space import SpaceError, load_space

EXIT_BAD_INPUT = 2
CONVERT_TARGETS = ("configspace-json", "nni-json", "yaml", "json")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autometa`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with warnings_as_log_lines(getattr(args, "verbosity", 1)):
            return args.handler(args)
    except SpaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConnectionError as err:  # (launch.run.ClusterUnreachable: no cluster at --address)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `autometa policy show FILE | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python's documented remedy)
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autometa", description="AutoML for Ray Tune: run searches from search-space files.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check search-space files",
                       description="Check search-space files; exit 2 on the first bad one.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(handler=_validate)

    p = sub.add_parser("run", help="run (or resume) a search",
                       description="Run the search a file describes, on local Ray (default) or "
                                   "a cluster (--address).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--searcher", help="override experiment.searcher (a registered name)")
    p.add_argument("--scheduler", help="override experiment.scheduler (a registered name)")
    p.add_argument("--num-samples", type=_positive_int, help="override experiment.num_samples")
    p.add_argument("--storage-path", help="override experiment.storage_path")
    p.add_argument("--name", help="override experiment.name (the results folder)")
    p.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT "
                                     "(default: start local Ray)")
    p.add_argument("--resources", type=_resources, metavar="NAME=N,...",
                   help="override experiment.resources_per_trial, e.g. cpu=2,gpu=0.5 or "
                        "cpu=1,gpu=1,my_resource=1 (fractional gpu at most 1)")
    p.add_argument("--resume", action="store_true",
                   help="continue the latest interrupted run of this experiment")
    p.add_argument("--verbosity", type=int, choices=(0, 1, 2, 3), default=1,
                   help="console output: 0 only the final summary, 1 a line per trial that "
                        "ends and a status line every 30 s (default), 2 Tune's status tables "
                        "and a box per trial, 3 also each trial's results")
    p.add_argument("--quiet", action="store_const", const=0, dest="verbosity",
                   help="same as --verbosity 0")
    p.set_defaults(handler=_run)

    p = sub.add_parser("show", help="summarize a results folder",
                       description="Print the best trials, write best_config.yaml, PNG plots and a "
                                   "single-file interactive report.html.")
    p.add_argument("results", metavar="RESULTS_DIR")
    p.add_argument("--metric", help="metric to rank by (default: the experiment's)")
    p.add_argument("--mode", choices=("min", "max"))
    p.add_argument("--top", type=_positive_int, default=10, help="rows to print (default 10)")
    p.add_argument("-o", "--output", help="folder for best_config.yaml, the plots and "
                                          "report.html (default: RESULTS_DIR/autometa_report)")
    p.add_argument("--no-html", action="store_true",
                   help="write the PNG plots only, not the interactive report.html")
    p.set_defaults(handler=_show)

    p = sub.add_parser("policy", help="learned augmentation policy files",
                       description="Inspect a learned augmentation policy file.")
    policy = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    q = policy.add_parser("show", help="print a policy file readably (exit 2 if it is bad)")
    q.add_argument("file", metavar="FILE")
    q.set_defaults(handler=_policy_show)
    q = policy.add_parser("export", help="write the best trial's learned policy to a file")
    q.add_argument("results", metavar="RESULTS_DIR", help="an experiment folder")
    q.add_argument("-o", "--output", help="policy file to write (default: RESULTS_DIR/policy.yaml)")
    q.add_argument("--metric", help="rank trials by this result key (default: the experiment's)")
    q.add_argument("--mode", choices=("min", "max"), help="with --metric")
    q.set_defaults(handler=_policy_export)

    p = sub.add_parser("curate", help="find likely wrong labels in a dataset",
                       description="Rank every sample of a dataset by how likely its label is "
                                   "wrong (exact leave-one-out predictions of a ridge "
                                   "classifier on the standardized features, or the dataset "
                                   "derivative), flag suspects, write curation.csv and "
                                   "score_hist.png.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=("digits",), help="a built-in dataset")
    source.add_argument("--npz", metavar="FILE", help="a .npz file with features and labels")
    source.add_argument("--table", metavar="FILE",
                        help="a CSV, TSV or Parquet table with a label column")
    p.add_argument("--features-key", default="features", help="array of features in --npz")
    p.add_argument("--labels-key", default="labels", help="array of integer labels in --npz")
    p.add_argument("--label-column", help="the label column of --table")
    p.add_argument("--feature-columns", metavar="A,B,...",
                   help="feature columns of --table (default: every other column)")
    p.add_argument("--method", choices=("loo", "derivative"), default="loo",
                   help="loo: leave-one-out predictions, flag those predicted as another class "
                        "(default); derivative: the dataset derivative, flag the --share "
                        "largest")
    p.add_argument("--ridge", default="auto",
                   help="ridge of the model (default auto: the lowest leave-one-out error)")
    p.add_argument("--share", type=float, default=None,
                   help="flag this share of samples, most suspect first (default: loo flags "
                        "those predicted as another class; derivative flags 0.1)")
    p.add_argument("--flip", type=float, default=0.0,
                   help="first flip this share of labels at random and report the AUROC of "
                        "finding them (a check of the method on these features)")
    p.add_argument("--seed", type=int, default=0, help="seed of --flip")
    p.add_argument("-o", "--output", default="autometa_curation",
                   help="output folder (default: autometa_curation)")
    p.set_defaults(handler=_curate)

    p = sub.add_parser("convert", help="convert a search-space file",
                       description="Convert a search space to another format (printed to stdout "
                                   "or written with -o).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--to", required=True, choices=CONVERT_TARGETS)
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.set_defaults(handler=_convert)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _resources(text: str) -> dict[str, float]:
    """``cpu=2,gpu=0.5`` -> ``{"cpu": 2.0, "gpu": 0.5}`` (checked again by the planner)."""
    out = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected NAME=NUMBER items such as cpu=2,gpu=0.5, got {item!r}") from None
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {item!r}")
    return out


def _validate(args: argparse.Namespace) -> int:
    from autometa.launch.plan import plan_experiment

    for file in args.files:
        space = load_space(file)
        if space.experiment is not None:
            plan_experiment(space, need_trainable=False, build=False)  # no Ray
        n = len(space.searchable())
        print(f"{file}: ok ({n} searchable parameter{'s' if n != 1 else ''}, "
              f"{len(space.forbidden)} forbidden clause{'s' if len(space.forbidden) != 1 else ''})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from autometa.launch.plan import Overrides, plan_experiment
    from autometa.trial.keys import warnings_mode

    warnings_mode(os.environ)  # a bad setting stops here, not in every trial
    space = load_space(args.file)
    overrides = Overrides(searcher=args.searcher, scheduler=args.scheduler,
                          num_samples=args.num_samples, storage_path=args.storage_path,
                          name=args.name, resources=args.resources)
    exp = plan_experiment(space, overrides)  # fail on bad input before Ray starts
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    log_to_stderr()
    if args.verbosity < 2:  # Tune's new console prints a box at the start even when silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        quiet_ray_logs()
    from autometa.launch.run import planned_trials, run_experiment

    print(f"autometa: {exp.searcher.name} searcher, {exp.scheduler.name} scheduler, "
          f"{exp.trainable} trainable, metric {exp.metric} ({exp.mode})", flush=True)
    no_tuner_restore_hint()
    saved = saved_progress(exp) if args.resume else None
    planned = planned_trials(space, exp)
    import ray

    ours = not ray.is_initialized()  # (not a Ray the caller of main() started)
    try:
        with _SigintWatch() as sigint, workers_warn_once(args.verbosity):
            results, path = run_experiment(space, overrides, resume=args.resume,
                                           address=args.address,
                                           verbose=max(0, args.verbosity - 1),
                                           progress=args.verbosity == 1)
    finally:
        if ours:
            _stop_ray()
    outcome = print_report(results, path, exp, planned, saved)
    if exp.fail_fast and getattr(results, "errors", None):
        print(f"stopped at the first failed trial (fail_fast: true); after a fix, continue "
              f"with: {resume_command(args)}", file=sys.stderr)
        return EXIT_TRIALS_LOST
    if sigint.received or unfinished(results):  # Ctrl-C: Tune saved the state
        print(f"interrupted: continue with: {resume_command(args)}", file=sys.stderr)
        return 130
    if outcome is None:
        return EXIT_TRIALS_LOST
    if outcome.lost:
        print(f"error: {outcome.lost} trial(s) that should have finished did not (results are "
              f"in {path}); exit status {outcome.exit_code}", file=sys.stderr)
    return outcome.exit_code


def _stop_ray() -> None:
    """Stop the Ray this run started, before the summary (so the trials' last log lines that
    Ray flushes at its shutdown come before it), deaf to Ctrl-C: the results are saved, and an
    interrupt in Ray's shutdown (otherwise at exit) printed a traceback."""
    import signal
    import threading

    import ray

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        ray.shutdown()
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


def resume_command(args: argparse.Namespace) -> str:
    """The ``autometa run`` command that continues this run: same file and overrides."""
    words = ["autometa", "run", args.file]
    for flag, value in (("--searcher", args.searcher), ("--scheduler", args.scheduler),
                        ("--num-samples", args.num_samples),
                        ("--storage-path", args.storage_path), ("--name", args.name),
                        ("--address", args.address)):
        if value is not None:
            words += [flag, str(value)]
    if args.resources:
        words += ["--resources", ",".join(f"{k}={v:g}" for k, v in args.resources.items())]
    return shlex.join(words + ["--resume"])


class _SigintWatch:
    """Tells whether Tune got a Ctrl-C (an interrupt between trials leaves none unfinished).

    Tune installs its own SIGINT handler for the run and, on the first signal, puts back the
    one it found: ours. So ours being in place after the run means the run was interrupted.
    Ours raises ``KeyboardInterrupt``, as Python's default does, for a second Ctrl-C.
    """

    received = False

    @staticmethod
    def _handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def __enter__(self) -> _SigintWatch:
        import signal
        import threading

        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._active:
            self.received = signal.getsignal(signal.SIGINT) is self._handler
            signal.signal(signal.SIGINT, self._previous)


def _show(args: argparse.Namespace) -> int:
    from autometa.launch.plots import figures_of, write_plots
    from autometa.launch.show import summarize, write_best_config

    summary = summarize(args.results, metric=args.metric, mode=args.mode)
    import pandas as pd

    held = [summary.ranked_by] if summary.ranked_by != summary.metric else []
    columns = ["trial_id", *held, summary.metric, f"best_{summary.metric}", "status",
               "iterations", "ended"] + \
        [c for c in summary.table.columns if c.startswith("config/")]
    table = summary.table.assign(ended=[
        "diverged" if d else "stopped early" if e else "" for d, e in
        zip(summary.table["diverged"], summary.table["stopped_early"], strict=True)])
    lines = []
    if summary.candidates is not None and "survivor" in summary.candidates:
        lines.append("Race: " + race_line(summary))
    lines.append(learned_line(summary, summary.table.iloc[0]["trial_id"]))
    if summary.hypergrad_checks:
        lines.append(hypergrad_summary(*summary.hypergrad_checks))
    lines.append(policy_summary(summary) or "")
    counted = saved_outcome(summary)
    lines.append(counted.line() if counted else "")
    if summary.errors:
        lines.append(error_lines(summary.errors))
    with pd.option_context("display.max_columns", 30, "display.width", 200):
        if summary.candidates is not None:
            print("Candidates of the race (survivors first):")
            print(summary.candidates.head(args.top).to_string(index=False))
            print("\nTrials (one per candidate and instance):")
        print(table[columns].head(args.top).to_string(index=False))
    for line in lines:
        if line:
            print(line)
    out = args.output or os.path.join(summary.path, "autometa_report")
    os.makedirs(out, exist_ok=True)
    best_file = os.path.join(out, "best_config.yaml")
    write_best_config(summary, best_file)
    figures = figures_of(summary)
    plots = write_plots(summary, out, figures)
    print(f"\nBest config: {best_file}")
    print(f"Plots: {', '.join(os.path.basename(p) for p in plots)} in {out}")
    if not args.no_html:
        from autometa.launch.html_report import write_html

        report = os.path.join(out, "report.html")
        shown = summary.candidates if summary.candidates is not None else table[columns]
        write_html(report, figures, f"autometa: {summary.path}",
                   [f"{summary.metric} ({summary.mode}), ranked by {summary.ranked_by}; "
                    f"{len(summary.table)} trials", *lines], summary.best_config,
                   shown.head(max(args.top, 20)))
        print(f"Interactive report (one file, opens offline): {report}")
    return 0


def _curate(args: argparse.Namespace) -> int:
    from autometa.launch.curate import curate, flip_labels, load_arrays, load_table

    ridge: float | str = args.ridge
    if ridge != "auto":
        try:
            ridge = float(ridge)
        except ValueError:
            raise ValueError(f"--ridge must be a positive number or 'auto', got {ridge!r}") \
                from None
    classes, note = None, ""
    if args.table is not None:
        columns = args.feature_columns.split(",") if args.feature_columns else None
        table = load_table(args.table, args.label_column, columns)
        features, labels, classes = table.features, table.labels, table.classes
        if table.encoded:
            note = f"; one-hot encoded: {', '.join(table.encoded)}"
    else:
        if args.label_column or args.feature_columns:
            raise ValueError("--label-column and --feature-columns go with --table")
        features, labels = load_arrays(args.dataset, args.npz, args.features_key,
                                       args.labels_key)
    flipped = None
    if args.flip:
        labels, flipped = flip_labels(labels, args.flip, args.seed)
    print(f"autometa curate: {len(labels)} samples, {features.shape[1]} features, "
          f"{int(labels.max()) + 1} classes" +
          (f", {int(flipped.sum())} labels flipped (seed {args.seed})" if flipped is not None
           else "") + note, flush=True)
    report = curate(features, labels, args.output, method=args.method, ridge=ridge,
                    share=args.share, flipped=flipped, classes=classes)
    how = ("predicted as another class by the leave-one-out model" if args.method == "loo"
           and args.share is None else "most suspect first")
    print(f"{report.model}; {int(report.suspect.sum())} suspects flagged ({how})")
    if report.auroc is not None:
        print(f"AUROC of the {args.method} score for the flipped labels: {report.auroc:.3f}")
    print("written: " + ", ".join(report.files))
    return 0


def _located(space: object, message: str) -> Exception:
    """``message`` ("<parameter key>: problem") as the file's ``file:line: parameters.<key>:
    problem`` error when it names a parameter of ``space``; a plain ValueError otherwise."""
    key, sep, problem = message.partition(": ")
    if sep and key in space:  # type: ignore[operator]
        return space.error(problem, "parameters", *key.split("."))  # type: ignore[attr-defined]
    return ValueError(message)


def _policy_show(args: argparse.Namespace) -> int:
    from autometa.augment.policy_file import load_policy

    print(f"{args.file}: " + load_policy(args.file).describe())
    return 0


def _policy_export(args: argparse.Namespace) -> int:
    from autometa.augment.policy_file import load_policy
    from autometa.launch.policy import export_best_policy

    file, trial = export_best_policy(args.results, args.output, args.metric, args.mode)
    print(f"best trial {trial}: policy written to {file}")
    print(load_policy(file).describe())
    return 0


def _convert(args: argparse.Namespace) -> int:
    import json
    import warnings

    space = load_space(args.file)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.to == "configspace-json":
                from autometa.convert.configspace import to_configspace_json

                text = to_configspace_json(space)
            elif args.to == "nni-json":
                from autometa.convert.nni import to_nni

                text = json.dumps(to_nni(space), indent=2) + "\n"
            else:
                from autometa.convert.document import dump_document

                text = dump_document(space, args.to)
        except ValueError as err:  # "<parameter>: what the target cannot express"
            error = _located(space, str(err))
    for warning in caught:  # what the target leaves out, as file:line: key: ... lines
        print(f"warning: {_located(space, str(warning.message))}", file=sys.stderr)
    if error is not None:
        raise error
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
