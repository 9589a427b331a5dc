"""``spam-tune`` command line: one small function per subcommand, each wiring library functions.

spam-tune train    --config configs/lora.yaml [key=value ...]   (same as train.py)
spam-tune prepare  --config configs/lora.yaml DIR                (data only: split CSVs + summary)
spam-tune predict  MODEL_DIR "text" ... | --file IN [--out OUT]   (JSON lines out, or CSV/JSONL/parquet)
spam-tune serve    MODEL_DIR [--port 8000 ...]                   (HTTP server, TEI-compatible /predict)
spam-tune evaluate RUN_OR_MODEL_DIR [--split test | --data FILE] (metrics, plots, report of a saved model)
spam-tune config   --config configs/lora.yaml [key=value ...]   (print the resolved config)
spam-tune keys                                                   (every config key, type, default)
spam-tune merge    MODEL_DIR --out DIR [--dtype float32]           (fold a LoRA/QLoRA adapter into its base)
spam-tune export   MODEL_DIR --onnx [--out DIR]                    (add model.onnx, for serve --backend onnxruntime)
spam-tune push     MODEL_OR_RUN_DIR --repo-id USER/NAME [--dry-run OUT_DIR]  (upload to the Hugging Face Hub)
spam-tune search   --config configs/lora.yaml --trials 20 [...]   (Optuna on validation; prints the best overrides)
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config import (
    MULTI_LABEL_READER_KEYS,
    READER_KEYS,
    RunConfig,
    config_keys,
    load_config,
    reader_overrides,
)
from pipeline.errors import SpamTuneError, TrainingInterrupted
from pipeline.launch import first_to_report
from pipeline.rundir import RESUME_FLAG
from pipeline.serve.cli_args import add_predict_file_arguments, add_serve_arguments

log = logging.getLogger("spam_tune")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML recipe, e.g. configs/lora.yaml (default: built-in defaults)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. training.learning_rate=1e-4"
    )


def _config(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config, args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.commands.train import run
    from pipeline.launch import launch_id, stop_with_the_launcher

    stop_with_the_launcher()  # a DDP worker must not outlive its launcher (kill -9 of the launch)
    launch_id()  # which launch this is, read while its launcher lives (see first_to_report)

    # Worked out now: under `accelerate launch` the launcher may be gone by the time a signal has stopped training.
    resume_hint = resume_command()
    try:
        result = run(_config(args))
    except TrainingInterrupted as err:
        err.resume_hint = resume_hint
        raise
    test = result.metrics.get("test")
    if test and _is_main_process():
        print(f"test accuracy {test['accuracy']:.4f}  f1 {test['f1']:.4f}  ->  {result.run_dir.root}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.data.split import load_splits, write_split_csvs
    from pipeline.fileio import write_json

    cfg = _config(args)
    splits, summary = load_splits(cfg.data)
    out = Path(args.out)
    write_split_csvs(splits, out, cfg.data if cfg.data.is_multi_label else None)
    write_json(out / "summary.json", summary.to_dict())
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.file:
        from pipeline.serve.predict_file import run_file_command

        return run_file_command(args)
    from pipeline.serve.classifier import Classifier

    texts = list(args.texts)
    if args.reading:
        raise SpamTuneError(f"{args.reading[0]} says how to read --file FILE; pass one, or give the texts alone")
    if args.out:
        raise SpamTuneError("--out needs --file IN; texts given as arguments are printed as JSON lines")
    if not texts:
        raise SpamTuneError("nothing to classify; pass texts as arguments or --file FILE")
    classifier = Classifier(
        args.model_dir, batch_size=args.batch_size, device=args.device, backend=args.backend, dtype=args.dtype
    )
    for prediction in classifier.predict(texts):
        print(json.dumps(prediction.to_dict(), ensure_ascii=False))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.commands.evaluate import evaluate_saved_model, format_table

    keys = (*READER_KEYS, *MULTI_LABEL_READER_KEYS)  # the multi-label ones are refused for a single-label model
    reading = reader_overrides(args.reading, keys, command="spam-tune evaluate")
    if reading and not args.data:
        raise SpamTuneError("data.* reading options apply to --data FILE; a run's saved splits are read as written")
    if args.format and "format" in reading:
        raise SpamTuneError("pass --format or data.format=..., not both")
    result, out = evaluate_saved_model(
        args.target,
        split=args.split,
        data=args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        data_format=args.format,
        reading=reading,
        out=args.out,
        batch_size=args.batch_size,
    )
    print(format_table(result))
    print(f"-> {out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(_config(args).to_yaml(), end="")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from pipeline.export.merge import merge_folder

    print(merge_folder(args.model_dir, args.out, dtype=args.dtype))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export.onnx import export_onnx

    print(export_onnx(args.model_dir, args.out))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from pipeline.export import push

    push.check_repo_id(args.repo_id)  # even a dry run says so now, not at the real push
    if args.dry_run:
        print(push.stage_upload(Path(args.target), Path(args.dry_run), merged=args.merged))
        return 0
    url = push.push_model(
        Path(args.target),
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        merged=args.merged,
    )
    print(url)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.commands.search import SearchSpace, format_search, run_search, write_search

    cfg = _config(args)
    space = SearchSpace.around(
        cfg, learning_rate=args.lr, epochs=args.epochs, batch_sizes=args.batch_sizes, ranks=args.ranks
    )
    result = run_search(cfg, space, n_trials=args.trials, metric=args.metric)
    out = write_search(result, Path(args.out) if args.out else Path(cfg.output.dir) / "search.json")
    print(format_search(result))
    print(f"-> {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.serve.cli_args import settings_from_args
    from pipeline.serve.server import serve

    return serve(args.model_dir, settings_from_args(args))


def cmd_keys(args: argparse.Namespace) -> int:
    for key, type_name, default in config_keys():
        print(f"{key:40s} {type_name:45s} {default!r}")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "train": (cmd_train, "fine-tune and evaluate (works under `accelerate launch`)"),
    "prepare": (cmd_prepare, "download, clean, balance and split the data; write the split CSVs"),
    "predict": (cmd_predict, "classify texts with a saved model dir; prints JSON lines"),
    "evaluate": (cmd_evaluate, "metrics, plots and a report for a saved model on a run's split or a data file"),
    "config": (cmd_config, "print the resolved config (YAML + overrides)"),
    "keys": (cmd_keys, "list every config key with its type and default"),
    "merge": (cmd_merge, "fold a LoRA/QLoRA run's adapter into its base: a standalone model dir"),
    "export": (cmd_export, "add model.onnx to a full or merged model dir, for serve/predict --backend onnxruntime"),
    "push": (cmd_push, "upload a model (with its card, metrics, report, plots) to the Hugging Face Hub"),
    "search": (cmd_search, "Optuna over learning rate, epochs, batch size (and LoRA rank), on validation only"),
    "serve": (cmd_serve, "HTTP server: TEI-compatible /predict with dynamic batching, demo page, /metrics"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spam-tune", description="Fine-tune GPT-2 style models to classify text.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        if name in ("train", "prepare", "config", "search"):
            _add_config_args(cmd)
        if name == "prepare":
            cmd.add_argument("--out", required=True, help="directory for train/validation/test CSVs")
        if name == "predict":
            cmd.add_argument("model_dir", help="a saved model dir, e.g. runs/lora/model")
            cmd.add_argument("texts", nargs="*", help="texts to classify")
            cmd.set_defaults(reading=[])  # data.KEY=VALUE words anywhere on the line (see parse_command_line)
            add_predict_file_arguments(cmd)
            cmd.add_argument("--batch-size", type=int, default=32)
        if name == "evaluate":
            cmd.add_argument("target", metavar="MODEL_OR_RUN_DIR", help="a run dir (runs/lora) or a model dir")
            cmd.set_defaults(reading=[])  # data.KEY=VALUE words anywhere on the line (see parse_command_line)
            which = cmd.add_mutually_exclusive_group()
            which.add_argument("--split", choices=["train", "validation", "test"], help="a saved split (default: test)")
            which.add_argument("--data", help="a labeled file: CSV/TSV with a header, JSON lines, parquet, UCI TSV")
            cmd.add_argument("--text-column", help="column of the texts in --data (default: the run's)")
            cmd.add_argument("--label-column", help="column of the labels in --data (default: the run's)")
            cmd.add_argument(
                "--format",
                choices=["auto", "uci", "csv", "tsv", "jsonl", "parquet"],
                help="format of --data (default: by extension; uci = label<TAB>text without header)",
            )
            cmd.add_argument("--out", help="output dir (default: RUN/eval/SPLIT or RUN/eval/FILE_STEM)")
            cmd.add_argument("--batch-size", type=int, default=32)
        if name == "search":
            cmd.add_argument("--trials", type=int, default=10, help="Optuna trials, one trained model each")
            cmd.add_argument("--lr", type=float, nargs=2, metavar=("LOW", "HIGH"), help="default: recipe lr /3 .. x3")
            cmd.add_argument("--epochs", type=int, nargs=2, metavar=("LOW", "HIGH"), help="default: 1 .. recipe's")
            cmd.add_argument("--batch-sizes", type=int, nargs="+", help="default: 8 16 32")
            cmd.add_argument("--ranks", type=int, nargs="+", help="LoRA ranks (lora/qlora; default: the recipe's)")
            cmd.add_argument(
                "--metric",
                default="loss",
                help="validation metric to optimise: loss, f1, accuracy, precision, recall; multi-label recipes "
                "also macro_f1, samples_f1, hamming_loss (lower is better for loss and hamming_loss)",
            )
            cmd.add_argument("--out", help="result JSON (default: OUTPUT_DIR/search.json)")
        if name == "merge":
            cmd.add_argument("model_dir", help="model dir of a LoRA/QLoRA run, e.g. runs/lora/model")
            cmd.add_argument("--out", required=True, help="new directory for the merged model")
            cmd.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
        if name == "export":
            cmd.add_argument("model_dir", help="a full or merged model dir (or its run dir), e.g. runs/full/model")
            # The only format so far; the flag names it so that the command can take others later.
            cmd.add_argument("--onnx", action="store_true", required=True, help="write model.onnx (ONNX Runtime)")
            cmd.add_argument("--out", help="write a copy with model.onnx here (default: add it to MODEL_DIR)")
        if name == "push":
            _add_push_args(cmd)
        if name == "serve":
            add_serve_arguments(cmd)
    return parser


def _add_push_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("target", metavar="MODEL_OR_RUN_DIR", help="a run dir (runs/lora) or its model dir")
    cmd.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub (your user or one of your orgs)")
    visibility = cmd.add_mutually_exclusive_group()
    visibility.add_argument(
        "--private", dest="private", action="store_true", default=True, help="create the repo private (default)"
    )
    visibility.add_argument("--public", dest="private", action="store_false", help="create the repo public")
    cmd.add_argument("--revision", help="branch to commit to; created from main if missing (default: main)")
    cmd.add_argument("--merged", action="store_true", help="LoRA/QLoRA: upload the adapter merged into its base")
    cmd.add_argument("--commit-message", default="Upload spam-tune model", help="the commit's summary line")
    cmd.add_argument("--dry-run", metavar="OUT_DIR", help="write the exact folder to upload here; upload nothing")


def _is_main_process() -> bool:
    # Set by torchrun / accelerate launch; absent in a plain single-process run.
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging() -> None:
    main_process = _is_main_process()
    # force=True: re-bind to the current stderr when main() runs more than once in one process.
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # huggingface_hub's HTTP client logs every request at INFO; a push should print its result, not 5 URLs.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    import transformers

    # transformers' INFO chatter (every file saved) buries our summary lines; its warnings stay.
    transformers.utils.logging.set_verbosity(logging.WARNING if main_process else logging.ERROR)


def train_script(argv: list[str]) -> int:
    """``train.py``: under ``accelerate launch --num_processes N --cpu`` first start the N DDP workers."""
    from pipeline.launch import maybe_relaunch_cpu_ddp, use_cpu_cores, write_past_the_launcher_tee

    write_past_the_launcher_tee()  # before anything is printed: the last lines must outlive the launcher
    try:
        # A bad config fails here, once, before any worker starts (each worker would print the same error).
        code = maybe_relaunch_cpu_ddp(argv, preflight=lambda: _config(build_parser().parse_args(["train", *argv])))
    except SpamTuneError as err:
        return report_error(err)
    if code is not None:
        return code
    use_cpu_cores()
    return main(["train", *argv])


def report_error(err: SpamTuneError) -> int:
    """Print the one-line message (once: by the first process to fail; every rank hit the same input) -> exit code."""
    if first_to_report():
        if isinstance(err, TrainingInterrupted):
            print(f"interrupted: {err}; to resume, run: {err.resume_hint or resume_command()}", file=sys.stderr)
        else:
            print(f"error: {err}", file=sys.stderr)
    return err.exit_code


def resume_command(argv: list[str] | None = None) -> str:
    """The command that started this run, with ``training.resume_from_checkpoint=true`` (what to run to continue)."""
    import shlex

    from pipeline.launch import launcher_command_line

    argv = sys.argv if argv is None else argv
    launcher = launcher_command_line()
    if launcher is not None:  # under `accelerate launch`: the user typed that, not our script's argv
        words = ["accelerate", "launch", *launcher]
    elif argv[0].endswith(".py"):
        words = ["python", argv[0], *argv[1:]]
    else:
        words = [Path(argv[0]).name, *argv[1:]]
    kept = [w for w in words if not w.startswith("training.resume_from_checkpoint=")]
    return shlex.join([*kept, RESUME_FLAG])


READING_WORD = re.compile(r"[a-z_]+\.[a-z_]+=")
"""``data.encoding=latin-1`` and the like: how ``evaluate --data`` and ``predict --file`` read their file (other
``section.key=value`` words are caught too, to be refused with the list of the keys these commands take)."""


def parse_command_line(argv: list[str] | None) -> argparse.Namespace:
    """argparse, plus the file-reading words of ``evaluate`` and ``predict`` wherever they stand on the line.

    argparse fills a positional list only from one run of words, so ``evaluate RUN --data F data.encoding=X``
    would leave ``data.encoding=X`` unrecognized; those commands take such words anywhere (as training does).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "reading") or not all(READING_WORD.match(word) for word in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(args, "reading"):
        texts = getattr(args, "texts", [])
        if getattr(args, "file", None):  # predict --file: reading words among the positional ones are options
            args.texts = [t for t in texts if not READING_WORD.match(t)]
            extra = [*(t for t in texts if READING_WORD.match(t)), *extra]
        args.reading = extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(argv)
    setup_logging()
    try:
        return args.func(args)
    except SpamTuneError as err:
        return report_error(err)
    except KeyboardInterrupt:
        # Ctrl-C outside training (which stops at a step boundary by itself): a line, not a traceback.
        if first_to_report():
            print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # Every output is written aside and renamed, so what exists is whole; a training run resumes.
        if first_to_report():
            where = f" writing {err.filename}" if err.filename else ""
            print(
                f"error: disk full{where}; free some space and rerun (a training run: add {RESUME_FLAG})",
                file=sys.stderr,
            )
        return 2


def entry() -> None:
    """The ``spam-tune`` script: :func:`main`, then a quick process exit (see :mod:`pipeline.commands.process_exit`)."""
    from pipeline.commands.process_exit import finish

    finish(main())


if __name__ == "__main__":
    entry()
