import numpy as np
import pytest
import torch

from domains import DOMAINS, IGNORE, MIXED, PROCEDURAL_TASKS, VOCAB, SyntheticDataset, domain_names
from domains.synthetic.render import KEYPOINT_TOLERANCE, Canvas
from domains.synthetic.scenes import ID, MIN_PIXELS, PERSON, Palette, _person, finish, render_scene
from domains.transforms import augment, crop, hflip, random_crop, rescale

SEVEN = ("aerial", "close-up", "consumer", "driving", "indoor", "synthetic", "underwater")


def _scene(domain, seed, size=48):
    """A scene of `domain` with the canvas it was painted on (for its keypoint depths)."""
    canvases = []

    def canvas():
        canvases.append(Canvas(size, size))
        return canvases[-1]

    scene = render_scene(DOMAINS.get(domain)(), np.random.default_rng(seed), size, canvas=canvas)
    return scene, canvases[0]


def test_mensinks_seven_domains_are_registered():
    assert tuple(DOMAINS.names()) == SEVEN
    assert PROCEDURAL_TASKS == ("segmentation", "depth", "detection", "keypoints")


@pytest.mark.parametrize("domain", [*DOMAINS.names(), MIXED])
def test_sample_form_and_label_consistency(domain):
    ds = SyntheticDataset("t", domain, "train", 6, 48)
    info = ds.info
    k = len(info.keypoints.names) if info.keypoints else 0
    objects = visible = 0
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 48, 48) and s["image"].dtype == torch.float32
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        seg, depth = s["segmentation"], s["depth"]
        assert seg.shape == depth.shape == (48, 48) and seg.dtype == torch.int64 and depth.dtype == torch.float32
        labels = set(seg.unique().tolist())
        assert labels <= set(range(len(info.classes))) | {IGNORE}
        assert (depth >= 0).all() and (depth > 0).any()
        # surfaces at infinity (sky, open water) and nothing else have invalid depth
        far = {info.classes.index(c) for c in ("sky", "water") if c in info.classes}
        invalid_labels = set(seg[depth == 0].unique().tolist())
        if domain != "aerial":  # seen from above, water is a surface at finite depth
            assert invalid_labels <= far
        n = len(s["labels"])
        assert s["boxes"].shape == (n, 4) and s["boxes"].dtype == torch.float32
        assert s["labels"].dtype == torch.int64 and set(s["labels"].tolist()) <= set(range(len(info.things)))
        b = s["boxes"]
        assert ((b[:, :2] >= 0) & (b[:, 2:] <= 48) & (b[:, 2:] > b[:, :2])).all()
        objects += n
        if domain == MIXED:  # seven domains, five schemas: no shared keypoints
            assert "keypoints" not in s
            continue
        kp = s["keypoints"]
        assert kp.shape == (n, k, 3) and kp.dtype == torch.float32
        assert set(kp[..., 2].unique().tolist()) <= {0.0, 1.0, 2.0}
        other = s["labels"] != info.things.index(info.keypoints.category)
        assert (kp[other] == 0).all()  # objects of other classes carry no keypoints
        visible += int((kp[..., 2] == 2).sum())
    assert objects > 0, "no object instances"
    if domain != MIXED:
        assert info.tasks == PROCEDURAL_TASKS and visible > 0, "no visible keypoints"
    else:
        assert info.tasks == ("segmentation", "depth", "detection") and info.keypoints is None


@pytest.mark.parametrize("domain", SEVEN)
def test_boxes_cover_exactly_the_visible_pixels_of_each_instance(domain):
    for seed in range(3):
        scene, cv = _scene(domain, seed)
        counts = np.bincount(scene.instances.ravel(), minlength=len(cv.objects) + 1)
        kept = set(scene.ids.tolist())
        assert kept == {i for i in range(1, len(counts)) if counts[i] >= MIN_PIXELS}
        for i, cls, box in zip(scene.ids, scene.labels, scene.boxes, strict=True):
            ys, xs = np.nonzero(scene.instances == i)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert (scene.classes[ys, xs] == cls).all()  # an instance's pixels carry its class


def test_boxes_are_tight_on_the_segmentation_of_their_class():
    ds = SyntheticDataset("tight", "consumer", "train", 4, 48)
    for i in range(len(ds)):
        s = ds[i]
        for box, label in zip(s["boxes"].long().tolist(), s["labels"].tolist(), strict=True):
            x0, y0, x1, y1 = box
            mask = s["segmentation"][y0:y1, x0:x1] == ds.info.classes.index(ds.info.things[label])
            # every edge of the box touches a pixel of the object's class
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()


@pytest.mark.parametrize("domain", SEVEN)
def test_keypoint_visibility_follows_the_instance_map_and_z_buffer(domain):
    for seed in range(3):
        scene, cv = _scene(domain, seed)
        for n, i in enumerate(scene.ids):
            if not scene.keypoints.shape[1] or scene.labels[n] != ID[DOMAINS.get(domain)().keypoints.category]:
                continue
            depth = cv.points[int(i)][:, 2]
            for (x, y, v), d in zip(scene.keypoints[n], depth, strict=True):
                inside = 0 <= x < 48 and 0 <= y < 48
                assert (v == 0) == (not inside)
                if v == 2:
                    assert scene.instances[int(y), int(x)] == i
                if v == 1:  # hidden: something nearer covers the pixel, or the part is thinner than a pixel
                    r, c = int(y), int(x)
                    covered = cv.z[r, c] < d * (1 - KEYPOINT_TOLERANCE)
                    around = (slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2))
                    seen = (scene.instances[around] == i) & (cv.z[around] >= d * (1 - KEYPOINT_TOLERANCE))
                    assert covered or not seen.any()  # a pixel next to it shows the part: snapped, not hidden


def test_keypoint_behind_a_nearer_object_is_occluded_and_outside_the_image_unlabelled():
    domain = DOMAINS.get("indoor")()
    rng = np.random.default_rng(0)
    cv = Canvas(48, 48)
    pal = Palette(cv, rng, domain.look)
    cv.paint(np.ones((48, 48), bool), (0.8, 0.8, 0.7), ID["wall"], 8.0)
    _person(cv, pal, rng, cx=24.0, feet_y=60.0, height=56.0, z=5.0)  # feet below the bottom edge
    hand = cv.points[1][PERSON.names.index("left_hand")]
    blocker = cv.new_instance(ID["furniture"])  # a cabinet in front of the person's left hand
    cv.paint(cv.rect(hand[0] - 3, hand[1] - 3, hand[0] + 3, hand[1] + 3), (0.3, 0.2, 0.1), ID["furniture"], 2.0,
             blocker)  # fmt: skip
    scene = finish(cv, domain, rng)
    person = list(scene.labels).index(ID["person"])
    vis = dict(zip(PERSON.names, scene.keypoints[person, :, 2].tolist(), strict=True))
    assert vis["left_hand"] == 1
    assert vis["left_foot"] == vis["right_foot"] == 0
    assert vis["head"] == vis["right_shoulder"] == 2
    box = scene.boxes[person]
    assert box[3] == 48  # cut by the image's edge: the box stops at the last visible row


def test_self_occluded_fish_fin_is_marked_occluded():
    """A fish seen from the side shows one pectoral fin; the far one is behind its body (1)."""
    far = near = 0
    for seed in range(4):
        scene, cv = _scene("underwater", seed, 64)
        for n in range(len(scene.ids)):
            kp = scene.keypoints[n]
            in_view = kp[0, 2] == 2 and kp[2, 2] == 2 and kp[3, 2] == 2  # snout, tail and belly visible
            if in_view and abs(kp[0, 0] - kp[2, 0]) >= 8:  # and large enough for its body to cover a pixel
                facing_right = kp[0, 0] > kp[2, 0]
                shown, hidden = (kp[5, 2], kp[4, 2]) if facing_right else (kp[4, 2], kp[5, 2])
                near += shown == 2  # facing right, a fish shows its right side
                far += hidden == 1
                assert hidden != 2
    assert far > 0 and near > 0


@pytest.mark.parametrize(("domain", "left", "right", "left_is_image_left"), [
    ("driving", "left_light", "right_light", True),  # seen from behind
    ("indoor", "left_shoulder", "right_shoulder", False),  # facing the camera
    ("consumer", "left_hip", "right_hip", False),
])  # fmt: skip
def test_left_and_right_keypoints_sit_on_their_sides_and_survive_a_flip(domain, left, right, left_is_image_left):
    ds = SyntheticDataset("lr", domain, "train", 6, 64)
    schema = ds.info.keypoints
    a, b = schema.names.index(left), schema.names.index(right)
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        for sample in (s, hflip(s, schema.flip_pairs)):
            kp = sample["keypoints"]
            both = (kp[:, a, 2] > 0) & (kp[:, b, 2] > 0)
            sign = 1 if left_is_image_left else -1
            assert (sign * (kp[both, b, 0] - kp[both, a, 0]) > 0).all()
            checked += int(both.sum())
    assert checked > 0


@pytest.mark.parametrize(("domain", "front", "back", "left", "right"), [
    ("aerial", "front_left", "rear_left", "front_left", "front_right"),
    ("close-up", "head", "abdomen", "left_forewing", "right_forewing"),
])  # fmt: skip
def test_keypoints_seen_from_above_keep_their_handedness_through_a_flip(domain, front, back, left, right):
    ds = SyntheticDataset("top", domain, "train", 6, 64)
    schema = ds.info.keypoints
    idx = [schema.names.index(n) for n in (front, back, left, right)]
    checked = 0
    for i in range(len(ds)):
        s = ds[i]
        for sample in (s, hflip(s, schema.flip_pairs)):
            kp = sample["keypoints"][:, idx]  # [N, 4, 3]
            ok = (kp[..., 2] > 0).all(1)
            f = kp[ok, 0, :2] - kp[ok, 1, :2]  # forward
            to_left = torch.stack([f[:, 1], -f[:, 0]], 1)  # seen from above (image y down), the object's left
            assert (((kp[ok, 2, :2] - kp[ok, 3, :2]) * to_left).sum(1) > 0).all()
            checked += int(ok.sum())
    assert checked > 0


def test_deterministic_per_dataset_split_index():
    a = SyntheticDataset("city", "driving", "train", 5, 32, seed=3)
    b = SyntheticDataset("city", "driving", "train", 5, 32, seed=3)
    forward = [a[i] for i in range(5)]
    backward = [b[i] for i in reversed(range(5))][::-1]  # the order of access does not matter
    again = [a[i] for i in (4, 2, 0, 3, 1)]  # nor does having rendered a sample before
    for key in ("image", "segmentation", "depth", "boxes", "labels", "keypoints"):
        for i, j in enumerate((4, 2, 0, 3, 1)):
            assert torch.equal(forward[i][key], backward[i][key]), (key, i)
            assert torch.equal(forward[j][key], again[i][key]), (key, j)
    assert not torch.equal(forward[0]["image"], forward[1]["image"])  # each index is a scene of its own
    other_split = SyntheticDataset("city", "driving", "val", 5, 32, seed=3)
    other_seed = SyntheticDataset("city", "driving", "train", 5, 32, seed=4)
    other_name = SyntheticDataset("town", "driving", "train", 5, 32, seed=3)
    for other in (other_split, other_seed, other_name):
        assert not torch.equal(a[0]["image"], other[0]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])


def test_domains_are_visually_distinct():
    """A nearest-centroid classifier on colour statistics (whole image and its halves) tells the domains apart."""

    def features(img):
        x = img.reshape(3, -1)
        top, bottom = img[:, :24].reshape(3, -1), img[:, 24:].reshape(3, -1)
        grad = (img[:, :, 1:] - img[:, :, :-1]).abs().reshape(3, -1)
        return torch.cat([x.mean(1), x.std(1), grad.mean(1), top.mean(1), bottom.mean(1)]).numpy()

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
    assert ds.info.things == ("vehicle", "person", "fish")
    assert ds.info.keypoints is None and "keypoints" not in ds.info.tasks  # two schemas
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        names = {ds.info.classes[c] for c in s["segmentation"].unique().tolist() if c != IGNORE}
        seen |= {"driving" if names & {"road", "sky"} else "underwater"}
        things = {ds.info.things[c] for c in s["labels"].tolist()}
        assert not (things & {"vehicle", "person"} and "fish" in things)  # one domain per sample
        assert "keypoints" not in s
    assert seen == {"driving", "underwater"}


def test_mixed_domains_sharing_a_schema_keep_keypoints():
    ds = SyntheticDataset("people", MIXED, "train", 8, 32, mix=("consumer", "indoor"))
    assert ds.info.keypoints == PERSON and ds.info.tasks == PROCEDURAL_TASKS
    person = ds.info.things.index("person")
    kps = [ds[i]["keypoints"] for i in range(len(ds))]
    labels = [ds[i]["labels"] for i in range(len(ds))]
    assert any((k[lab == person][..., 2] == 2).any() for k, lab in zip(kps, labels, strict=True))


def test_class_subsets_restrict_what_is_drawn_and_labelled():
    only_cars = SyntheticDataset("cars", "driving", "train", 6, 48, things=("vehicle",))
    assert only_cars.info.things == ("vehicle",) and "person" not in only_cars.info.classes
    assert only_cars.info.keypoints.category == "vehicle"
    n = 0
    for i in range(len(only_cars)):
        s = only_cars[i]
        assert (s["labels"] == 0).all()
        assert s["segmentation"].max() < len(only_cars.info.classes) or s["segmentation"].max() == IGNORE
        n += len(s["labels"])
    assert n > 0
    full = SyntheticDataset("cars", "driving", "train", 6, 48)
    assert sum(int((full[i]["labels"] == full.info.things.index("person")).sum()) for i in range(6)) > 0
    walkers = SyntheticDataset("walkers", "driving", "train", 2, 48, things=("person",))
    assert walkers.info.keypoints is None and walkers.info.tasks == ("segmentation", "depth", "detection")
    assert "keypoints" not in walkers[0]
    with pytest.raises(ValueError, match="expected a non-empty subset of vehicle, person"):
        SyntheticDataset("x", "driving", "train", 1, 32, things=("fish",))


def test_blend_moves_the_look_and_keeps_the_scene():
    plain = SyntheticDataset("b", "driving", "train", 2, 32)
    moved = SyntheticDataset("b", "driving", "train", 2, 32, blend=("underwater", 1.0))
    for key in ("segmentation", "depth", "boxes", "labels", "keypoints"):
        assert torch.equal(plain[0][key], moved[0][key])
    assert moved[0]["image"][2].mean() > moved[0]["image"][0].mean()  # the underwater cast: blue over red
    assert not torch.equal(plain[0]["image"], moved[0]["image"])


def test_bad_names_list_valid_choices():
    with pytest.raises(KeyError, match="expected one of: aerial, close-up, consumer, driving"):
        SyntheticDataset("x", "forest", "train", 1, 32)
    with pytest.raises(ValueError, match="expected one of: train, val, test"):
        SyntheticDataset("x", "driving", "dev", 1, 32)
    with pytest.raises(IndexError):
        SyntheticDataset("x", "driving", "train", 1, 32)[1]
    assert "mixed" in domain_names()


# -- transforms ---------------------------------------------------------------------------------


def _toy(h=8, w=10):
    """A hand-made sample: image coding each pixel's position, two objects, three keypoints (a, left, right)."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    image = torch.stack([xx / w, yy / h, torch.full((h, w), 0.5)])
    seg = (xx.long() + 10 * yy.long()) % 7
    boxes = torch.tensor([[1.0, 2.0, 4.0, 6.0], [6.0, 0.0, 10.0, 3.0]])
    kps = torch.tensor([[[2.5, 3.5, 2.0], [1.5, 2.5, 1.0], [3.5, 2.5, 2.0]],
                        [[7.5, 1.5, 2.0], [0.0, 0.0, 0.0], [9.5, 0.5, 2.0]]])  # fmt: skip
    return {"image": image, "segmentation": seg, "depth": yy + 1.0, "boxes": boxes,
            "labels": torch.tensor([0, 1]), "keypoints": kps}  # fmt: skip


def test_hflip_mirrors_pixels_boxes_and_keypoints_and_swaps_pairs():
    s = _toy()
    f = hflip(s, flip_pairs=((1, 2),))
    for key in ("image", "segmentation", "depth"):
        assert torch.equal(f[key], s[key].flip(-1))
    assert f["boxes"].tolist() == [[6.0, 2.0, 9.0, 6.0], [0.0, 0.0, 4.0, 3.0]]
    assert f["keypoints"][0].tolist() == [[7.5, 3.5, 2.0], [6.5, 2.5, 2.0], [8.5, 2.5, 1.0]]
    assert f["keypoints"][1].tolist() == [[2.5, 1.5, 2.0], [0.5, 0.5, 2.0], [0.0, 0.0, 0.0]]  # unlabelled stays 0
    back = hflip(f, flip_pairs=((1, 2),))
    for key in s:
        assert torch.equal(back[key], s[key])
    assert torch.equal(s["boxes"], _toy()["boxes"])  # the input is untouched


def test_hflip_keeps_boxes_tight_on_a_rendered_scene():
    ds = SyntheticDataset("flip", "driving", "train", 2, 48)
    s = ds[0]
    f = hflip(s, ds.info.keypoints.flip_pairs)
    for box, label in zip(f["boxes"].long().tolist(), f["labels"].tolist(), strict=True):
        x0, y0, x1, y1 = box
        mask = f["segmentation"][y0:y1, x0:x1] == ds.info.classes.index(ds.info.things[label])
        assert mask[:, 0].any() and mask[:, -1].any()
    kp = f["keypoints"]
    vis = kp[..., 2] == 2
    cls = f["segmentation"][kp[..., 1][vis].long(), kp[..., 0][vis].long()]
    assert (cls == ds.info.classes.index("vehicle")).all()  # visible keypoints still land on their object


def test_rescale_interpolates_images_and_keeps_labels_nearest():
    s = _toy()
    r = rescale(s, 2.0)
    assert r["image"].shape == (3, 16, 20) and r["segmentation"].shape == r["depth"].shape == (16, 20)
    assert r["segmentation"].dtype == torch.int64
    assert torch.equal(r["segmentation"][::2, ::2], s["segmentation"])  # nearest: every label from a source pixel
    assert set(r["depth"].unique().tolist()) <= set(s["depth"].unique().tolist())
    assert torch.allclose(r["boxes"], s["boxes"] * 2)
    assert torch.allclose(r["keypoints"][..., :2], s["keypoints"][..., :2] * 2)
    assert torch.equal(r["keypoints"][..., 2], s["keypoints"][..., 2])
    assert abs(float(r["image"][0].mean()) - float(s["image"][0].mean())) < 0.03  # bilinear, not a shift
    small = rescale(s, 0.5)
    assert small["image"].shape == (3, 4, 5) and torch.allclose(small["boxes"], s["boxes"] / 2)


def test_crop_pads_clips_drops_and_unlabels():
    s = _toy()
    c = crop(s, top=-2, left=5, size=6)  # rows -2..3, columns 5..10 (one past the right edge)
    assert c["image"].shape == (3, 6, 6)
    assert (c["image"][:, :2] == 0).all() and (c["segmentation"][:2] == IGNORE).all() and (c["depth"][:2] == 0).all()
    assert (c["segmentation"][:, 5] == IGNORE).all()  # past the right edge
    assert torch.equal(c["segmentation"][2:, :5], s["segmentation"][0:4, 5:10])
    assert c["boxes"].tolist() == [[1.0, 2.0, 5.0, 5.0]]  # the first object is gone, the second shifted
    assert c["labels"].tolist() == [1]
    assert c["keypoints"].tolist() == [[[2.5, 3.5, 2.0], [0.0, 0.0, 0.0], [4.5, 2.5, 2.0]]]
    partial = crop(s, top=0, left=0, size=3)  # cuts through the first object
    assert partial["boxes"].tolist() == [[1.0, 2.0, 3.0, 3.0]]
    assert partial["keypoints"][0, :, 2].tolist() == [0.0, 1.0, 0.0]  # only (1.5, 2.5) is inside


def test_random_crop_keeps_a_whole_object_when_one_fits():
    s = {"image": torch.rand(3, 64, 64), "boxes": torch.tensor([[3.0, 5.0, 60.0, 50.0], [40.0, 44.0, 52.0, 58.0]]),
         "labels": torch.tensor([0, 1])}  # fmt: skip
    for seed in range(30):
        c = random_crop(s, torch.Generator().manual_seed(seed), 20)
        assert c["image"].shape == (3, 20, 20)
        whole = (c["labels"] == 1) & torch.isclose(c["boxes"][:, 2] - c["boxes"][:, 0], torch.tensor(12.0)) & \
            torch.isclose(c["boxes"][:, 3] - c["boxes"][:, 1], torch.tensor(14.0))  # fmt: skip
        assert whole.any(), f"seed {seed}: the only object that fits was cut"
    # with nothing that fits, any crop will do, and the box is clipped
    big = random_crop({"image": s["image"], "boxes": s["boxes"][:1], "labels": s["labels"][:1]},
                      torch.Generator().manual_seed(0), 20)  # fmt: skip
    assert big["boxes"].shape == (1, 4) and float((big["boxes"][:, 2:] - big["boxes"][:, :2]).max()) <= 20


@pytest.mark.parametrize("size", [32, 48, 64])
def test_augment_gives_fixed_size_and_is_deterministic(size):
    ds = SyntheticDataset("aug", "indoor", "train", 3, 48)
    pairs = ds.info.keypoints.flip_pairs
    for i in range(len(ds)):
        s = ds[i]
        for seed in range(4):
            a = augment(s, torch.Generator().manual_seed(seed), size=size, flip_pairs=pairs)
            b = augment(s, torch.Generator().manual_seed(seed), size=size, flip_pairs=pairs)
            assert a["image"].shape == (3, size, size) and a["segmentation"].shape == a["depth"].shape == (size, size)
            for key in s:
                assert torch.equal(a[key], b[key]) and a[key].dtype == s[key].dtype
            n = len(a["labels"])
            assert a["boxes"].shape == (n, 4) and a["keypoints"].shape == (n, len(pairs) * 2 + 1, 3)
            assert ((a["boxes"] >= 0) & (a["boxes"] <= size)).all()
            kp = a["keypoints"]
            labelled = kp[..., 2] > 0
            assert ((kp[..., :2][labelled] >= 0) & (kp[..., :2][labelled] < size)).all()
        c = augment(s, torch.Generator().manual_seed(0), size=size)
        d = augment(s, torch.Generator().manual_seed(1), size=size)
        assert not torch.equal(c["image"], d["image"])
