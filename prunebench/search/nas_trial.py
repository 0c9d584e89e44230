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

import torch

from prunebench.config import TrainConfig
from prunebench.models import load_model
from prunebench.search.objectives import CostObjectives, ObjectiveSettings
from prunebench.supernet import MaskedSuperNetwork, get_space
from prunebench.supernet.strategies import FULL
from prunebench.supernet.training import epoch_order, make_optimizer, start_at_label_mean, train_step
from prunebench.tasks import make_collator
from prunebench.tasks.rows import EvalSplit, load_run_task, tokenised_rows, validation_rows


def train_trial(config: dict, settings: dict, report) -> None:
    train = TrainConfig.from_dict(settings["train"])
    torch.set_num_threads(train.threads or 1)
    torch.manual_seed(train.seed)
    data = load_run_task(train)
    spec = data.spec
    loaded = load_model(train.model, task_kind=spec.kind, num_labels=spec.num_labels, seed=train.seed)
    space = get_space(train.space, loaded.dims, train.round_units)
    masks = space.masks({key: int(config[key]) for key in space.ranges})
    objectives = ObjectiveSettings(names=tuple(settings["objectives"]), seq_len=settings["seq_len"])
    costs = CostObjectives(loaded, objectives)(masks)
    rows = tokenised_rows(data, loaded, train.max_length)
    start_at_label_mean(loaded, rows["train"])  # as the super-network trainer does
    collator = make_collator(spec, loaded.tokenizer)
    validation = EvalSplit.of(spec, validation_rows(rows, train), collator)
    test = EvalSplit.of(spec, rows["test"], collator) if settings.get("score_test") and rows["test"] else None
    supernet = MaskedSuperNetwork(loaded)
    model = loaded.model
    steps_per_epoch = math.ceil(len(rows["train"]) / train.batch_size)
    optimizer, scheduler = make_optimizer(model, train, steps_per_epoch * train.epochs)
    device = torch.device("cpu")
    for epoch in range(1, train.epochs + 1):
        for indices in epoch_order(len(rows["train"]), train.batch_size, train.seed, epoch):
            batch = collator([rows["train"][i] for i in indices])
            # the standard strategy (the full network of the plan) under the trial's fixed sub-network
            train_step(
                model, supernet, [FULL], lambda _: masks, batch, optimizer, scheduler, spec.kind, train.temperature
            )
        metrics = validation.score(model, device)  # the trial's masks stay applied
        values = {"epoch": epoch, "metric": metrics["metric"], **costs.normalised, "error": metrics["error"]}
        if test is not None:
            scores = test.score(model, device)
            values |= {"test_metric": scores["metric"], "test_error": scores["error"]}
        report(**values)


def main() -> None:
    from syne_tune import Reporter  # syne-tune starts this script; importing it here keeps the module light
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
