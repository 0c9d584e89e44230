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


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, task_kind: str, temperature: float
) -> torch.Tensor:
    teacher = teacher.detach()
    if task_kind == REGRESSION:
        return F.mse_loss(student, teacher)
    soft_targets = F.softmax(teacher / temperature, dim=-1)
    soft = F.cross_entropy(student / temperature, soft_targets)
    return temperature**2 * soft + F.cross_entropy(student, labels)
