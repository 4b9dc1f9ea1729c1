"""Task types on one shared backbone: heads, losses, metrics, the training loop and weight transfer.

Importing the package registers every task module in `TASKS`.
"""

from tasks import depth, detection, keypoints, segmentation  # noqa: F401  (registers the tasks)
from tasks.base import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
