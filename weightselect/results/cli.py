"""``weightselect table``, ``weightselect figures`` and ``weightselect summary``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

from weightselect.rundir import FINAL, read_final

# pandas and matplotlib load when a command runs, not for `weightselect --help`

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "table", help="a paper table (CSV + Markdown) from finished runs",
        description="Any table of a study of the workflow's config.yaml (--table), from the runs finished "
        "so far; or, from a runs folder alone, a Table 2 or Table 3 layout (--kind).")
    _runs_arg(p)
    study = p.add_argument_group("a table of a study (the workflow's own tables)")
    study.add_argument("--table", help="a table of the study, e.g. table7 (see --list)")
    study.add_argument("--study", help="a study of the config file (default: its `study` key; see --list)")
    study.add_argument("--configfile", default="config.yaml",
                       help="the workflow's config.yaml (default ./config.yaml; its schema is read from "
                       "schemas/ beside it)")
    study.add_argument("--list", action="store_true", help="list the study's tables and exit")
    layout = p.add_argument_group("a table from a runs folder alone")
    layout.add_argument("--kind", choices=("table2", "table3"), default="table2",
                        help="table2: one student, a row per dataset; table3: one dataset, a row per init")
    layout.add_argument("--student", action="append",
                        help="student name as in the runs folder (table3: repeat for each student)")
    layout.add_argument("--paper-model", action="append", default=[], metavar="[STUDENT=]MODEL",
                        help="the paper model to compare with: vit_t or convnext_f (table3: STUDENT=MODEL, repeatable)")
    layout.add_argument("--dataset", default="cifar100", help="table3: the dataset (default cifar100)")
    layout.add_argument("--datasets", nargs="+", help="table2: the datasets, in order (default: all with runs)")
    layout.add_argument("--variants", nargs="+", help="variants to compare (table2 default: random ws_uniform)")
    layout.add_argument("--seeds", nargs="+", type=int,
                        help="the seeds the study asked for; the table then lists missing seeds")
    layout.add_argument("--metric", default="final_top1", choices=("final_top1", "best_top1", "final_top5"))
    p.add_argument("-o", "--output", help="CSV path; the Markdown twin gets .md (--table: default, print "
                   "the table; --kind: required)")
    p.set_defaults(func=_table)

    p = subparsers.add_parser("figures", help="training curves (or a summary bar chart) as PNG")
    _runs_arg(p)
    p.add_argument("--kind", choices=("curves", "summary"), default="curves",
                   help="curves: test top-1 per epoch for one dataset; summary: bars per dataset vs the paper")
    p.add_argument("--student", required=True)
    p.add_argument("--dataset", help="curves: the dataset")
    p.add_argument("--variants", nargs="+", help="variants to draw (default: all with runs)")
    p.add_argument("--band", choices=("minmax", "std"), default="minmax", help="spread across seeds")
    p.add_argument("--paper-model", help="vit_t or convnext_f: draw the paper's numbers too")
    p.add_argument("-o", "--output", required=True, help="PNG path")
    p.set_defaults(func=_figures)

    p = subparsers.add_parser("summary", help="print mean/std over seeds for every run group")
    _runs_arg(p)
    p.add_argument("--metric", default="final_top1", choices=("final_top1", "best_top1", "final_top5"))
    p.set_defaults(func=_summary)


def _runs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="results/runs", help="runs folder (default results/runs)")


def _check_finals(runs_root) -> None:
    """Check every run's final.json first, so that a bad one is named with its file and key.

    Raises RunFileError (weightselect.rundir.read_final) for the first bad file, and
    FileNotFoundError when ``--runs`` is not a folder.
    """
    root = Path(runs_root)
    if root.exists() and not root.is_dir():
        raise FileNotFoundError(f"--runs {root} is a file, not a runs folder; pass the folder holding "
                                "<student>/<dataset>/<variant>/seed<N>/")
    for final in sorted(root.glob(f"*/*/*/seed*/{FINAL}")):
        if final.parent.name[4:].isdigit():  # the folders collect_runs reads: seed<N>
            read_final(final)


def _paper_models(values: List[str], students: List[str]) -> Dict[str, str]:
    out = {}
    for value in values:
        if "=" in value:
            student, model = value.split("=", 1)
        elif len(students) == 1:
            student, model = students[0], value
        else:
            raise ValueError(f"--paper-model {value}: with several students write STUDENT=MODEL")
        out[student] = model
    return out


def _report_unfinished(runs_root) -> None:
    from weightselect.results.runs import collect_runs

    runs = collect_runs(runs_root, include_unfinished=True)
    unfinished = runs[~runs["finished"]]
    if not unfinished.empty:
        print(f"{len(unfinished)} unfinished run(s) left out:", file=sys.stderr)
        for r in unfinished.itertuples():
            print(f"  {r.student}/{r.dataset}/{r.variant}/seed{r.seed} (epoch {r.epochs_done})", file=sys.stderr)


def _check_requested(runs_root, students, option_values) -> None:
    """Every dataset/variant asked for has a run (finished or not) of one of ``students``.

    A name without any run is a misspelling far more often than a study not started: raises
    ValueError naming the option, the name and the names that have runs.
    """
    from weightselect.results.runs import collect_runs

    if not any(values for _, _, values in option_values):
        return
    try:
        runs = collect_runs(runs_root, include_unfinished=True)
    except ValueError:
        return  # no run at all: collect_runs says so where the table is made
    runs = runs[runs["student"].isin(students)]
    for option, column, values in option_values:
        have = sorted(set(runs[column]))
        missing = [v for v in values or () if v not in have]
        if missing and have:
            raise ValueError(f"{option} {' '.join(missing)}: no run of {', '.join(students)} under {runs_root} "
                             f"has this {column}; {column}s with runs: {', '.join(have)}")


def _table(args) -> int:
    if args.table or args.list or args.study:
        return _study_table(args)
    return _layout_table(args)


def _study_table(args) -> int:
    """One table of a study, from the runs of it that have finished (``build_table``, as the workflow)."""
    from weightselect.study import RUNS_ROOT, load_study

    study = load_study(args.configfile, args.study)
    if args.list or not args.table:
        print(f"study '{study.name}' of {args.configfile} (others: --study NAME): {len(study.tables)} tables")
        for name, spec in study.tables.items():
            print(f"  {name:10} {spec.get('title', name)} ({len(study.table_runs(name))} runs)")
        return 0
    from weightselect.results.tables import build_table, paper_gap, reading_view, to_markdown, write_table

    if args.table not in study.tables:
        raise ValueError(f"--table {args.table}: study '{study.name}' has no such table; its tables: "
                         f"{', '.join(study.tables)} (--list)")
    spec = study.table_params(args.table)
    finals = [Path(args.runs) / Path(run.final).relative_to(RUNS_ROOT) for run in study.table_runs(args.table)]
    table = build_table(spec, finals)
    if args.output:
        path = write_table(table, args.output, title=spec["title"])
        print(f"wrote {path} and {path.with_suffix('.md')}")
    else:
        print(f"## {spec['title']}\n\n{to_markdown(reading_view(table))}")
    print(paper_gap(table))
    missing = [f for f in finals if not f.is_file()]
    if missing:
        print(f"{len(missing)} of {len(finals)} runs of study '{study.name}' not finished (left out): "
              f"{', '.join(str(f.parent) for f in missing[:5])}{' ...' if len(missing) > 5 else ''}",
              file=sys.stderr)
    return 0


def _layout_table(args) -> int:
    """A Table 2 or Table 3 layout from a runs folder alone (--kind)."""
    from weightselect.results.runs import collect_runs, expected_runs
    from weightselect.results.tables import TABLE3_VARIANTS, table2, table3, write_table

    if not args.student or not args.output:
        raise ValueError("weightselect table needs --table NAME (a table of the study in config.yaml), "
                         "or --student and -o/--output with --kind")
    _check_finals(args.runs)
    if args.kind == "table2":
        checks = [("--datasets", "dataset", args.datasets), ("--variants", "variant", args.variants)]
    else:
        checks = [("--dataset", "dataset", [args.dataset]), ("--variants", "variant", args.variants)]
    models = _paper_models(args.paper_model, args.student)
    _check_requested(args.runs, args.student, checks)
    runs = collect_runs(args.runs)
    if args.kind == "table2":
        if len(args.student) != 1:
            raise ValueError("table2 is for one student; give --student once (or use --kind table3)")
        student = args.student[0]
        variants = args.variants or ["random", "ws_uniform"]
        datasets = args.datasets or sorted(set(runs.loc[runs["student"] == student, "dataset"]))
        expected = expected_runs([student], datasets, variants, args.seeds) if args.seeds else None
        df = table2(runs, student, expected=expected, paper_model=models.get(student),
                    datasets=args.datasets, variants=variants, metric=args.metric)
        title = f"Table 2: {student}" + (f" vs paper {models[student]}" if student in models else "")
    else:
        variants = args.variants or list(TABLE3_VARIANTS)
        expected = expected_runs(args.student, [args.dataset], variants, args.seeds) if args.seeds else None
        df = table3(runs, dataset=args.dataset, students=args.student, variants=variants,
                    expected=expected, paper_models=models, metric=args.metric)
        title = f"Table 3: inits on {args.dataset}"
    path = write_table(df, args.output, title=title)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    _report_unfinished(args.runs)
    return 0


def _figures(args) -> int:
    from weightselect.results.figures import plot_curves, plot_summary  # matplotlib only when drawing
    from weightselect.results.runs import collect_curves, collect_runs
    from weightselect.results.tables import table2

    if args.kind == "curves":
        if not args.dataset:
            raise ValueError("figures --kind curves needs --dataset")
        plot_curves(collect_curves(args.runs), args.student, args.dataset, args.output,
                    variants=args.variants, band=args.band, paper_model=args.paper_model)
    else:
        _check_finals(args.runs)
        runs = collect_runs(args.runs)
        table = table2(runs, args.student, paper_model=args.paper_model,
                       variants=args.variants or ("random", "ws_uniform"))
        plot_summary(table, args.output)
    print(f"wrote {args.output}")
    return 0


def _summary(args) -> int:
    from weightselect.results.runs import collect_runs, summarize

    _check_finals(args.runs)
    runs = collect_runs(args.runs, include_unfinished=True)
    finished = runs[runs["finished"]]
    if finished.empty:
        print(f"no finished runs under {args.runs}")
    else:
        table = summarize(finished, metric=args.metric).drop(columns=["n_expected", "missing_seeds"])
        print(f"{args.metric} over seeds ({len(finished)} finished runs):")
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))
    unfinished = runs[~runs["finished"]]
    if not unfinished.empty:
        print(f"\nunfinished runs ({len(unfinished)}):")
        print(unfinished[["student", "dataset", "variant", "seed", "epochs_done"]].to_string(index=False))
    return 0

