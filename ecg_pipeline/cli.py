"""The ``ecg-pipeline`` command line. Imports are lazy so that ``--help`` answers at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-pipeline",
        description="From BIOPAC AcqKnowledge recordings to validated, filtered ECG windows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser(
        "ingest",
        help="ingest a folder of recordings into the Parquet window store",
        description="Read every settled recording under DIR, check it, filter, resample and cut "
        "it into windows, and write one Parquet file per recording. Refused files are listed "
        "with the reason and the batch goes on; source files are never modified.",
    )
    ingest.add_argument("folder", metavar="DIR", type=Path, help="folder of recordings")
    ingest.add_argument(
        "--manifest", type=Path, help="manifest CSV (file, subject, condition[, session, date])"
    )
    ingest.add_argument("--out", type=Path, help="store root (default: [store] root of the config)")
    ingest.add_argument(
        "--config",
        type=Path,
        help="study configuration TOML (default: the paper's settings, demo study)",
    )
    ingest.add_argument(
        "--recipe", type=Path, action="append", default=[], help="TOML laid over --config"
    )
    ingest.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. --set ingest.windows.hop_s=1.5",
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo",
        help="write the synthetic demo cohort as .acq files (when the inbox is empty) and ingest it",
    )
    demo.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    demo.add_argument(
        "--inbox", type=Path, help="where to write the .acq files (default: [demo] inbox)"
    )
    demo.add_argument("--out", type=Path, help="store root (default: [store] root)")
    demo.add_argument(
        "--layout",
        choices=["per_condition", "one_file_with_markers"],
        help="one file per subject x condition, or one per subject split at its event markers "
        "(default: [demo] layout)",
    )
    demo.add_argument("--no-progress", action="store_true")
    train = sub.add_parser(
        "train",
        help="train and evaluate the configured model on a dataset's stored windows",
        description="Train on the Parquet windows of the configured dataset under the configured "
        "split, keep the epoch that scores best on validation, score the test side, and write "
        "results.json plus a pickle-free checkpoint per fold per seed, and summary.json (mean "
        "and spread over seeds and folds).",
    )
    train.add_argument(
        "--data", type=Path, help="store root or the dataset's store folder (default: [store] root)"
    )
    train.add_argument("--config", type=Path, help="study configuration TOML")
    train.add_argument(
        "--recipe",
        type=Path,
        action="append",
        default=[],
        help="a TOML laid over the config, e.g. configs/recipes/tuned.toml (repeatable)",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. training.weighting=equal (repeatable)",
    )
    train.add_argument(
        "--candidate",
        metavar="NAME=RECIPE[,RECIPE...]",
        action="append",
        default=[],
        help="choose among recipes per fold on inner folds of its training side (never the "
        "test side); repeatable, e.g. --candidate paper= --candidate "
        "tuned=configs/recipes/tuned.toml",
    )
    train.add_argument("--epochs", type=int, help="override [training] epochs")
    train.add_argument(
        "--split", choices=["window", "time_block", "group"], help="override [training] split"
    )
    train.add_argument("--seed", type=int, help="override [training] seed")
    train.add_argument(
        "--seeds", type=int, nargs="+", help="train once per seed and summarise (mean and spread)"
    )
    train.add_argument(
        "--name", help="experiment folder under --out (default: dataset-model-split-time)"
    )
    train.add_argument("--out", type=Path, help="runs folder (default: [training] out_dir)")
    train.add_argument(
        "--max-windows-per-recording",
        type=int,
        help="quick check on the first windows of each recording",
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="reuse each seed already stored under --name with the same configuration, data "
        "and candidates (seeds trained as separate commands), and continue a seed stopped "
        "mid-way after its last epoch; RUN_DIR (<out>/<name> or <out>/<name>/seed<k>) names "
        "the run instead of --out/--name (and --seeds for a seed folder)",
    )
    train.add_argument("--no-progress", action="store_true")

    pretrain = sub.add_parser(
        "pretrain",
        help="self-supervised pre-training of the ECG-SL encoder on stored windows (no labels)",
        description="Pre-train ECG-SL's beat encoder and temporal model on every stored window "
        "of the chosen datasets, labels unused. By default the test side of the configured "
        "split never enters: one encoder per fold, each without its fold's test windows "
        "(--transductive lets them in and marks every result fine-tuned from it). Writes "
        "encoder.pt + encoder.json per fold; fine-tune with --set model.pretrained=FOLDER.",
    )
    pretrain.add_argument("--config", type=Path, help="study configuration TOML")
    pretrain.add_argument("--recipe", type=Path, action="append", default=[])
    pretrain.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[]
    )
    pretrain.add_argument(
        "--data", type=Path, help="store root (default: [store] root of the config)"
    )
    pretrain.add_argument(
        "--objective", choices=["masked_beats", "contrastive"], help="override [pretrain]"
    )
    pretrain.add_argument("--epochs", type=int, help="override [pretrain] epochs")
    pretrain.add_argument(
        "--datasets", nargs="+", help="pool these datasets' stores (default: [pretrain])"
    )
    pretrain.add_argument(
        "--transductive",
        action="store_true",
        help="also read the test side's unlabelled windows (marked in every result)",
    )
    pretrain.add_argument("--seed", type=int, help="override [training] seed")
    pretrain.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="one pre-training per seed, in NAME/seed<k>; fine-tuning seed k then starts from "
        "seed<k>'s encoders (needed for --split window, whose test windows depend on the seed)",
    )
    pretrain.add_argument("--out", type=Path, help="output root (default: [pretrain] out_dir)")
    pretrain.add_argument(
        "--name",
        help="run folder name (default: dataset-objective-seed<k>; with --seeds, "
        "dataset-objective, holding seed<k>/)",
    )
    pretrain.add_argument(
        "--log", action="store_true", help="also log to MLflow and register the encoder"
    )
    pretrain.add_argument(
        "--resume",
        action="store_true",
        help="continue a pre-training of --name stopped mid-way (finished encoders are kept)",
    )
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar")

    servers = sub.add_parser(
        "servers",
        help="start or stop the embedded Prefect and MLflow servers (127.0.0.1)",
        description="start: a Prefect server and an MLflow tracking server on [servers] host and "
        "ports, with SQLite stores under [servers] state_dir and mlflow_dir (reused when already "
        "running); --serve also serves the deployment ingest-train/default in the background "
        "(python -m flows.serve), --watch also runs the inbox watcher. stop: stop exactly the "
        "processes that start started, by pid.",
    )
    servers.add_argument("action", choices=["start", "stop"])
    servers.add_argument(
        "--config",
        type=Path,
        default=Path("configs/demo.toml"),
        help="study configuration TOML (default: configs/demo.toml)",
    )
    servers.add_argument("--serve", action="store_true", help="also serve ingest-train/default")
    servers.add_argument(
        "--watch",
        action="store_true",
        help="also watch the inbox ([watch] folder, else [demo] inbox); implies --serve",
    )

    status = sub.add_parser(
        "status",
        help="what runs (servers, deployment, watcher), where the UIs are, what the store holds",
    )
    status.add_argument("--config", type=Path, default=Path("configs/demo.toml"))

    table = sub.add_parser(
        "table",
        help="print the Markdown table of every summary.json under a folder (e.g. results/)",
    )
    table.add_argument(
        "folder",
        type=Path,
        help="e.g. results (its selection/ runs are left out) or results/selection",
    )
    table.add_argument("--commands", action="store_true", help="also list the command of each row")
    table.add_argument(
        "--validation",
        action="store_true",
        help="the validation accuracy each row's kept epoch scored (what choices are made on), "
        "instead of test scores",
    )
    table.add_argument(
        "--curve",
        type=Path,
        metavar="PNG",
        help="also draw the label-scarcity curve (rows named <base>-labels-<percent>) to PNG",
    )
    table.add_argument(
        "--log-curve",
        metavar="TRACKING_URI",
        help="also log the curve to this MLflow server (experiment label-scarcity)",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved checkpoint on every labelled window of a store",
        description="Score a checkpoint on every window of a store whose subject and condition "
        "the model knows. Point it at a store of new recordings: on the store it was trained "
        "on, its own training windows count too and the figures are inflated (the held-out "
        "figures are in the run's results.json).",
    )
    evaluate.add_argument(
        "checkpoint", type=Path, help="a fold folder holding model.pt and model.json"
    )
    evaluate.add_argument("--data", type=Path, help="store root or the dataset's store folder")
    evaluate.add_argument("--config", type=Path, help="study configuration TOML")

    predict = sub.add_parser(
        "predict",
        help="label new recordings with the registered champion model",
        description="Read each recording with the configuration's [ingest] settings (which must "
        "be the model's), score every window with the registered model <model>-<dataset> "
        '(alias champion, or --model-version), and give per recording the identity ("unknown" '
        "below the threshold calibrated on the validation part) and the activity, each with a "
        "confidence. Writes predictions-<UTC time>.parquet and rejections-<UTC time>.csv under "
        "[predict] out_dir/<dataset> and logs them as an MLflow run (kind=predict). Files that "
        "cannot be read are listed with the reason; recordings are never modified.",
    )
    predict.add_argument(
        "paths", metavar="PATH", nargs="+", type=Path, help="recordings, or folders of them"
    )
    predict.add_argument(
        "--config", type=Path, help="study configuration TOML (the one the model was trained with)"
    )
    predict.add_argument(
        "--model-version", help="use this registered version instead of the champion"
    )
    predict.add_argument(
        "--model",
        type=Path,
        metavar="FOLD_DIR",
        help="a training run's fold folder instead of the registry; when it holds enrolled "
        "people (templates.json: `verify`, `enrol`), identity is the best-scoring enrolled "
        'person or "unknown" below the threshold calibrated on strangers',
    )
    predict.add_argument("--out", type=Path, help="predictions folder (default: [predict] out_dir)")
    predict.add_argument(
        "--no-log", action="store_true", help="write the files only; log nothing to MLflow"
    )
    verify = sub.add_parser(
        "verify",
        help="verification figures of a trained run: held-out records vs people left out",
        description="For each seed and fold of a run trained with [training] holdout_people: "
        "enrol the known people from their training-side recordings, calibrate the 'unknown' "
        "threshold on the first share of the people left out ([verify] stranger_accept_rate), "
        "and score the test-side recordings of known people against the other people left "
        "out: equal error rate, FAR at a fixed FRR, FRR at a fixed FAR, the open-set rates at "
        "the threshold. Writes <[verify] out_dir>/<name>.json and .png, stores the templates "
        "and threshold beside each fold's checkpoint (templates.json) and, with --log, logs "
        "them to MLflow.",
    )
    verify.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="<out>/<name> or a seed folder; several are pooled into one result",
    )
    verify.add_argument("--data", type=Path, help="store root (default: the run's [store] root)")
    verify.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a [verify] setting over the run's stored configuration, e.g. "
        "verify.stranger_accept_rate=0.01 (repeatable)",
    )
    verify.add_argument("--name", help="results file name (default: the run folder's name)")
    verify.add_argument("--log", action="store_true", help="also log to MLflow ([servers])")

    enrol = sub.add_parser(
        "enrol",
        help="add a person to a model's enrolled people from a few recordings, no retraining",
        description="Read each recording as ingest does (the same checks), average the model's "
        "backbone embeddings into one template, and store it in the fold folder's "
        "templates.json with the sha256 of the weights. A person already enrolled is refused "
        "unless --replace; a refused recording leaves everything stored as it was.",
    )
    enrol.add_argument("person", metavar="PERSON", help="the name predict will answer with")
    enrol.add_argument("files", metavar="FILE", nargs="+", type=Path, help="their recordings")
    enrol.add_argument(
        "--model", type=Path, required=True, metavar="FOLD_DIR", help="a training run's fold folder"
    )
    enrol.add_argument(
        "--config", type=Path, help="study configuration TOML (the one the model was trained with)"
    )
    enrol.add_argument("--replace", action="store_true", help="replace a person already enrolled")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # Standard library only (mlflow is imported when a model is loaded): --help stays instant.
    from ecg_pipeline.tracking.registry import ModelNotFoundError

    try:
        if args.command == "ingest":
            return _ingest(
                args.folder,
                args.config,
                args.manifest,
                args.out,
                not args.no_progress,
                recipes=args.recipe,
                overrides=args.overrides,
            )
        if args.command == "demo":
            return _demo(args)
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "pretrain":
            return _pretrain(args)
        if args.command == "table":
            return _table(args)
        if args.command == "servers":
            return _servers(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "enrol":
            return _enrol(args)
        if args.command == "status":
            from ecg_pipeline.config import load_config
            from ecg_pipeline.stack.status import status_lines

            print("\n".join(status_lines(load_config(args.config))))
            return 0
    except (ValueError, OSError, ModelNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an IngestError of the whole batch, e.g. a malformed manifest
        from ecg_pipeline.errors import IngestError

        if not isinstance(exc, IngestError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


def _ingest(
    folder, config_path, manifest, out, progress, *, settled=False, recipes=(), overrides=()
) -> int:
    from ecg_pipeline.config import load_config
    from ecg_pipeline.ingest import ingest_folder
    from ecg_pipeline.report import render_summary

    config = load_config(config_path, recipes=recipes, overrides=overrides)
    if settled:
        # Files we wrote ourselves arrived by atomic rename: complete, nothing to wait for.
        config = config.with_overrides({"discovery.settle_s": 0.0})
    else:
        from ecg_pipeline.cohort.labels import wait_until_settled

        def say(n_files: int, bound_s: float) -> None:
            print(
                f"waiting for {n_files} file(s) modified in the last "
                f"{config.discovery.settle_s:g} s to settle (still being copied?), at most "
                f"{bound_s:g} s ([discovery] command_wait_s)",
                file=sys.stderr,
                flush=True,
            )

        wait_until_settled(folder, config, max_wait_s=config.discovery.command_wait_s, on_wait=say)
    summary = ingest_folder(
        folder, config, manifest=manifest, store_root=out, progress=progress and sys.stderr.isatty()
    )
    print(render_summary(summary))
    _print_quality(summary)
    return ingest_exit_status(summary)


def _print_quality(summary) -> None:
    """The batch's recordings' signal quality, and the whole store's report page."""
    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.tracking.quality_report import (
        quality_table,
        render_short_table,
        write_quality_report,
    )

    store = WindowStore(summary.store_path.parent, summary.dataset)
    page = write_quality_report(store)
    batch = {r.recording_id for r in summary.results if r.recording_id}
    table = quality_table(store.catalog_rows())
    if not table.empty:
        table = table[table["recording_id"].isin(batch)]
    print(render_short_table(table))
    print(f"signal-quality report (whole store): {page}")


# What a script learns from `ecg-pipeline ingest` (2 is a bad configuration or folder).
EXIT_ALL_REFUSED = 1
EXIT_SOME_REFUSED = 3
EXIT_SOME_DEFERRED = 4


def ingest_exit_status(summary) -> int:
    """0 when nothing was refused or deferred; else which (refusals outrank deferrals)."""
    refused, deferred = summary.count("rejected"), summary.count("deferred")
    if summary.results and refused == len(summary.results):
        return EXIT_ALL_REFUSED
    if refused:
        return EXIT_SOME_REFUSED
    return EXIT_SOME_DEFERRED if deferred else 0


def _demo(args) -> int:
    from ecg_pipeline.cohort.demo import write_study_cohort
    from ecg_pipeline.config import load_config

    config = load_config(args.config).with_overrides({"demo.layout": args.layout})
    inbox = args.inbox or config.demo.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    wrote = False
    if any(p.suffix.lower() == ".acq" for p in inbox.iterdir()):
        print(f"inbox {inbox} already holds recordings: ingesting them as they are")
    else:
        wrote = True
        files = write_study_cohort(inbox, config)
        print(f"wrote {len(files)} synthetic .acq recordings to {inbox}")
    return _ingest(inbox, args.config, None, args.out, not args.no_progress, settled=wrote)


def _store_root(data: Path | None, config) -> Path:
    if data is None:
        return config.store.root
    if data.name == config.dataset.name and not (data / config.dataset.name).is_dir():
        return data.parent
    return data


def _train(args) -> int:
    import shlex
    import time

    from ecg_pipeline.config import load_config
    from ecg_pipeline.report import render_experiment
    from ecg_pipeline.training.experiment import run_seeds

    if args.seed is not None and args.seeds:
        raise ValueError("give --seed or --seeds, not both")
    # The shorthand flags go through the same validated path as --set.
    config = load_config(args.config, recipes=args.recipe, overrides=args.overrides)
    config = config.with_overrides(
        {"training.epochs": args.epochs, "training.split": args.split, "training.seed": args.seed}
    )
    seeds = args.seeds or [config.training.seed]
    candidates = {}
    for given in args.candidate:
        label, sep, recipes = given.partition("=")
        if not sep or not label:
            raise ValueError(f"--candidate {given!r}: expected NAME=RECIPE[,RECIPE...]")
        layered = load_config(
            args.config,
            recipes=[*args.recipe, *[r for r in recipes.split(",") if r]],
            overrides=args.overrides,
        )
        candidates[label] = layered.with_overrides(
            {"training.epochs": args.epochs, "training.split": args.split}
        )
    t = config.training
    name = (
        args.name
        or f"{config.dataset.name}-{config.model.name}-{t.split}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = args.out
    if isinstance(args.resume, str):  # --resume RUN_DIR: the run names itself
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise ValueError(f"--resume {run_dir}: no such run folder")
        if run_dir.name.startswith("seed") and run_dir.name[4:].isdigit():
            if not args.seeds and args.seed is None:
                seeds = [int(run_dir.name[4:])]
            run_dir = run_dir.parent
        out, name = run_dir.parent, run_dir.name
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="epoch", desc="train", leave=False)

    def on_epoch(fold: str, row: dict) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{fold} val {row['val_score']:.3f}")

    runs, summary = run_seeds(
        config,
        seeds,
        name=name,
        store_root=_store_root(args.data, config),
        out_dir=out,
        command="ecg-pipeline " + shlex.join(args.argv),
        max_windows_per_recording=args.max_windows_per_recording,
        on_epoch=on_epoch,
        candidates=candidates or None,
        resume=bool(args.resume),
        on_reuse=lambda seed, why: print(f"seed {seed}: {why}", file=sys.stderr),
    )
    if bar is not None:
        bar.close()
    print(render_experiment(runs, summary, config))
    return 0


def _pretrain(args) -> int:
    from ecg_pipeline.config import load_config
    from ecg_pipeline.training.pretrain import pretrain_run, seed_dir

    if args.seeds and args.seed is not None:
        print("error: give --seed or --seeds, not both", file=sys.stderr)
        return 2
    config = load_config(args.config, recipes=args.recipe, overrides=args.overrides)
    config = config.with_overrides(
        {
            "pretrain.objective": args.objective,
            "pretrain.epochs": args.epochs,
            "pretrain.datasets": args.datasets,
            "pretrain.transductive": True if args.transductive else None,
            "training.seed": args.seed,
            "model.name": "ecg_sl",
        }
    )
    bar = None
    if not args.no_progress and sys.stderr.isatty():  # a terminal: a bar; a log: nothing
        from tqdm import tqdm

        bar = tqdm(unit="epoch", desc="pretrain", leave=False)

    def on_epoch(fold: str, row: dict) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{fold} val loss {-row['val_score']:.4f}")

    name = args.name or f"{config.dataset.name}-{config.pretrain.objective}"
    runs = (
        [(config.with_overrides({"training.seed": k}), str(seed_dir(name, k))) for k in args.seeds]
        if args.seeds
        else [(config, args.name)]
    )
    for seed_config, run_name in runs:
        result = pretrain_run(
            seed_config,
            store_root=_store_root(args.data, seed_config),
            out_dir=args.out,
            run_name=run_name,
            resume=args.resume,
            on_epoch=on_epoch,
        )
        print(f"pre-trained {config.pretrain.objective} encoder(s) in {result.out_dir}:")
        for fold, info in result.summary().items():
            seen = "reads its test side (transductive)" if info["sees_test"] else "test side unseen"
            print(
                f"  {fold}: best epoch {info['best_epoch']}, validation loss "
                f"{info['val_loss']:.4f}, {info['n_windows']} windows, {seen}"
            )
        if args.log:
            from ecg_pipeline.tracking.pretrain_log import log_pretraining

            logged = log_pretraining(result, seed_config)
            print(f"MLflow run {logged['run_id']}; registered {logged['model']}")
    if bar is not None:
        bar.close()
    print(
        f"fine-tune from it: --set model.pretrained={result.out_dir.parent if args.seeds else result.out_dir}"
    )
    return 0


def _servers(args) -> int:
    from ecg_pipeline.config import load_config
    from ecg_pipeline.stack import servers

    config = load_config(args.config)
    settings = config.servers
    if args.action == "stop":
        stopped = servers.stop_servers(settings.state_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    try:
        handles = servers.start_stack(
            args.config, settings, serve=args.serve or args.watch, watch=args.watch
        )
        for handle in handles:
            state = "started" if handle.started else "already running"
            print(
                f"{handle.name} {state}: {handle.ui_url} (pid {handle.pid}, log {handle.log_path})"
            )
    except servers.ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.serve or args.watch:
        name = f"ingest-train/{config.flow.deployment}"
        print(
            f"\nin this repository: .venv/bin/prefect deployment run {name} -p epochs=5\n"
            f"elsewhere, first:   export PREFECT_API_URL={settings.prefect_api}"
        )
    return 0


def _table(args) -> int:
    from ecg_pipeline.report import render_results_table
    from ecg_pipeline.training.experiment import load_summary

    # Selection runs (results/selection/: what a choice was made on) are not evaluation rows;
    # they are listed when their own folder is given.
    files = sorted(
        f
        for f in args.folder.rglob("summary.json")
        if f.relative_to(args.folder).parts[0] != "selection"
    )
    if not files:
        print(f"error: no summary.json under {args.folder}", file=sys.stderr)
        return 1
    # Runs that left people out of training (for verification, README "Verifying people")
    # identify fewer people than the table's rows: they are reported there, not here.
    summaries = [
        s
        for s in map(load_summary, files)
        if not s.get("config", {}).get("training", {}).get("holdout_people")
    ]
    if args.validation:
        from ecg_pipeline.report import render_validation_table

        print(render_validation_table(summaries, args.folder))
    else:
        print(render_results_table(summaries))
    if args.commands:
        print()
        for s in summaries:
            print(f"- {s['name']}: `{s['command']}`")
    if args.curve:
        from ecg_pipeline.tracking.curves import write_label_curve

        write_label_curve(summaries, args.curve, tracking_uri=args.log_curve)
    return 0


def _evaluate(args) -> int:
    from ecg_pipeline.config import load_config
    from ecg_pipeline.training.evaluate import evaluate_checkpoint

    config = load_config(args.config)
    report = evaluate_checkpoint(args.checkpoint, config, _store_root(args.data, config))
    for task, m in report.items():
        print(
            f"{task}: accuracy {m['accuracy']:.4f}  F1 macro {m['f1_macro']:.4f}  "
            f"F1 weighted {m['f1_weighted']:.4f}  recording accuracy {m['recording_accuracy']:.4f}  "
            f"({m['n_samples']} windows)"
        )
    return 0


def _predict(args) -> int:
    from ecg_pipeline.config import load_config
    from ecg_pipeline.predict.output import write_predictions
    from ecg_pipeline.predict.predict import predict_recordings
    from ecg_pipeline.tracking.registry import load_champion, registered_model_name

    config = load_config(args.config)
    enrolment = None
    if args.model is not None:
        from ecg_pipeline.predict.enrol import TEMPLATES_FILE, load_enrolment
        from ecg_pipeline.training.model_handle import load_checkpoint_model

        model = load_checkpoint_model(args.model)
        if (args.model / TEMPLATES_FILE).is_file():
            enrolment = load_enrolment(model)
    else:
        model = load_champion(
            config.servers.mlflow_uri, registered_model_name(config), version=args.model_version
        )
    source = str(args.config) if args.config else "(defaults)"
    table, errors = predict_recordings(
        args.paths, config, model, config_source=source, enrolment=enrolment
    )
    files = write_predictions(
        table, errors, args.out or config.predict.out_dir, config.dataset.name
    )
    threshold = model.identity_threshold if enrolment is None else enrolment.threshold_value
    what = "identity threshold" if enrolment is None else "verification threshold (cosine)"
    which = model.describe() if model.version is None else f"{model.name} version {model.version}"
    print(
        f"model {which}, {what} "
        + (f"{threshold:.3f}" if threshold is not None else "none (every recording known)")
    )
    for row in table.itertuples(index=False):
        parts = [
            f"identity {row.identity} (best {row.identity_best}, {row.identity_confidence:.2f})"
            if isinstance(row.identity, str)
            else "",
            f"activity {row.activity} ({row.activity_confidence:.2f})"
            if isinstance(row.activity, str)
            else "",
        ]
        print(f"{row.file}: {'  '.join(p for p in parts if p)}  [{row.n_windows} windows]")
    for e in errors:
        what = "deferred" if e.status == "deferred" else "refused"
        print(f"{e.path}: {what} ({type(e).__name__}): {e.reason}")
    print(f"predictions: {files.predictions}\nrejections: {files.rejections}")
    if not args.no_log:
        from ecg_pipeline.tracking.predict_log import log_predictions

        run = log_predictions(files, config, model_name=model.name, model_version=model.version)
        print(f"mlflow run: {run.run_url}")
    # 1 only when nothing could be predicted: a partial batch is a success with refusals.
    return 1 if errors and table.empty else 0


def _verify(args) -> int:
    import shlex

    from ecg_pipeline.config import parse_override
    from ecg_pipeline.tracking.verify_log import write_verification
    from ecg_pipeline.training.verify_run import verify_experiment

    overrides = {}
    for assignment in args.overrides:
        key = assignment.partition("=")[0].strip()
        if not key.startswith("verify."):
            raise ValueError(f"--set {assignment}: verify takes [verify] settings only")
        overrides[key] = parse_override(assignment)["verify"][key.split(".", 1)[1]]
    results, enrolments, config = verify_experiment(
        args.runs,
        store_root=args.data,
        overrides=overrides,
        command="ecg-pipeline " + shlex.join(args.argv),
    )
    if args.name is None and len(args.runs) > 1:
        raise ValueError("several RUN_DIRs: name the pooled result with --name")
    name = args.name or args.runs[0].name
    files = write_verification(results, enrolments, config.verify.out_dir, name)
    s = results["summary"]
    print(
        f"{results['dataset']} {results['model']}, {results['n_runs']} run(s), "
        f"{results['n_folds']} fold(s), {results['holdout_people']} people left out:\n"
        f"  EER {s['eer']:.1%} (sd {s['eer_std']:.1%}); FAR at FRR {results['verify']['fixed_frr']:g}"
        f": {s['far_at_fixed_frr']:.1%}; FRR at FAR {results['verify']['fixed_far']:g}: "
        f"{s['frr_at_fixed_far']:.1%}\n"
        f"  at the threshold (mean {s['threshold']:.3f}): strangers accepted "
        f"{s['stranger_accepted']:.1%}, known people refused {s['known_rejected']:.1%}, taken "
        f"for someone else {s['known_misidentified']:.1%}; training recordings refused "
        f"{s['training_recordings_refused']:.1%}"
    )
    print("\n".join(f"wrote {f}" for f in files))
    print(f"templates and threshold stored beside {len(enrolments)} checkpoint(s)")
    if args.log:
        from ecg_pipeline.tracking.verify_log import log_verification

        print(f"mlflow run: {log_verification(results, files, config)}")
    return 0


def _enrol(args) -> int:
    import time

    from ecg_pipeline.config import load_config
    from ecg_pipeline.predict.enrol import enrol_person
    from ecg_pipeline.training.model_handle import load_checkpoint_model

    config = load_config(args.config)
    model = load_checkpoint_model(args.model)
    start = time.perf_counter()
    enrolment = enrol_person(args.person, args.files, config, model, replace=args.replace)
    took = time.perf_counter() - start
    threshold = enrolment.threshold_value
    print(
        f"enrolled {args.person} from {len(args.files)} recording(s) in {took:.2f} s into "
        f"{enrolment.path} ({len(enrolment.people)} people; threshold "
        + (f"{threshold:.3f})" if threshold is not None else "not calibrated: run verify)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
