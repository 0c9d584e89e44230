"""Does super-network training keep sub-networks good? `standard` vs `full` on a real task.

Fine-tunes the real ``minilm`` with ``standard`` (plain fine-tuning) and with ``full``
(sandwich + in-place distillation) on Rotten Tomatoes (CPU; pass ``--task sst2
--data-dir ../shared/data/glue --device cuda`` where a GPU is lent), then scores
``small``-space sub-networks at about 25%, 50%, 75% and 100% of the encoder parameters
on the test split. For each fraction three shapes are tried (fewer layers, narrower
layers, both); the one with the best validation metric is reported, for each checkpoint
alike. Target (issue 3): with ``full``, the 50% sub-network loses at most 5% relative
accuracy against the un-pruned ``standard`` model.

    python benchmarks/supernet_quality.py --strategy standard   # the two runs can go in parallel,
    python benchmarks/supernet_quality.py --strategy full       # one thread each
    python benchmarks/supernet_quality.py --report              # joins both into the JSON
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from prunebench.config import TrainConfig
from prunebench.environment import environment
from prunebench.models import load_model
from prunebench.rundir import RunDir, read_run
from prunebench.supernet import CostModel, MaskedSuperNetwork, get_space
from prunebench.supernet.training import train_supernet
from prunebench.tasks import make_collator
from prunebench.tasks.rows import EvalSplit, load_run_task, tokenised_rows

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
RESULTS = Path(__file__).parent / "results"


def score_run(run_dir: Path, max_selection_examples: int) -> list[dict]:
    run = read_run(run_dir)
    config = TrainConfig.from_dict(run["train"])
    data = load_run_task(config)
    loaded = load_model(RunDir(run_dir).checkpoint, task_kind=data.spec.kind, num_labels=data.spec.num_labels)
    rows = tokenised_rows(data, loaded, config.max_length)
    collator, supernet = make_collator(data.spec, loaded.tokenizer), MaskedSuperNetwork(loaded)
    selection = EvalSplit.of(data.spec, rows["validation"][:max_selection_examples], collator)
    test_split = EvalSplit.of(data.spec, rows["test"], collator)
    space, cost = get_space("small", loaded.dims), CostModel.for_model(loaded)
    device = torch.device("cpu")
    results = []
    for fraction in FRACTIONS:
        scored = []
        shapes = space.SHAPES if fraction < 1.0 else ("depth",)  # at 100% every shape is the full network
        for shape in shapes:
            sub_config = space.at_fraction(fraction, shape)
            masks = space.masks(sub_config)
            with supernet.masked(masks):
                validation = selection.score(loaded.model, device)
            scored.append((validation["metric"], shape, sub_config, masks))
        validation_metric, shape, sub_config, masks = max(scored, key=lambda item: item[0])
        with supernet.masked(masks):
            test = test_split.score(loaded.model, device)
        results.append(
            {
                "strategy": config.strategy,
                "target_fraction": fraction,
                "shape": shape,
                "config": sub_config,
                "encoder_parameter_fraction": cost.encoder_fraction(masks),
                "parameter_fraction": cost.relative_parameters(masks),
                "validation_metric": validation_metric,
                "test": test,
                "candidates_validation": {s: m for m, s, _, _ in scored},
            }
        )
        print(f"{config.strategy:8s} {fraction:.2f} {shape:5s} test {data.spec.metric} {test['metric']:.4f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["standard", "full"])
    parser.add_argument("--report", action="store_true", help="join both runs' scores into the JSON")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-quality"))
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-train-examples", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-selection-examples", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.report:
        scores = [json.loads((args.runs / f"{s}.scores.json").read_text()) for s in ("standard", "full")]
        base = next(r for r in scores[0]["subnetworks"] if r["target_fraction"] == 1.0)["test"]["metric"]
        half = next(r for r in scores[1]["subnetworks"] if r["target_fraction"] == 0.5)["test"]["metric"]
        report = {
            "benchmark": "supernet_quality",
            "measured": "test metric of small-space sub-networks (masked super-network, shared weights)",
            "runs": scores,
            "unpruned_standard_metric": base,
            "full_half_metric": half,
            "relative_loss_at_half": (base - half) / base,
            "target": "full's 50% sub-network loses at most 5% relative accuracy against un-pruned standard",
            "target_met": (base - half) / base <= 0.05,
            "environment": environment(),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "supernet_quality.json").write_text(json.dumps(report, indent=2))
        print(f"relative loss at 50%: {report['relative_loss_at_half']:.3%} (target met: {report['target_met']})")
        return
    config = TrainConfig(
        model="minilm",
        task=args.task,
        data_dir=args.data_dir,
        space="small",
        strategy=args.strategy,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_train_examples=args.max_train_examples,
        max_length=args.max_length,
        device=args.device,
        max_eval_examples=1000,
        threads=1,
    )
    run_dir = args.runs / args.strategy
    started = time.time()
    resume = RunDir(run_dir).is_run()
    result = train_supernet(config, run_dir, resume=resume)
    log = pd.read_parquet(RunDir(run_dir).training_log)
    scores = {
        "strategy": args.strategy,
        "train_config": config.to_dict(),
        "device": args.device,
        "threads": 1,
        "seconds_per_epoch": log.groupby("epoch")["epoch_seconds"].first().tolist(),
        "training_log": log.to_dict(orient="records"),
        "wall_time_s": time.time() - started,
        "steps": result.step,
        "subnetworks": score_run(run_dir, args.max_selection_examples),
    }
    (args.runs / f"{args.strategy}.scores.json").write_text(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
