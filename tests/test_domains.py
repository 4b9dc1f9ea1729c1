import numpy as np
import pytest
import torch

from domains import DOMAINS, IGNORE, MIXED, VOCAB, SyntheticDataset, domain_names


@pytest.mark.parametrize("domain", [*DOMAINS.names(), MIXED])
def test_sample_form_and_label_consistency(domain):
    ds = SyntheticDataset("t", domain, "train", 6, 48)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 48, 48) and s["image"].dtype == torch.float32
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        seg, depth = s["segmentation"], s["depth"]
        assert seg.shape == depth.shape == (48, 48) and seg.dtype == torch.int64
        labels = set(seg.unique().tolist())
        assert labels <= set(range(len(ds.info.classes))) | {IGNORE}
        assert (depth >= 0).all() and (depth > 0).any()
        # surfaces at infinity (sky, open water) and nothing else have invalid depth
        far = {ds.info.classes.index(c) for c in ("sky", "water") if c in ds.info.classes}
        invalid_labels = set(seg[depth == 0].unique().tolist())
        if domain != "aerial":  # seen from above, water is a surface at finite depth
            assert invalid_labels <= far


def test_deterministic_per_dataset_split_index():
    a = SyntheticDataset("city", "driving", "train", 5, 32, seed=3)
    b = SyntheticDataset("city", "driving", "train", 5, 32, seed=3)
    for key in ("image", "segmentation", "depth"):
        assert torch.equal(a[4][key], b[4][key])
        assert torch.equal(a[2][key], a[2][key])
    other_split = SyntheticDataset("city", "driving", "val", 5, 32, seed=3)
    other_seed = SyntheticDataset("city", "driving", "train", 5, 32, seed=4)
    assert not torch.equal(a[0]["image"], other_split[0]["image"])
    assert not torch.equal(a[0]["image"], other_seed[0]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])


def test_domains_are_visually_distinct():
    """A nearest-centroid classifier on colour statistics tells the domains apart."""

    def features(img):
        x = img.reshape(3, -1)
        return torch.cat([x.mean(1), x.std(1), (x[:, 1:] - x[:, :-1]).abs().mean(1)]).numpy()

    names = DOMAINS.names()
    train = {d: np.stack([features(SyntheticDataset("a", d, "train", 20, 48)[i]["image"]) for i in range(20)])
             for d in names}  # fmt: skip
    centroids = np.stack([train[d].mean(0) for d in names])
    scale = np.concatenate(list(train.values())).std(0) + 1e-6
    correct = total = 0
    for k, d in enumerate(names):
        ds = SyntheticDataset("b", d, "val", 20, 48)
        for i in range(20):
            dist = (((features(ds[i]["image"]) - centroids) / scale) ** 2).sum(1)
            correct += int(dist.argmin() == k)
            total += 1
    assert correct / total >= 0.8, f"domains confusable: {correct}/{total} correct"


def test_mixed_dataset_draws_from_several_domains_with_union_label_space():
    ds = SyntheticDataset("mix", MIXED, "train", 30, 32, mix=("driving", "underwater"))
    expected = {c for d in ("driving", "underwater") for c in DOMAINS.get(d)().classes}
    assert set(ds.info.classes) == expected
    assert list(ds.info.classes) == [c for c in VOCAB if c in expected]
    seen = set()
    for i in range(len(ds)):
        names = {ds.info.classes[c] for c in ds[i]["segmentation"].unique().tolist() if c != IGNORE}
        seen |= {"driving" if names & {"road", "sky"} else "underwater"}
    assert seen == {"driving", "underwater"}


def test_bad_names_list_valid_choices():
    with pytest.raises(KeyError, match="expected one of: aerial, close-up, consumer, driving"):
        SyntheticDataset("x", "forest", "train", 1, 32)
    with pytest.raises(ValueError, match="expected one of: train, val, test"):
        SyntheticDataset("x", "driving", "dev", 1, 32)
    with pytest.raises(IndexError):
        SyntheticDataset("x", "driving", "train", 1, 32)[1]
    assert "mixed" in domain_names()
