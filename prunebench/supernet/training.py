"""Stage one: fine-tune the super-network so that its sub-networks work too.

Each optimiser step trains the sub-networks a strategy chooses (their gradients
are accumulated, then one step). Everything random is derived from the seed and
the step number (data order from seed + epoch, sub-network sampling from seed +
step) and the torch RNG (dropout) is checkpointed, so a resumed run repeats the
uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from safetensors.torch import load_file
from transformers import get_linear_schedule_with_warmup

from prunebench.config import STRATEGY_ALIASES, TrainConfig
from prunebench.environment import clock, environment
from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError, UnknownNameError, check_stop, stop_at_safe_points, stop_requested
from prunebench.models import ModelDims, load_model
from prunebench.models.loaded import LoadedModel, quiet_transformers
from prunebench.rundir import (
    CHECKPOINT_META,
    CHECKPOINT_WEIGHTS,
    RUN_KIND,
    RUN_VERSION,
    TRAINER_STATE,
    RunDir,
    check_replaceable,
    clear_output,
    data_files_record,
    is_empty_dir,
    mark_output,
    read_json,
    read_run,
    read_table,
    real_path,
    recover_dir,
    remove_stale_staging,
    replace_dir_atomic,
    staging_path,
    write_json_atomic,
    write_parquet_atomic,
    write_table_atomic,
    writer_lock,
)
from prunebench.supernet.counting import CostModel
from prunebench.supernet.importance import gradient_importance, importance_order, reorder
from prunebench.supernet.losses import distillation_gap, distillation_terms, task_loss
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.supernet.spaces import SPACES, Config, Masks, SearchSpace, get_space
from prunebench.supernet.strategies import STRATEGIES, Strategy, SubnetStep, get_strategy
from prunebench.tasks import REGRESSION, get_task, make_collator
from prunebench.tasks.rows import EvalSplit, load_run_task, subset, tokenised_rows, validation_rows


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    log: pd.DataFrame
    finished: bool


@dataclass
class _State:
    """Everything besides the weights that a resumed run needs."""

    step: int = 0  # optimiser steps done
    epoch_loss: float = 0.0  # summed step losses in the current epoch
    epoch_seconds: float = 0.0
    log_rows: list | None = None
    epoch_loss_labels: float = 0.0  # the parts of ``epoch_loss`` (``StepLoss``), summed the same way
    epoch_loss_distillation: float = 0.0


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PrunebenchError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PrunebenchError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    return device


def make_optimizer(model: torch.nn.Module, config: TrainConfig, total_steps: int):
    """AdamW with a linear schedule (and linear warm-up over ``warmup_ratio`` of the steps), as the paper trains."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def epoch_order(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The training examples of one epoch in batches, shuffled by ``seed`` and ``epoch`` (so a resume repeats it)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class StepLoss:
    """One optimiser step's loss, summed over its sub-networks: ``total`` is what was optimised. Shown split,
    since with distillation ``total`` is dominated by a constant (``losses.distillation_gap``): ``labels``, the
    loss to the labels, and ``distillation``, the students' distance from the teacher (0 when they agree)."""

    total: float = 0.0
    labels: float = 0.0
    distillation: float = 0.0

    def text(self) -> str:
        return f"loss {self.labels:.4f} to labels, {self.distillation:.4f} to teacher"


def train_step(
    model: torch.nn.Module,
    supernet: MaskedSuperNetwork,
    plan: Sequence[SubnetStep],
    masks_of: Callable[[Config | None], Masks],
    batch: dict[str, torch.Tensor],
    optimizer,
    scheduler,
    kind: str,
    temperature: float,
    fixed_teacher: torch.nn.Module | None = None,
) -> StepLoss:
    """One optimiser step: each sub-network of ``plan`` (its masks from ``masks_of``) adds its gradients.

    The full network (``config`` None) comes first in a plan and teaches the sub-networks that distil; with a
    ``fixed_teacher`` (a fine-tuned model, not trained here) every sub-network of the plan learns from that instead.
    Standard-NAS trials call it with a one-step plan whose masks are the trial's fixed sub-network.
    The masks of the last sub-network stay applied. Returns the loss, summed and split (``StepLoss``).
    """
    labels = batch.pop("labels")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    teacher, step = None, StepLoss()
    if fixed_teacher is not None:
        with torch.no_grad():
            teacher = fixed_teacher(**batch).logits
    for subnet in plan:
        supernet.apply(masks_of(subnet.config))
        logits = model(**batch).logits
        if subnet.distill or fixed_teacher is not None:
            to_teacher, to_labels = distillation_terms(logits, teacher, labels, kind, temperature)
            loss = to_teacher + to_labels
            step.distillation += distillation_gap(logits.detach(), teacher, kind, temperature)
        else:
            loss = to_labels = task_loss(logits, labels, kind)
        if subnet.config is None and fixed_teacher is None:
            teacher = logits.detach()
        loss.backward()
        step.total += loss.item()
        step.labels += to_labels.item()
    optimizer.step()
    scheduler.step()
    return step


def start_at_label_mean(loaded: LoadedModel, train_rows: list[dict]) -> None:
    """Start a fresh regression head at the mean training score instead of 0; other heads are left alone.

    A head loaded with its weights is already trained, and a classifier's logits have no offset to learn.
    Otherwise the MSE's first hundred steps go into moving the offset (STS-B's scores centre
    near 2.7), and the encoder gets pushed towards one constant output on the way. Measured on
    STS-B (MiniLM, 2000 examples, one epoch): validation Spearman 0.45 from 0, 0.77 from the mean (full: 0.16, 0.77).
    """
    if loaded.task_kind != REGRESSION or not loaded.fresh_head:
        return
    mean = float(np.mean([row["labels"] for row in train_rows]))
    with torch.no_grad():
        loaded.adapter.output_layer(loaded.model).bias.fill_(mean)


def training_memory_estimate(loaded: LoadedModel, batch_size: int, length: int, teacher: bool = False) -> int:
    """Bytes one training step needs on the CPU, an estimate: fp32 weights, gradients and two Adam moments (and a
    fixed teacher's weights), plus the activations autograd keeps for one sub-network's backward pass (about 20
    hidden-sized and 2 FFN-sized tensors per token and layer, and three attention maps per head)."""
    dims = loaded.dims
    parameters = sum(p.numel() for p in loaded.model.parameters())
    per_layer = batch_size * length * (20 * dims.hidden_size + 2 * dims.intermediate_size)
    per_layer += 3 * batch_size * dims.num_heads * length * length
    return 4 * ((5 if teacher else 4) * parameters + dims.num_layers * per_layer)


def check_training_memory(loaded: LoadedModel, batch_size: int, length: int, teacher: bool = False) -> None:
    """Refuse, before anything is written, a batch whose estimated memory exceeds what the machine has free."""
    import psutil

    needed, free = training_memory_estimate(loaded, batch_size, length, teacher), psutil.virtual_memory().available
    if needed > free:
        raise PrunebenchError(
            f"--batch-size {batch_size} at --max-length {length} needs about {needed / 2**30:.1f} GiB to train "
            f"(an estimate), more than the {free / 2**30:.1f} GiB this machine has available; lower --batch-size "
            "or --max-length"
        )


class SupernetTrainer:
    """One training run in one run directory. ``train_supernet`` is the usual entry point."""

    def __init__(self, config: TrainConfig, run_dir: Path, show_progress: bool = True):
        self.config, self.run_dir = config, Path(run_dir)
        self.folder = RunDir(run_dir)
        self.console = make_console(quiet=not show_progress, markup=False)
        self.show_progress = show_progress
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        self.data = load_run_task(config)
        spec = self.data.spec
        self.loaded = load_model(config.model, task_kind=spec.kind, num_labels=spec.num_labels, seed=config.seed)
        if self.loaded.structure is not None:
            raise PrunebenchError(f"{config.model} is a pruned model; train the super-network from the un-pruned model")
        longest = self.loaded.adapter.max_sequence_length(self.loaded.model.config)
        if config.max_length > longest:
            raise PrunebenchError(
                f"--max-length {config.max_length} is longer than {config.model} takes ({longest} tokens); "
                f"use --max-length {longest} or less"
            )
        if config.order_by_importance and not self.loaded.adapter.can_reorder:
            raise PrunebenchError(
                f"--order-by-importance: {config.model}'s family ({self.loaded.model.config.model_type}) has no "
                "adapter for reordering heads and units; train without --order-by-importance"
            )
        self.space: SearchSpace = get_space(config.space, self.loaded.dims, config.round_units)
        self.strategy: Strategy = get_strategy(config.strategy, self.space, config.num_random_sub_nets)
        self.rows = tokenised_rows(self.data, self.loaded, config.max_length)
        if not self.rows["train"]:
            raise PrunebenchError(f"task {config.task!r} has no training examples after splitting; add data")
        if self.device.type == "cpu":
            batch = min(config.batch_size, len(self.rows["train"]))
            check_training_memory(self.loaded, batch, config.max_length, config.fixed_teacher)
        self.collator = make_collator(spec, self.loaded.tokenizer)
        start_at_label_mean(self.loaded, self.rows["train"])
        self.model = self.loaded.model.to(self.device)
        self.supernet = MaskedSuperNetwork(self.loaded)
        self.cost = CostModel.for_model(self.loaded)
        self.steps_per_epoch = math.ceil(len(self.rows["train"]) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.optimizer, self.scheduler = make_optimizer(self.model, config, self.total_steps)
        self.eval_split = EvalSplit.of(spec, validation_rows(self.rows, config), self.collator)
        self.state = _State(log_rows=[])
        # Where this stage keeps its checkpoint and log, and which sub-networks it scores after an epoch
        # (the ordering's short fine-tune, ``order_tuning``, has its own).
        self.checkpoint_dir, self.log_path = self.folder.checkpoint, self.folder.training_log
        self.scored = ("largest", "middle", "smallest")
        self.fixed_teacher: torch.nn.Module | None = None  # set by ``load_fixed_teacher``

    # --- one step -------------------------------------------------------------------------------
    def _masks(self, config: Config | None) -> Masks:
        return Masks.full(self.loaded.dims) if config is None else self.space.masks(config)

    def train_step(self, batch: dict[str, torch.Tensor]) -> StepLoss:
        rng = np.random.default_rng([self.config.seed, self.state.step])
        plan = self.strategy.plan(self.state.step / self.total_steps, rng)
        loss = train_step(
            self.model, self.supernet, plan, self._masks, batch, self.optimizer, self.scheduler,
            self.data.spec.kind, self.config.temperature, self.fixed_teacher,
        )  # fmt: skip
        self.supernet.reset()
        self.state.step += 1
        return loss

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, epoch: int) -> list[dict]:
        rows = []
        named = {"largest": self.space.largest(), "middle": self.space.middle(), "smallest": self.space.smallest()}
        # steps in this epoch: all of an epoch's, or fewer in a fractional last one (the ordering's fine-tune)
        steps = max(1, self.state.step - (epoch - 1) * self.steps_per_epoch)
        for name in self.scored:
            config = named[name]
            masks = self.space.masks(config)
            with self.supernet.masked(masks):
                metrics = self.eval_split.score(self.model, self.device)
            rows.append(
                {
                    "epoch": epoch,
                    "step": self.state.step,
                    "subnetwork": name,
                    "encoder_fraction": self.cost.encoder_fraction(masks),
                    "relative_parameters": self.cost.relative_parameters(masks),
                    "metric_name": self.data.spec.metric,
                    "metric": metrics["metric"],
                    "error": metrics["error"],
                    "train_loss": self.state.epoch_loss / steps,
                    "train_loss_labels": self.state.epoch_loss_labels / steps,
                    "train_loss_distillation": self.state.epoch_loss_distillation / steps,
                    "epoch_seconds": self.state.epoch_seconds,
                    "validation_examples": len(self.eval_split),
                }
            )
        return rows

    # --- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_meta(self) -> dict:
        return {
            "model": self.config.model,
            "dims": self.loaded.dims.to_dict(),
            "space": self.space.name,
            "strategy": self.strategy.name,
            "task": self.data.spec.name,
            "task_kind": self.data.spec.kind,
            "num_labels": self.data.spec.num_labels,
        }

    def save_checkpoint(self) -> None:
        target = real_path(self.checkpoint_dir)  # a linked checkpoint folder is written through, on its disk
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(target)  # left by a killed writer
        staging = staging_path(target)
        try:
            with quiet_transformers():
                self.model.save_pretrained(staging)
                self.loaded.tokenizer.save_pretrained(staging)
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                },
                staging / TRAINER_STATE,
            )
            meta = {
                **self._checkpoint_meta(),
                "step": self.state.step,
                "epoch_loss": self.state.epoch_loss,
                "epoch_seconds": self.state.epoch_seconds,
                "log": self.state.log_rows,
                "epoch_loss_labels": self.state.epoch_loss_labels,
                "epoch_loss_distillation": self.state.epoch_loss_distillation,
            }
            write_json_atomic(staging / CHECKPOINT_META, meta)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # a full disk must not stay full of a half checkpoint
            raise
        replace_dir_atomic(staging, target)
        self.write_log()

    def write_log(self) -> None:
        write_parquet_atomic(self.log_path, pd.DataFrame(self.state.log_rows))

    def load_checkpoint(self) -> bool:
        """Restore weights, optimiser, scheduler and RNG from the last checkpoint; False when there is none."""
        target = recover_dir(self.checkpoint_dir)
        if not (target / CHECKPOINT_META).is_file():
            return False
        meta = read_checkpoint_meta(target)
        expected = self._checkpoint_meta()
        different = [key for key in expected if meta.get(key) != expected[key]]
        if different:
            raise PrunebenchError(
                f"the checkpoint in {target} was made for another {different[0]} "
                f"({meta.get(different[0])!r}, this run has {expected[different[0]]!r}); "
                "start a new run directory or pass --overwrite"
            )
        try:
            state = load_file(target / CHECKPOINT_WEIGHTS, device=str(self.device))
            self.model.load_state_dict(state, strict=True)
            # RNG states must stay CPU byte tensors; the optimiser moves its state to the parameters' device
            trainer = torch.load(target / TRAINER_STATE, map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable piece means the checkpoint cannot be trusted
            raise PrunebenchError(
                f"the checkpoint in {target} is corrupt ({type(error).__name__}); start again with --overwrite"
            ) from None
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        if trainer.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        parts = (meta.get("epoch_loss_labels", 0.0), meta.get("epoch_loss_distillation", 0.0))  # older: absent
        self.state = _State(meta["step"], meta["epoch_loss"], meta["epoch_seconds"], meta["log"], *parts)
        return True

    # --- importance ordering (TrainConfig.order_by_importance) ------------------------------------
    def order_tuning(self) -> SupernetTrainer:
        """The short standard fine-tune the order is taken on: this trainer's model, data and validation split,
        with its own steps (``order_epochs`` of them, may be a fraction), optimiser, checkpoint and log."""
        tuning = copy.copy(self)
        tuning.strategy = get_strategy("standard", self.space, self.config.num_random_sub_nets)
        tuning.total_steps = max(1, math.ceil(self.config.order_epochs * self.steps_per_epoch))
        tuning.optimizer, tuning.scheduler = make_optimizer(self.model, self.config, tuning.total_steps)
        tuning.checkpoint_dir, tuning.log_path = self.folder.order_checkpoint, self.folder.order_log
        tuning.scored = ("largest",)  # the full network: sub-networks are not trained yet
        tuning.state = _State(log_rows=[])
        return tuning

    def order_by_importance(self) -> None:
        """Fine-tune the full model briefly, score its heads and units on training examples, and reorder every
        layer by decreasing importance, so that the space's first k are the top k; the super-network then trains
        from this model. Each part resumes after a kill: the fine-tune from its checkpoint, the scores and
        permutation from their table (RUN/order/); reordering is a cheap, exact rewrite, repeated on a restart."""
        config, folder = self.config, self.folder
        tuning = self.order_tuning()
        if not tuning.load_checkpoint():
            torch.manual_seed(config.seed)  # a restart before the first checkpoint draws the same dropout
        if tuning.state.step < tuning.total_steps:
            self.console.print(
                f"ordering: fine-tuning the full model for {tuning.total_steps} steps ({config.order_epochs:g} epochs)"
            )
        tuning.run()
        if folder.order_importance.is_file():
            head_orders, unit_orders = read_importance_orders(folder.order_importance, self.loaded.dims)
        else:
            rows = subset(self.rows["train"], config.order_examples, config.seed)
            heads, units = gradient_importance(self.loaded, rows, self.collator, device=str(self.device))
            write_table_atomic(folder.order_importance, importance_table(heads, units))
            head_orders, unit_orders = importance_order(heads), importance_order(units)
        reorder(self.loaded, head_orders, unit_orders)
        self.console.print(f"ordering: heads and units reordered by importance (scores: {folder.order_importance})")
        torch.manual_seed(config.seed + 1)  # the super-network's dropout: the same however the run got here

    def load_fixed_teacher(self) -> None:
        """The ordering's first fine-tune as the fixed teacher (TrainConfig.fixed_teacher), read from its checkpoint,
        in eval mode (no dropout in the targets). Reordering leaves a model's outputs unchanged, so the un-reordered
        checkpoint teaches the reordered super-network the same; a resumed run reads it again."""
        spec = self.data.spec
        with torch.random.fork_rng(devices=[]):  # building a model draws from the RNG, which the dropout replays
            teacher = load_model(self.folder.order_checkpoint, task_kind=spec.kind, num_labels=spec.num_labels)
        self.fixed_teacher = teacher.model.to(self.device).eval().requires_grad_(False)

    # --- the loop -------------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.show_progress,
        )

    def run(self, stop_after_steps: int | None = None) -> None:
        """Train to the end (or until ``stop_after_steps`` optimiser steps are done in total)."""
        every = self.config.checkpoint_every
        log_every = max(1, self.total_steps // 20)
        session = (time.perf_counter(), self.state.step)  # this session's start: time per step and time left
        with self._progress() as progress, stop_at_safe_points():
            bar = progress.add_task("train", total=self.total_steps, completed=self.state.step, epoch=1, loss="")
            while self.state.step < self.total_steps:
                epoch, first = divmod(self.state.step, self.steps_per_epoch)
                batches = epoch_order(len(self.rows["train"]), self.config.batch_size, self.config.seed, epoch)
                for indices in batches[first:]:
                    started = time.perf_counter()
                    batch = {
                        k: v.to(self.device) for k, v in self.collator([self.rows["train"][i] for i in indices]).items()
                    }
                    loss = self.train_step(batch)
                    self.state.epoch_loss += loss.total
                    self.state.epoch_loss_labels += loss.labels
                    self.state.epoch_loss_distillation += loss.distillation
                    self.state.epoch_seconds += time.perf_counter() - started
                    progress.update(bar, advance=1, epoch=epoch + 1, loss=loss.text())
                    if not self.console.is_terminal and self.state.step % log_every == 0:
                        # rich draws no live bar into a log file; say how far we are and how long is left
                        self.console.print(self._step_line(epoch + 1, loss, session))
                    if stop_after_steps is not None and self.state.step >= stop_after_steps:
                        return
                    if self.state.step >= self.total_steps:  # a fractional last epoch (the ordering's fine-tune)
                        break
                    if stop_requested() is not None:  # SIGTERM or Ctrl-C: keep this step, then stop
                        self.save_checkpoint()
                        self.console.print(
                            f"stopping at step {self.state.step} of {self.total_steps}; checkpoint saved, "
                            f"continue with --resume"
                        )
                        check_stop()
                    if every and self.state.step % every == 0 and self.state.step % self.steps_per_epoch:
                        self.save_checkpoint()
                self.state.log_rows.extend(self.evaluate(epoch + 1))
                self._show_epoch(epoch + 1, len(self.scored))
                self.state.epoch_loss, self.state.epoch_seconds = 0.0, 0.0
                self.state.epoch_loss_labels, self.state.epoch_loss_distillation = 0.0, 0.0
                self.save_checkpoint()

    def _step_line(self, epoch: int, loss: StepLoss, session: tuple[float, int]) -> str:
        """``step 12/250 (epoch 1) loss ... · 0.84 s/step · 3:28 left``: a progress line for a log file."""
        per_step = (time.perf_counter() - session[0]) / max(1, self.state.step - session[1])
        left = clock(per_step * (self.total_steps - self.state.step))
        where = f"step {self.state.step}/{self.total_steps} (epoch {epoch})"
        return f"{where} {loss.text()} · {per_step:.2f} s/step · {left} left"

    def _show_epoch(self, epoch: int, rows: int) -> None:
        table = Table(title=f"epoch {epoch}: validation ({self.data.spec.metric})")
        columns = ("sub-network", "encoder fraction", self.data.spec.metric, "loss to labels", "loss to teacher")
        for column in (*columns, "seconds"):
            table.add_column(column)
        for row in self.state.log_rows[-rows:]:
            table.add_row(
                row["subnetwork"],
                f"{row['encoder_fraction']:.3f}",
                f"{row['metric']:.4f}",
                f"{row['train_loss_labels']:.4f}",
                f"{row['train_loss_distillation']:.4f}",
                f"{row['epoch_seconds']:.1f}",
            )
        self.console.print(table)


# checkpoint.json: key -> the types its value may have
_CHECKPOINT_FIELDS = {
    "model": (str,),
    "dims": (dict,),
    "space": (str,),
    "strategy": (str,),
    "task": (str,),
    "task_kind": (str,),
    "num_labels": (int, type(None)),
    "step": (int,),
    "epoch_loss": (int, float),
    "epoch_seconds": (int, float),
    "log": (list,),
}


def read_checkpoint_meta(checkpoint: Path) -> dict:
    """The checkpoint's ``checkpoint.json``, with every field of the type it must have."""
    path = Path(checkpoint) / CHECKPOINT_META
    fix = "the checkpoint cannot be trusted: start the run again with 'prunebench train --overwrite'"
    meta = read_json(path, fix)
    wrong = [
        f"{key}={meta.get(key)!r}"
        for key, kinds in _CHECKPOINT_FIELDS.items()
        if not isinstance(meta.get(key), kinds) or isinstance(meta.get(key), bool)
    ]
    if not wrong and not all(isinstance(v, int) and not isinstance(v, bool) for v in meta["dims"].values()):
        wrong.append(f"dims={meta['dims']!r}")
    if wrong:
        raise PrunebenchError(f"{path} is damaged (wrong or missing values: {', '.join(wrong)}); {fix}")
    return meta


_IMPORTANCE_COLUMNS = ["layer", "part", "index", "score", "position"]


def importance_table(heads: np.ndarray, units: np.ndarray) -> pd.DataFrame:
    """Scores and permutation as one table: per layer, each head's and unit's score and its position after
    reordering (0 = first, the most important)."""
    frames = []
    for part, scores in (("head", heads), ("unit", units)):
        layers, count = scores.shape
        positions = np.argsort(importance_order(scores), axis=1)  # the inverse permutation: index -> position
        frames.append(
            pd.DataFrame(
                {
                    "layer": np.repeat(np.arange(layers), count),
                    "part": part,
                    "index": np.tile(np.arange(count), layers),
                    "score": scores.ravel(),
                    "position": positions.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def read_importance_orders(path: Path, dims: ModelDims) -> tuple[np.ndarray, np.ndarray]:
    """The stored permutation, (heads (L, H), units (L, I)): each row lists a layer's indices in their new order."""
    fix = "delete it and resume: the scores are taken again"
    table = read_table(path, fix, columns=_IMPORTANCE_COLUMNS)
    orders = []
    for part, count in (("head", dims.num_heads), ("unit", dims.intermediate_size)):
        rows = table[table["part"] == part].sort_values(["layer", "position"])
        order = rows["index"].to_numpy()
        if len(order) != dims.num_layers * count:
            raise PrunebenchError(f"{path} is damaged (not {dims.num_layers} x {count} {part}s); {fix}")
        order = order.reshape(dims.num_layers, count)
        if not (np.sort(order, axis=1) == np.arange(count)).all():
            raise PrunebenchError(f"{path} is damaged (its {part} positions are not a permutation); {fix}")
        orders.append(order)
    return orders[0], orders[1]


def _check_names(config: TrainConfig) -> None:
    """Fail on a misspelt task, space or strategy before anything slow or destructive happens."""
    get_task(config.task)
    if config.space not in SPACES:
        raise UnknownNameError("search space", config.space, list(SPACES))
    if config.strategy not in STRATEGIES:
        raise UnknownNameError("strategy", config.strategy, [*STRATEGIES, *STRATEGY_ALIASES])


def _plan_run_dir(config: TrainConfig, run_dir: Path, resume: bool, overwrite: bool) -> str:
    """What to do with RUN: "new", "continue" (an existing matching run) or "replace" (with --overwrite)."""
    if resume and overwrite:
        raise PrunebenchError("--resume and --overwrite contradict each other; pick one")
    holds_run = RunDir(run_dir).is_run()
    if overwrite:
        check_replaceable(run_dir, inputs=data_inputs(config))  # never a folder prunebench did not make
    if holds_run and not overwrite:
        existing = read_run(run_dir)
        if not resume:
            raise PrunebenchError(
                f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
            )
        saved, mine, default = existing.get("train", {}), config.to_dict(), TrainConfig().to_dict()
        # A setting missing from the saved config did not exist when the run was made: it had the default.
        different = [k for k in mine if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k, default[k]) != mine[k]]
        if different:
            key = different[0]
            raise PrunebenchError(
                f"{run_dir} holds a different run ({key}={saved.get(key, default[key])!r}, asked {mine[key]!r}); "
                "use another --out, or --overwrite to replace it"
            )
        return "continue"
    if run_dir.exists() and (not run_dir.is_dir() or not is_empty_dir(run_dir)):
        if not overwrite:
            raise PrunebenchError(f"{run_dir} is not empty and holds no run; pick another --out or pass --overwrite")
        return "replace"
    if resume:
        raise PrunebenchError(f"{run_dir} holds no run to resume; drop --resume to start one")
    return "new"


def data_inputs(config: TrainConfig) -> list[Path]:
    """The files and folders ``config`` reads its data from: --overwrite never empties a folder holding them."""
    return [Path(p) for p in (config.train_file, config.test_file, config.data_dir) if p]


def _check_same_data(run_dir: Path, data_files: dict) -> None:
    """A resumed run may read its data from a new place, never other data."""
    saved = read_run(run_dir).get("data_files") or {}
    for role, entry in data_files.items():
        if role in saved and saved[role]["sha256"] != entry["sha256"]:
            raise PrunebenchError(
                f"{run_dir} was trained on another --{role} file ({saved[role]['path']}; {entry['path']} has other "
                "contents); give the original file, or use another --out"
            )


def train_supernet(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Fine-tune a super-network into ``run_dir`` (see the module docstring); resumable and idempotent."""
    run_dir = Path(run_dir)
    _check_names(config)
    # A run keeps where its data is (resolved against this folder), so every later stage finds it from any folder.
    resolved = {name: str(Path(value).resolve()) for name in ("train_file", "test_file", "data_dir")
                if (value := getattr(config, name))}  # fmt: skip
    config = replace(config, **resolved)
    if run_dir.exists() and not run_dir.is_dir():
        raise PrunebenchError(f"--out {run_dir} is a file; give a folder for the run")
    with writer_lock(run_dir):
        return _train_locked(config, run_dir, resume, overwrite, show_progress, stop_after_steps)


def _train_locked(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    show_progress: bool,
    stop_after_steps: int | None,
) -> TrainResult:
    action = _plan_run_dir(config, run_dir, resume, overwrite)
    continuing = action == "continue"
    if continuing and read_run(run_dir).get("status") == "finished":
        log_path = RunDir(run_dir).training_log
        log = (
            read_table(log_path, "delete it; 'prunebench train --resume' writes it again")
            if log_path.is_file()
            else (pd.DataFrame())
        )
        make_console(quiet=not show_progress, markup=False).print(
            f"{run_dir}: training already finished; nothing to do"
        )
        step = int(log["step"].max()) if len(log) else 0
        return TrainResult(run_dir, step, step, log, True)
    data_files = data_files_record(config.to_dict())
    if continuing:
        _check_same_data(run_dir, data_files)
    trainer = SupernetTrainer(config, run_dir, show_progress)
    # The checkpoint is read and checked before anything is written, so a corrupt one changes nothing.
    resumed = continuing and trainer.load_checkpoint()
    if action == "replace":  # only once the new run has loaded its model and data
        clear_output(run_dir, inputs=data_inputs(config))
    mark_output(run_dir)
    run_record = {
        "kind": RUN_KIND,
        "version": RUN_VERSION,
        "status": "training",
        "train": config.to_dict(),
        "task": {
            "name": trainer.data.spec.name,
            "kind": trainer.data.spec.kind,
            "metric": trainer.data.spec.metric,
            "num_labels": trainer.data.spec.num_labels,
            "label_names": trainer.data.spec.label_names,
            "examples": {split: len(rows) for split, rows in trainer.rows.items()},
            "notes": list(trainer.data.notes),  # what loading the data warned about
        },
        "total_steps": trainer.total_steps,
        "data_files": data_files,
    }
    write_json_atomic(RunDir(run_dir).run_file, run_record)
    env = {**environment(), "device": str(trainer.device), "torch_threads": torch.get_num_threads()}
    write_json_atomic(RunDir(run_dir).environment_file, env)
    if resumed:
        trainer.write_log()  # the log may lag the checkpoint after a kill between the two writes
        trainer.console.print(f"resuming {run_dir} at step {trainer.state.step} of {trainer.total_steps}")
    if config.order_by_importance and not resumed:  # a resumed checkpoint is reordered already
        trainer.order_by_importance()
    if config.fixed_teacher:
        trainer.load_fixed_teacher()
    trainer.run(stop_after_steps=stop_after_steps)
    finished = trainer.state.step >= trainer.total_steps
    if finished:
        write_json_atomic(RunDir(run_dir).run_file, {**run_record, "status": "finished"})
    trainer.supernet.remove()
    return TrainResult(run_dir, trainer.state.step, trainer.total_steps, pd.DataFrame(trainer.state.log_rows), finished)
