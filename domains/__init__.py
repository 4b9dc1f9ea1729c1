"""Image domains and datasets: images and labels in one standard form, nothing about models."""

from domains.base import DENSE, IGNORE, INSTANCE, DatasetInfo, KeypointSchema, Sample
from domains.synthetic.dataset import MIXED, TASKS, SyntheticDataset, domain_names
from domains.synthetic.scenes import DOMAINS, VOCAB

__all__ = ["DENSE", "DOMAINS", "IGNORE", "INSTANCE", "KeypointSchema", "MIXED", "VOCAB", "DatasetInfo", "Sample", "SyntheticDataset", "TASKS", "domain_names"]
