"""Reading (and writing) the field's label formats into the standard sample form (domains/base.py).

    coco.py     COCO JSON: boxes, labels, keypoints with their schema, polygons/RLE -> semantic masks
    masks.py    mask folders: label-id PNGs, or palette/RGB PNGs with a colour -> class map
    depth.py    depth folders: 16-bit PNGs with a scale, or .npy float metres
    images.py   image reading and the square resize every reader applies
    files.py    which files a split has (image folders, split lists, COCO files), read without torch
    folder.py   FolderDataset: a split of a catalog entry, read from disk, one sample per image

Every problem with the data raises `DataError` with one line naming the file,
the field and what was expected.
"""

from domains.formats.files import DataError

__all__ = ["DataError"]
