"""Task and in-place distillation losses.

Distillation (DESIGN.md): ``T^2 * CE(student / T, softmax(teacher / T)) + CE(student, y)``
for classification and multiple choice; MSE to the teacher's output for regression.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

REGRESSION = "regression"


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task_kind: str) -> torch.Tensor:
    if task_kind == REGRESSION:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def distillation_terms(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, task_kind: str, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distillation loss's two terms, (to the teacher, to the labels); regression has no label term (0)."""
    teacher = teacher.detach()
    if task_kind == REGRESSION:
        return F.mse_loss(student, teacher), torch.zeros((), device=student.device)
    soft_targets = F.softmax(teacher / temperature, dim=-1)
    soft = F.cross_entropy(student / temperature, soft_targets)
    return temperature**2 * soft, F.cross_entropy(student, labels)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, task_kind: str, temperature: float
) -> torch.Tensor:
    to_teacher, to_labels = distillation_terms(student, teacher, labels, task_kind, temperature)
    return to_teacher + to_labels


@torch.no_grad()
def distillation_gap(student: torch.Tensor, teacher: torch.Tensor, task_kind: str, temperature: float) -> float:
    """How far a student is from its teacher, for display: T^2 * KL(teacher || student) at temperature T, which is
    0 when they agree. The term optimised, T^2 * CE, is this plus T^2 * the teacher's entropy, a constant of about
    69 per sub-network for two nearly uniform classes at T = 10 (110 for three), which hides any progress."""
    if task_kind == REGRESSION:
        return F.mse_loss(student, teacher).item()
    log_student = F.log_softmax(student / temperature, dim=-1)
    soft_targets = F.softmax(teacher / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_student, soft_targets, reduction="batchmean").item()
