"""What a job returns (`JobResult`): the scheduler passes it to the jobs downstream, the tracker logs it.

A module of its own, importing nothing heavy: the driver (scheduler, tracker) handles results without importing
torch, which only the code that runs a job (matrix/execute.py) needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class JobResult:
    key: str
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool
    checkpoint: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    moved: list[str] = field(default_factory=list)  # tensors moved from the upstream checkpoint
    skipped: list[str] = field(default_factory=list)  # and those not moved, each with its reason
    started: float = 0.0
    ended: float = 0.0
    train_ids: list[str] = field(default_factory=list)  # the ids (file names) of the samples it trained on
    system: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # matrix/system_metrics.py samples
