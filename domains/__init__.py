"""Image domains and datasets: images and labels in one standard form, nothing about models.

Importing the package imports no torch (a study or catalog is checked without it);
`SyntheticDataset`, which makes tensors, is imported on first use.
"""

from domains.base import DENSE, IGNORE, INSTANCE, DatasetInfo, KeypointSchema, Sample
from domains.synthetic.scenes import DOMAINS, VOCAB
from domains.synthetic.spaces import MIXED, PROCEDURAL_TASKS, domain_names

__all__ = ["DENSE", "DOMAINS", "IGNORE", "INSTANCE", "KeypointSchema", "MIXED", "PROCEDURAL_TASKS", "VOCAB",
           "DatasetInfo", "Sample", "SyntheticDataset", "domain_names"]  # fmt: skip


def __getattr__(name: str):
    if name == "SyntheticDataset":
        from domains.synthetic.dataset import SyntheticDataset

        return SyntheticDataset
    raise AttributeError(f"module 'domains' has no attribute {name!r}")
