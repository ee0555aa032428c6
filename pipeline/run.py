"""The whole run, and the experiment scripts' entry point: flags -> config -> checks -> data -> run."""
from __future__ import annotations

import argparse
import time
from typing import Callable, Sequence

import tensorflow as tf

from data.errors import InputError, run_cli
from evaluation import format_table, write_report
from pipeline.config import RunConfig, build_run_config, given_flags
from pipeline.evaluate import evaluate, write_benchmark_submission
from pipeline.rounds import RoundModels, enhance_training_set, train_round
from pipeline.state import RunState, check_out_dir, remove_earlier_run
from pipeline.streams import RunData
from utils import folder_lock, get_strategy, setup_logging


def run(cfg: RunConfig, data: RunData, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train every round, evaluate every stage, write the report; returns the report.

    `strategy`: made by `main` before any TF op runs (MultiWorkerMirroredStrategy must
    be created at program start); None: `get_strategy(cfg.strategy)` here. The run holds
    `--out_dir`'s lock from start to end, so a second run into the same folder is refused.
    """
    cfg = cfg.for_data(data.colour)
    tf.config.experimental.enable_op_determinism()
    strategy = strategy or get_strategy(cfg.strategy)
    created = not cfg.out_dir.exists()
    try:
        with folder_lock(cfg.out_dir, "--out_dir"):
            if cfg.overwrite:
                remove_earlier_run(cfg)
            state = RunState.open(cfg.out_dir, cfg.resume, cfg.record())
            try:
                report, rounds = _train_and_evaluate(cfg, data, state, strategy)
            except InputError:
                if not cfg.resume and not state.done:  # bad data found before any phase finished
                    remove_earlier_run(cfg)
                raise
    finally:
        if created and cfg.out_dir.is_dir() and not any(cfg.out_dir.iterdir()):
            cfg.out_dir.rmdir()
    print(format_table(report["stages"], ["stage", "psnr", "ssim", "uqi", "eq_error", "seconds_per_image"],
                       title=f"RSE-RL on {data.description}"))
    finetuning = report.get("finetune_check")
    if finetuning and not finetuning["kept"]:
        print(f"round 0: fine-tuning lowered PSNR on held-out training pairs, so the VAE is the --init_from model "
              f"({cfg.init_from}) as it was (results.json: finetune_check)")
    for r, models in enumerate(rounds):
        if not models.use_agent:
            print(f"round {r}: the agent lowered PSNR on held-out training pairs and was dropped; "
                  f"this round filtered with the VAE alone (results.json: agent_checks)")
        if not models.kept:
            later = f"; rounds {r + 1}..{cfg.recursions} were not trained" if r < cfg.recursions else ""
            print(f"round {r}: it lowered PSNR on held-out training pairs and was not applied, so its row repeats "
                  f"round {r - 1}'s (results.json: round_checks){later}")
    print(f"results: {cfg.out_dir / 'results.json'}")
    return report


def _train_and_evaluate(cfg: RunConfig, data: RunData, state: RunState,
                        strategy: tf.distribute.Strategy) -> tuple[dict, list[RoundModels]]:
    started = time.perf_counter()
    rounds: list[RoundModels] = []
    for r in range(cfg.recursions + 1):
        rounds.append(train_round(cfg, data, r, state, rounds[-1] if rounds else None, strategy))
        if not rounds[-1].kept:  # it lost to the round before it: later rounds would build on nothing
            break
        if r < cfg.recursions:
            enhance_training_set(cfg, data, r, rounds[-1], state)
    train_seconds = time.perf_counter() - started
    report = evaluate(cfg, data, rounds)
    report["timings"] = {"train_seconds": train_seconds, "total_seconds": time.perf_counter() - started}
    report["config"] = state.config["flags"]
    report["configs"] = state.config["configs"]
    report["data"] = data.description
    report["agent_checks"] = {f"round{r}": state.done.get(f"round{r}/agent_check") for r in range(len(rounds))}
    report["finetune_check"] = state.done.get("round0/finetune_check")
    report["round_checks"] = {f"round{r}": state.done.get(f"round{r}/round_check") for r in range(1, len(rounds))}
    if data.benchmark_blocks is not None:
        report["submission"] = str(write_benchmark_submission(cfg, data, rounds))
    write_report(cfg.out_dir, report)
    return report, rounds


def main(build_data: Callable[[argparse.Namespace], RunData], parser: argparse.ArgumentParser,
         defaults: dict, argv: Sequence[str] | None = None,
         validate_dataset: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Entry point of the experiment scripts: flags, checks, run; one-line errors and exit codes.

    The dataset script's `validate_dataset` and `build_data` get the effective flags as a
    namespace (with `noise_config`); everything below them gets the `RunConfig`.
    """
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def start() -> None:
        cfg = build_run_config(args, defaults, given_flags(parser, argv))
        check_out_dir(cfg)
        flags = argparse.Namespace(**cfg.flags, noise_config=cfg.noise)
        if validate_dataset is not None:
            validate_dataset(flags)
        strategy = get_strategy(cfg.strategy)  # before build_data runs TF ops (multi-worker needs it first)
        data = build_data(flags)
        try:
            run(cfg, data, strategy)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"finished phases and the last VAE epoch checkpoint are saved in {cfg.out_dir}; "
                                    f"rerun the same command with --resume to continue") from None

    return run_cli(start)
