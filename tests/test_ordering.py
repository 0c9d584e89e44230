"""Importance-ordered super-networks: reordering is exact, the importance score finds what matters, and
training with ``order_by_importance`` orders, stores, resumes and extracts."""

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers import GLUE_DATA, TINY_MODELS, TINY_TRAIN, ForkedCli, make_tiny_run, run_cli
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.models import load_model
from prunebench.models.adapters import RobertaAdapter
from prunebench.rundir import RunDir, read_run
from prunebench.supernet import get_space
from prunebench.supernet.importance import gradient_importance, importance_order, reorder
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.training import SupernetTrainer, read_checkpoint_meta, read_importance_orders, train_supernet
from prunebench.tasks import get_task, make_collator


def _sentence_pairs(count: int = 12) -> pd.DataFrame:
    """Real RTE sentence pairs with their labels (the packaged GLUE sample)."""
    frame = pd.read_csv(GLUE_DATA / "RTE" / "train.tsv", sep="\t", quoting=3).head(count)
    frame["labels"] = (frame["label"] == "entailment").astype(int)
    return frame


def _inputs(loaded, frame: pd.DataFrame) -> dict:
    encoded = loaded.tokenizer(
        list(frame["sentence1"]), list(frame["sentence2"]), truncation=True, max_length=64, padding=True,
        return_tensors="pt", return_token_type_ids=loaded.adapter.uses_token_type_ids,
    )  # fmt: skip
    return dict(encoded)


def _logits(loaded, inputs: dict) -> torch.Tensor:
    loaded.model.eval()
    with torch.no_grad():
        return loaded.model(**inputs).logits


@pytest.mark.parametrize("shape", TINY_MODELS)
def test_reordering_leaves_the_logits_unchanged(shape):
    loaded = load_model(shape, task_kind="classification", num_labels=2, seed=0)
    inputs = _inputs(loaded, _sentence_pairs())
    dims = loaded.dims
    rng = np.random.default_rng(1)
    heads = np.stack([rng.permutation(dims.num_heads) for _ in range(dims.num_layers)])
    units = np.stack([rng.permutation(dims.intermediate_size) for _ in range(dims.num_layers)])
    space = get_space("small", dims)
    half = space.masks({"num_layers": dims.num_layers, "num_heads": 2, "num_units": dims.intermediate_size // 2})
    supernet = MaskedSuperNetwork(loaded)
    before, query = _logits(loaded, inputs), loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0])
    query_weight = query.query.weight
    with supernet.masked(half):
        half_before = _logits(loaded, inputs)
    reorder(loaded, heads, units)
    after = _logits(loaded, inputs)
    assert (after - before).abs().max().item() <= 1e-5
    assert query.query.weight is query_weight  # rewritten in place: an optimiser on the model keeps its tensors
    with supernet.masked(half):  # the first two heads and first half of units are other ones now
        assert (_logits(loaded, inputs) - half_before).abs().max().item() > 1e-4
    # and the weights moved as asked: the new first head of layer 0 is the old head heads[0][0]
    size = dims.head_size
    fresh = load_model(shape, task_kind="classification", num_labels=2, seed=0)
    old = fresh.adapter.layer_parts(fresh.adapter.encoder_layers(fresh.model)[0])
    moved = old.value.weight[heads[0][0] * size : (heads[0][0] + 1) * size]
    new_value = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0]).value.weight
    assert torch.equal(new_value[:size], moved)


def _plant(loaded, layer_index: int, head: int, unit: int) -> None:
    """Make one head and one FFN unit of a layer carry (nearly) all of its output: the others' output
    columns shrink 100-fold, the planted ones' grow 5-fold."""
    parts = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[layer_index])
    size = loaded.dims.head_size
    with torch.no_grad():
        parts.attention_output.weight.mul_(0.01)
        parts.attention_output.weight[:, head * size : (head + 1) * size].mul_(500.0)
        parts.ffn_output.weight.mul_(0.01)
        parts.ffn_output.weight[:, unit].mul_(500.0)


def test_importance_ranks_a_planted_head_and_unit_first():
    loaded = load_model("shape:bert-tiny", task_kind="classification", num_labels=2, seed=0)
    planted = {0: (3, 200), 1: (1, 17)}  # layer -> (head, unit)
    for layer, (head, unit) in planted.items():
        _plant(loaded, layer, head, unit)
    frame = _sentence_pairs(24)
    spec = get_task("rte")
    collator = make_collator(spec, loaded.tokenizer)
    rows = []
    for _, row in frame.iterrows():
        encoded = loaded.tokenizer(row["sentence1"], row["sentence2"], truncation=True, max_length=64)
        rows.append({**encoded, "labels": int(row["labels"])})
    heads, units = gradient_importance(loaded, rows, collator, batch_size=8)
    head_order, unit_order = importance_order(heads), importance_order(units)
    assert [int(head_order[layer][0]) for layer in planted] == [head for head, _ in planted.values()]
    assert [int(unit_order[layer][0]) for layer in planted] == [unit for _, unit in planted.values()]
    # ordered, the planted head is the first one: the one every space keeps first
    value = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0]).attention_output.weight
    planted_columns = value[:, 3 * loaded.dims.head_size : 4 * loaded.dims.head_size].clone()
    reorder(loaded, head_order, unit_order)
    assert torch.equal(value[:, : loaded.dims.head_size], planted_columns)


def test_a_family_that_cannot_reorder_is_refused(monkeypatch):
    loaded = load_model("shape:roberta-tiny", task_kind="classification", num_labels=2)
    monkeypatch.setattr(RobertaAdapter, "can_reorder", False)
    identity = np.tile(np.arange(loaded.dims.num_heads), (loaded.dims.num_layers, 1))
    units = np.tile(np.arange(loaded.dims.intermediate_size), (loaded.dims.num_layers, 1))
    with pytest.raises(PrunebenchError, match=r"model family \(roberta\) has no adapter for reordering") as error:
        reorder(loaded, identity, units)
    assert "\n" not in str(error.value)


# --- training with order_by_importance ---------------------------------------------------------------------

ORDERED = {**TINY_TRAIN, "epochs": 2, "strategy": "full", "order_by_importance": True, "order_epochs": 1.0}


def _weights(folder):
    return load_file(folder / "model.safetensors")


def test_ordered_training_starts_from_the_reordered_fine_tune(tmp_path):
    """The stored table holds the scores and the permutation; the super-network starts from the short fine-tune
    reordered by it, which computes what the fine-tune computes, and keeps its most important heads first."""
    config = TrainConfig(**{**ORDERED, "order_epochs": 0.5})
    trainer = SupernetTrainer(config, tmp_path / "run", show_progress=False)
    trainer.order_by_importance()
    folder = RunDir(tmp_path / "run")
    tuned = load_model(folder.order_checkpoint, task_kind="classification", num_labels=2)
    assert read_checkpoint_meta(folder.order_checkpoint)["step"] == 3  # half of 96 examples / 16 a batch
    table = pd.read_parquet(folder.order_importance)
    assert len(table) == 2 * 4 + 2 * 256
    for _, rows in table.groupby(["layer", "part"]):
        assert (np.diff(rows.sort_values("position")["score"].to_numpy()) <= 0).all()  # decreasing importance
    heads, units = read_importance_orders(folder.order_importance, tuned.dims)
    inputs = _inputs(tuned, _sentence_pairs())
    before = _logits(tuned, inputs)
    reorder(tuned, heads, units)
    assert (_logits(tuned, inputs) - before).abs().max().item() <= 1e-5
    assert (_logits(trainer.loaded, inputs) - before).abs().max().item() <= 1e-5
    started = trainer.model.state_dict()
    assert all(torch.equal(started[k], v) for k, v in tuned.model.state_dict().items())
    assert (heads != np.arange(4)).any()  # a real permutation (random scores order 2 x 4 heads otherwise by chance)


def _cli_args(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        name = key.replace("_", "-")
        flags.append(f"--{name}" if value is True else f"--{name}={value}")
    return flags


def _kill_when(run, config: dict, ready) -> None:
    """Start ``prunebench train`` on ``config`` into ``run`` and kill -9 it once ``ready()`` holds."""
    process = ForkedCli(["train", *_cli_args(config), f"--out={run}"])
    deadline = time.time() + 180
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_every_ordering_stage_resumes_after_kill_9(tmp_path):
    """Killed in the first fine-tune, after the scores are stored, and in the super-network's training: each
    resumed run ends with the uninterrupted run's weights and scores."""
    settings = {**ORDERED, "checkpoint_every": 1, "order_epochs": 2.0}  # 12 fine-tune steps: time to kill in them
    config = TrainConfig(**settings)
    train_supernet(config, tmp_path / "straight", show_progress=False)
    straight = RunDir(tmp_path / "straight")
    stages = {
        "fine-tune": lambda run: run.order_checkpoint.is_dir(),
        "scores": lambda run: run.order_importance.is_file(),
        "super-network": lambda run: run.checkpoint.is_dir(),
    }
    for name, ready in stages.items():
        run = RunDir(tmp_path / name)
        _kill_when(run.path, settings, lambda run=run, ready=ready: ready(run))
        if name == "fine-tune":
            assert not run.order_importance.exists()  # killed before the scores were taken
        assert read_run(run.path)["status"] == "training"
        result = train_supernet(config, run.path, resume=True, show_progress=False)
        assert result.finished, name
        want, got = _weights(straight.checkpoint), _weights(run.checkpoint)
        assert all(torch.equal(want[k], got[k]) for k in want), name
        assert pd.read_parquet(run.order_importance).equals(pd.read_parquet(straight.order_importance)), name


def test_scores_lost_with_a_kill_are_taken_again(tmp_path):
    """A kill while scoring leaves no table (it is written atomically): the resumed run scores again and ends
    where the uninterrupted run does. Here the super-network stops before its first checkpoint, and the table
    is removed, as a kill before it was written would leave the run."""
    config = TrainConfig(**ORDERED)
    train_supernet(config, tmp_path / "straight", show_progress=False)
    run = RunDir(tmp_path / "run")
    assert not train_supernet(config, run.path, show_progress=False, stop_after_steps=2).finished
    assert not run.checkpoint.exists()
    run.order_importance.unlink()
    assert train_supernet(config, run.path, resume=True, show_progress=False).finished
    want, got = _weights(RunDir(tmp_path / "straight").checkpoint), _weights(run.checkpoint)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_ordering_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    plain = TrainConfig(**{**ORDERED, "order_by_importance": False, "checkpoint_every": 2})
    train_supernet(plain, run, show_progress=False, stop_after_steps=3)
    ordered = TrainConfig(**{**ORDERED, "checkpoint_every": 2})
    with pytest.raises(PrunebenchError, match=r"holds a different run \(order_by_importance=False, asked True\)"):
        train_supernet(ordered, run, resume=True, show_progress=False)
    code, _, err = run_cli(["train", "--out", str(tmp_path / "l"), "--space", "layer", "--order-by-importance"],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "the layer space does not choose" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "l").exists()
    monkeypatch.setattr(RobertaAdapter, "can_reorder", False)
    args = ["train", "--out", str(tmp_path / "r"), "--model", "shape:roberta-tiny", "--order-by-importance",
            "--max-train-examples", "32"]  # fmt: skip
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "no adapter for reordering" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_an_ordered_run_extracts_and_verifies(tmp_path):
    from prunebench.config import SearchConfig

    run = make_tiny_run(
        tmp_path / "run",
        train=TrainConfig(**{**TINY_TRAIN, "order_by_importance": True, "order_epochs": 0.5}),
        searches=(SearchConfig(method="random_search", samples=6, name="rs"),),
        export={"max_models": 2, "verify": True},
    )
    index = pd.read_parquet(run / "search" / "rs" / "models" / "index.parquet")
    assert len(index) >= 1 and (index["max_abs_diff"] < 1e-4).all()
    assert (run / "order" / "importance.parquet").is_file()
    # the tiny search's Pareto set may be the full model alone: extract sub-networks of the ordered checkpoint too
    from prunebench.config import ExtractConfig
    from prunebench.extract import extract_subnetworks

    settings = ExtractConfig(space="small", random=3, seed=1, verify=True)
    _, results = extract_subnetworks(run / "checkpoint", settings, tmp_path / "models")
    assert len(results) == 3 and all(r.max_abs_diff < 1e-4 for r in results)
    assert all(load_model(r.path).structure is not None for r in results)  # pruned models, loaded as such


def test_run_passes_the_ordering_to_training(tmp_path, monkeypatch, capsys):
    """``prunebench run --order-by-importance --order-epochs X`` trains the preset's run ordered (run.json keeps it)."""
    seen = {}

    def fake_pipeline(config, out, overwrite=False):
        seen["train"], seen["search"] = config.train, config.search
        raise PrunebenchError("stopped here")

    monkeypatch.setattr("prunebench.pipeline.run_pipeline", fake_pipeline)
    code, _, err = run_cli(["run", "--out", str(tmp_path / "r"), "--order-by-importance", "--order-epochs", "0.5"],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "stopped here" in err
    assert seen["train"].order_by_importance and seen["train"].order_epochs == 0.5
    assert seen["train"].epochs == 1 and seen["train"].fixed_teacher  # the rest is the quick preset's
    args = ["run", "--out", str(tmp_path / "t"), "--no-order-by-importance", "--epochs", "2"]
    assert run_cli(args, monkeypatch, capsys)[0] == 2 and seen["train"].epochs == 2
    assert not seen["train"].order_by_importance and not seen["train"].fixed_teacher  # its teacher goes with it
    assert seen["train"].seed == 0 and seen["search"].seed == 0
    assert run_cli(["run", "--out", str(tmp_path / "s"), "--seed", "3"], monkeypatch, capsys)[0] == 2
    assert seen["train"].seed == 3 and seen["search"].seed == 3  # one seed for the run
    code, _, err = run_cli(["run", "--out", str(tmp_path / "v"), "--seed", "-1"], monkeypatch, capsys)
    assert code == 2 and "--seed" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "v").exists()
    args = ["run", "--out", str(tmp_path / "u"), "--no-order-by-importance", "--fixed-teacher"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "add --order-by-importance or drop --fixed-teacher" in err and not (tmp_path / "u").exists()


TAUGHT = {**ORDERED, "fixed_teacher": True}


def test_with_a_fixed_teacher_every_sub_network_learns_from_it(tmp_path, monkeypatch):
    """Each step, the full network included, is distilled from the fixed teacher's logits, not the full network's."""
    import prunebench.supernet.training as training

    trainer = SupernetTrainer(TrainConfig(**TAUGHT), tmp_path / "run", show_progress=False)
    trainer.order_by_importance()
    trainer.load_fixed_teacher()
    batch = trainer.collator(trainer.rows["train"][:8])
    with torch.no_grad():
        wanted = trainer.fixed_teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
    seen = []

    def spy(student, teacher, *args):
        seen.append(teacher.clone())
        return real(student, teacher, *args)

    real = training.distillation_terms
    monkeypatch.setattr(training, "distillation_terms", spy)
    trainer.train_step(dict(batch))
    assert len(seen) == 4  # the full strategy's plan: full, smallest and two random sub-networks
    assert all(torch.equal(teacher, wanted) for teacher in seen)
    assert not trainer.fixed_teacher.training and not any(p.requires_grad for p in trainer.fixed_teacher.parameters())


def test_a_fixed_teacher_run_resumes_where_it_stopped(tmp_path):
    """Stopped in the super-network's training (the teacher is read again from the fine-tune's checkpoint), the
    resumed run ends with the uninterrupted run's weights."""
    config = TrainConfig(**{**TAUGHT, "checkpoint_every": 1})
    train_supernet(config, tmp_path / "straight", show_progress=False)
    run = RunDir(tmp_path / "run")
    assert not train_supernet(config, run.path, show_progress=False, stop_after_steps=3).finished
    assert train_supernet(config, run.path, resume=True, show_progress=False).finished
    want, got = _weights(RunDir(tmp_path / "straight").checkpoint), _weights(run.checkpoint)
    assert all(torch.equal(want[k], got[k]) for k in want)
    untaught = TrainConfig(**ORDERED)
    train_supernet(untaught, tmp_path / "untaught", show_progress=False)
    other = _weights(RunDir(tmp_path / "untaught").checkpoint)
    assert not all(torch.equal(want[k], other[k]) for k in want)  # the teacher changed what was trained
    with pytest.raises(PrunebenchError, match=r"holds a different run \(fixed_teacher=True, asked False\)"):
        train_supernet(TrainConfig(**{**ORDERED, "checkpoint_every": 1}), run.path, resume=True, show_progress=False)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--fixed-teacher"], "add --order-by-importance or drop --fixed-teacher"),
        (["--fixed-teacher", "--order-by-importance", "--strategy", "sandwich"], "strategy 'sandwich' distils nothing"),
    ],
)
def test_fixed_teacher_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, says):
    code, _, err = run_cli(["train", "--out", str(tmp_path / "t"), *args], monkeypatch, capsys)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_the_distilling_strategies_are_the_ones_config_names():
    from prunebench.config import DISTILLING_STRATEGIES
    from prunebench.supernet.strategies import STRATEGIES

    assert {name for name, cls in STRATEGIES.items() if cls.uses_teacher} == set(DISTILLING_STRATEGIES)


def test_the_memory_check_counts_the_fixed_teacher():
    from prunebench.supernet.training import training_memory_estimate

    loaded = load_model("shape:bert-tiny", task_kind="classification", num_labels=2)
    parameters = sum(p.numel() for p in loaded.model.parameters())
    plain, taught = (training_memory_estimate(loaded, 16, 64, teacher) for teacher in (False, True))
    assert taught - plain == 4 * parameters  # one more fp32 copy of the weights


def test_settings_laid_over_the_preset_drop_its_teacher_where_it_cannot_teach():
    """The quick preset's fixed teacher goes with its ordering and with a distilling strategy; asked for
    explicitly, a conflict is still an error."""
    from prunebench.config import get_preset

    quick = get_preset("quick").train
    assert quick.fixed_teacher and quick.order_by_importance
    assert not quick.with_changes(order_by_importance=False).fixed_teacher
    assert not quick.with_changes(strategy="sandwich").fixed_teacher
    assert quick.with_changes(strategy="kd").fixed_teacher and quick.with_changes(strategy="one_shot").fixed_teacher
    with pytest.raises(PrunebenchError, match="distils nothing"):
        quick.with_changes(strategy="standard", fixed_teacher=True)
