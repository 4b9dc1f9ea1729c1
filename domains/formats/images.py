"""Image folders, image reading, and the square resize every reader applies.

    files = list_images(Path("data/coco/val2017"))      # sorted relative paths: a deterministic order
    rgb = read_image(path)                                # uint8 [H, W, 3]; DataError if unreadable
    sample = resize_sample(sample, 64)                    # image bilinear, masks nearest, boxes scaled
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from domains.base import Sample
from domains.formats.files import IMAGE_SUFFIXES, DataError, list_images  # noqa: F401  (part of this surface)


def open_png(path: Path, what: str) -> Image.Image:
    """`path` opened with PIL (fully loaded); DataError naming `what` when missing or unreadable."""
    if not path.is_file():
        raise DataError(f"{path}: {what}: no such file; expected one per image")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: {what}: unreadable ({e}); expected an image file") from None
    return img


def read_image(path: Path) -> np.ndarray:
    """The RGB image at `path`: uint8 [H, W, 3]."""
    return np.asarray(open_png(path, "image").convert("RGB"))


def _nearest(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each output pixel, sampled at pixel centres."""
    return np.minimum(((np.arange(size_out) + 0.5) * size_in / size_out).astype(np.int64), size_in - 1)


def resize_sample(sample: Sample, size: int | None) -> Sample:
    """`sample` at size x size: image bilinear (antialiased), segmentation and depth nearest, boxes and
    keypoints scaled. `size` None, or a sample already that size, comes back unchanged."""
    h, w = sample["image"].shape[-2:]
    if size is None or (h, w) == (size, size):
        return sample
    out = dict(sample)
    out["image"] = F.interpolate(sample["image"][None], size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)[0].clamp_(0, 1)  # fmt: skip
    rows, cols = torch.from_numpy(_nearest(h, size)), torch.from_numpy(_nearest(w, size))
    for key in ("segmentation", "depth"):
        if key in sample:
            out[key] = sample[key][rows][:, cols].contiguous()
    scale = torch.tensor([size / w, size / h], dtype=torch.float32)
    if "boxes" in sample:
        out["boxes"] = sample["boxes"] * scale.repeat(2)
    if "keypoints" in sample:
        kp = sample["keypoints"].clone()  # [N, K, 3]
        kp[..., :2] *= scale
        kp[kp[..., 2] == 0] = 0.0  # unlabelled points stay (0, 0, 0)
        out["keypoints"] = kp
    return out


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


def write_image(path: Path, image: torch.Tensor) -> None:
    """float [3, H, W] in [0, 1] -> an 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(rgb).save(path)
