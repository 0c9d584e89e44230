"""One standard-NAS trial: fine-tune one sub-network in isolation and report after every epoch.

Run by syne-tune's local backend as ``python nas_trial.py --st_config_json_filename FILE ...``.
The config holds the sub-network's hyperparameters and ``settings``, the path of the NAS
run's settings file (training config, space, objectives). The model starts from the
pre-trained weights with a fresh head; the sub-network's masks stay applied for training and
evaluation (pruned heads and units get no gradient, dropped layers are skipped). Each epoch
reports the normalised objectives (``objectives.py``), the validation metric and, when asked,
the test-split metric, so a trial stopped early by MO-ASHA has test numbers for its last epoch.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch


def train_trial(config: dict, settings: dict, report) -> None:
    from transformers import get_linear_schedule_with_warmup

    from prunebench.config import TrainConfig
    from prunebench.models import load_model
    from prunebench.search.objectives import CostObjectives, ObjectiveSettings
    from prunebench.supernet import MaskedSuperNetwork, get_space
    from prunebench.supernet.evaluation import predict
    from prunebench.supernet.losses import task_loss
    from prunebench.supernet.training import load_training_task, tokenised_rows
    from prunebench.tasks import compute_metrics, make_collator

    train = TrainConfig.from_dict(settings["train"])
    torch.set_num_threads(train.threads or 1)
    torch.manual_seed(train.seed)
    data = load_training_task(train)
    spec = data.spec
    loaded = load_model(train.model, task_kind=spec.kind, num_labels=spec.num_labels, seed=train.seed)
    space = get_space(train.space, loaded.dims)
    masks = space.masks({key: int(config[key]) for key in space.ranges})
    objectives = ObjectiveSettings(names=tuple(settings["objectives"]), seq_len=settings["seq_len"])
    costs = CostObjectives(loaded, objectives)(masks)
    rows = tokenised_rows(data, loaded, train.max_length)
    validation = rows["validation"]
    if train.max_eval_examples is not None and len(validation) > train.max_eval_examples:
        keep = np.random.default_rng(train.seed).permutation(len(validation))[: train.max_eval_examples]
        validation = [validation[i] for i in sorted(keep)]
    collator = make_collator(spec, loaded.tokenizer)
    supernet = MaskedSuperNetwork(loaded)
    supernet.apply(masks)
    model = loaded.model
    steps_per_epoch = math.ceil(len(rows["train"]) / train.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(train.warmup_ratio * steps_per_epoch * train.epochs), steps_per_epoch * train.epochs
    )
    device = torch.device("cpu")
    for epoch in range(1, train.epochs + 1):
        model.train()
        generator = torch.Generator().manual_seed(train.seed * 100_003 + epoch)
        order = torch.randperm(len(rows["train"]), generator=generator).tolist()
        for start in range(0, len(order), train.batch_size):
            batch = collator([rows["train"][i] for i in order[start : start + train.batch_size]])
            labels = batch.pop("labels")
            optimizer.zero_grad(set_to_none=True)
            task_loss(model(**batch).logits, labels, spec.kind).backward()
            optimizer.step()
            scheduler.step()
        metrics = compute_metrics(spec, *predict(model, validation, collator, device))
        values = {"epoch": epoch, "metric": metrics["metric"], **costs.normalised, "error": metrics["error"]}
        if settings.get("score_test") and rows["test"]:
            test = compute_metrics(spec, *predict(model, rows["test"], collator, device))
            values |= {"test_metric": test["metric"], "test_error": test["error"]}
        report(**values)


def main() -> None:
    from syne_tune import Reporter
    from syne_tune.utils import add_config_json_to_argparse, load_config_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_json_to_argparse(parser)
    parser.add_argument("--st_checkpoint_dir", default=None)  # passed by the backend; trials keep no checkpoints
    args, _ = parser.parse_known_args()
    config = load_config_json(vars(args))
    settings = json.loads(Path(config["settings"]).read_text())
    train_trial(config, settings, Reporter())


if __name__ == "__main__":
    main()
