"""Task types on one shared backbone: heads, losses, metrics, the training loop and weight transfer.

`TASKS`, `Task` and `get_task` (tasks.base) come with every task module
registered in `TASKS`. Importing the package itself imports no torch: the
study spec reads `tasks.openmmlab` and `tasks.backbone_names` without it.
"""

__all__ = ["TASKS", "Task", "get_task"]


def __getattr__(name: str):
    if name in __all__:
        from tasks import base

        base.register_tasks()
        return getattr(base, name)
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
