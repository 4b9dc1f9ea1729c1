"""`tmx datasets`: list, check, export and draw the datasets of a catalog (domains/catalog.py).

    tmx datasets                                   # every dataset: domain, tasks, splits, on disk or missing
    tmx datasets check cityscapes                  # counts, class histograms, depth range, every problem found
    tmx datasets export synthetic-driving --format coco --format masks -o out/   # + out/catalog.yaml
    tmx datasets show coco -o grid.png             # samples with their labels overlaid
    tmx datasets gallery -o docs/img               # one grid per procedural domain

The catalog is --catalog FILE (or $TMX_CATALOG), default configs/catalog.yaml.
Bad input exits with status 2 and one line naming the file, the field and what
was expected; `check` lists every problem, then a one-line summary, and exits 2
if there were any. A split whose depth lies mostly outside 0.01-1,000 m is a
problem: its depth.scale is off.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

DEFAULT_CATALOG = "configs/catalog.yaml"
FORMATS = ("coco", "masks", "depth")


def fail(message: str, status: int = 2) -> NoReturn:
    """How every `tmx` command ends on bad input: one line on stderr, `tmx: MESSAGE`, and exit `status`."""
    click.echo(f"tmx: {message}", err=True)
    sys.exit(status)


def _catalog_option(fn):
    return click.option("--catalog", "catalog_file", envvar="TMX_CATALOG", show_envvar=True,
                        type=click.Path(dir_okay=False),
                        help=f"Catalog YAML file (default: {DEFAULT_CATALOG})")(fn)  # fmt: skip


def _load(ctx: click.Context, catalog_file: str | None):
    from domains.catalog import CatalogError, load_catalog

    path = catalog_file or (ctx.obj or {}).get("catalog") or DEFAULT_CATALOG
    try:
        return load_catalog(path)
    except CatalogError as e:
        fail(f"{e}; pass --catalog FILE" if "no such catalog file" in str(e) else str(e))


def _open(catalog, name: str, split: str, image_size: int | None, count: int | None = None):
    from domains.catalog import CatalogError
    from domains.formats import DataError

    try:
        return catalog.open(name, split, image_size, count)
    except (CatalogError, DataError) as e:
        fail(str(e))


def _entry(catalog, name: str):
    from domains.catalog import CatalogError

    try:
        return catalog.get(name)
    except CatalogError as e:
        fail(str(e))


@click.group(invoke_without_command=True)
@_catalog_option
@click.pass_context
def datasets(ctx: click.Context, catalog_file: str | None) -> None:
    """List the catalog's datasets: name, domain, tasks, splits, and whether their files are on disk."""
    ctx.obj = {"catalog": catalog_file}
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    catalog = _load(ctx, catalog_file)
    table = Table(title=f"{catalog.file} (root {catalog.root_dir})")
    for col in ("name", "domain", "tasks", "splits", "on disk"):
        table.add_column(col)
    for name in sorted(catalog.datasets):
        entry = catalog.datasets[name]
        splits = ", ".join(f"{s} {p.size}" if p.size else s for s, p in entry.splits.items())
        missing = catalog.missing(name)
        disk = "procedural" if entry.procedural else ("present" if not missing else f"missing ({len(missing)} paths)")
        table.add_row(name, entry.domain, ", ".join(catalog.tasks(name)), splits, disk)
    Console(width=160).print(table)


@datasets.command()
@click.argument("name")
@_catalog_option
@click.option("--split", "splits", multiple=True, help="Check only this split (repeatable; default: all)")
@click.option("--limit", type=click.IntRange(min=1), help="Check only the first N samples of each split")
@click.pass_context
def check(ctx: click.Context, name: str, catalog_file: str | None, splits: tuple[str, ...], limit: int | None) -> None:
    """Read every sample of dataset NAME: counts per split, class histograms, depth range, and every problem found."""
    from rich.progress import Progress

    from domains.formats.depth import DepthStats
    from domains.formats.folder import histograms

    catalog = _load(ctx, catalog_file)
    entry = _entry(catalog, name)
    for s in splits:
        if s not in entry.splits:
            fail(f"{catalog.file}: datasets.{name}.splits: no split {s!r}; expected one of: {', '.join(entry.splits)}")
    missing = catalog.missing(name, splits or None)
    if missing:
        fail(f"{catalog.file}: {name}: missing on disk: {'; '.join(missing)}")
    click.echo(f"{name}: {entry.domain}; {', '.join(catalog.tasks(name))} ({catalog.file})")
    problems: list[str] = []
    pixels = objects = None
    info = None
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        for split, spec in entry.splits.items():
            if splits and split not in splits:
                continue
            ds = _open(catalog, name, split, None)
            n = min(len(ds), limit) if limit else len(ds)
            info = ds.info
            bar = progress.add_task(f"{name}/{split}", total=n)
            problems.extend(getattr(ds, "file_problems", ()))
            depth = DepthStats()

            def samples(ds=ds, n=n, bar=bar, depth=depth):
                checked = ds.iter_checked(n) if hasattr(ds, "iter_checked") else ((ds[i], []) for i in range(n))
                for sample, found in checked:  # a procedural dataset has no files to check
                    problems.extend(found)
                    progress.advance(bar)
                    if sample is not None and "depth" in sample:
                        depth.add(sample["depth"].numpy())
                    yield sample

            p, o, read = histograms(samples(), info)
            pixels = p if pixels is None else pixels + p
            objects = o if objects is None else objects + o
            declared = f" (catalog says {spec.size})" if spec.size and spec.size != len(ds) else ""
            if declared:
                problems.append(f"{catalog.file}: datasets.{name}.splits.{split}.size: {spec.size}; "
                                f"found {len(ds)} images")  # fmt: skip
            click.echo(f"  {split}: {len(ds)} images{declared}" + (f", {n} checked" if n < len(ds) else ""))
            if depth.pixels:
                click.echo(f"  {split} depth: {depth.describe()}")
                wrong = depth.implausible()
                if wrong:
                    problems.append(_depth_problem(catalog, name, split, wrong))
    if info is not None and len(info.classes) and pixels is not None and pixels.sum():
        share = pixels / pixels.sum()
        parts = [f"{c} {100 * share[i]:.1f}%" for i, c in enumerate(info.classes)] + [f"ignore {100 * share[-1]:.1f}%"]
        click.echo("  classes (share of pixels): " + ", ".join(parts))
    if info is not None and len(info.things) and objects is not None:
        click.echo("  things (instances): " + ", ".join(f"{t} {int(objects[i])}" for i, t in enumerate(info.things)))
    if info is not None and info.keypoints is not None:
        click.echo(f"  keypoints: {info.keypoints.category}: {', '.join(info.keypoints.names)}")
    if problems:
        for line in problems:
            click.echo(f"  problem: {line}")
        files = len({line.split(": ")[0] for line in problems})
        fail(f"{name}: {len(problems)} problems in {files} files (listed above)")
    click.echo("  no problems found")


def _depth_problem(catalog, name: str, split: str, wrong: str) -> str:
    """The problem line of a split whose depths are implausible: its folder, what was found, the field to fix."""
    from domains.formats.depth import PLAUSIBLE, metres

    entry = catalog.get(name)
    expected = f"expected depths between {metres(PLAUSIBLE[0])} and {metres(PLAUSIBLE[1])} m"
    d, folder = entry.depth, entry.splits[split].depth
    if d is None or folder is None:  # procedural: the generator's own metres
        return f"{name}/{split}: depth: {wrong}; {expected}"
    field = f"datasets.{name}.depth.scale ({d.scale:,.10g})"
    if d.encoding == "disparity":
        field += f" and depth.baseline_focal ({d.baseline_focal:,.10g})"
    return f"{catalog.path(folder)}: depth (split {split}): {wrong}; {expected}: check {catalog.file}: {field}"


@datasets.command()
@click.argument("name")
@_catalog_option
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS),
              help="Label formats to write (repeatable; default: every one the dataset has labels for)")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to write")
@click.option("--image-size", type=click.IntRange(16, 4096), help="Side of the written images (default: the entry's)")
@click.option("--count", type=click.IntRange(min=1), help="Samples per split (default: the split's size)")
@click.option("--depth-format", type=click.Choice(["npy", "png"]), default="npy", show_default=True,
              help="Depth as float metres (.npy, exact) or 16-bit PNG at scale 256 (KITTI's)")
@click.pass_context
def export(ctx: click.Context, name: str, catalog_file: str | None, formats: tuple[str, ...], output: str,
           image_size: int | None, count: int | None, depth_format: str) -> None:  # fmt: skip
    """Write dataset NAME (e.g. a procedural one) as images plus COCO JSON, mask and depth folders.

    OUTPUT/catalog.yaml registers the result under NAME, so
    `tmx datasets check NAME --catalog OUTPUT/catalog.yaml` reads it back.
    """
    from domains.formats import DataError
    from domains.formats.export import ExportError, export_dataset

    catalog = _load(ctx, catalog_file)
    entry = _entry(catalog, name)
    size = image_size or (entry.procedural.image_size if entry.procedural else None)
    if size is None:
        fail(f"{name}: a dataset read from disk is exported at one square size; expected --image-size N")
    opened = {split: _open(catalog, name, split, size, min(count, spec.size) if count and spec.size else count)
              for split, spec in entry.splits.items()}  # fmt: skip
    try:
        written = export_dataset(name, entry.domain, opened, Path(output), formats or None, depth_format)
    except (ExportError, DataError) as e:
        fail(str(e))
    click.echo(f"Wrote {name} to {output}: " + ", ".join(f"{s} {n} samples" for s, n in written.items())
               + f"; read it back with: tmx datasets check {name} --catalog {Path(output) / 'catalog.yaml'}")  # fmt: skip


@datasets.command()
@click.argument("name")
@_catalog_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option("--split", default=None, help="Split to draw from (default: val if it has one, else the first)")
@click.option("--count", default=8, show_default=True, type=click.IntRange(1, 64), help="Samples to draw")
@click.option("--per-row", default=4, show_default=True, type=click.IntRange(1, 16), help="Samples per row")
@click.option("--image-size", default=128, show_default=True, type=click.IntRange(16, 1024), help="Side of each tile")
@click.pass_context
def show(ctx: click.Context, name: str, catalog_file: str | None, output: str, split: str | None, count: int,
         per_row: int, image_size: int) -> None:  # fmt: skip
    """Draw samples of NAME with their labels overlaid: mask, boxes, keypoints and skeleton, depth."""
    from domains.formats import DataError
    from domains.show import draw_grid

    catalog = _load(ctx, catalog_file)
    entry = _entry(catalog, name)
    split = split or ("val" if "val" in entry.splits else next(iter(entry.splits)))
    ds = _open(catalog, name, split, image_size)
    try:
        samples = [ds[i] for i in range(min(count, len(ds)))]
    except DataError as e:
        fail(str(e))
    grid = draw_grid(samples, ds.info, per_row, title=f"{name} ({entry.domain}) {split}")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    grid.save(output, optimize=True)
    click.echo(f"Wrote {output}: {len(samples)} samples of {name}/{split}")


@datasets.command()
@click.option("-o", "--output", default="docs/img", show_default=True, type=click.Path(file_okay=False))
@click.option("--count", default=6, show_default=True, type=click.IntRange(1, 32), help="Samples per domain")
@click.option("--per-row", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--image-size", default=96, show_default=True, type=click.IntRange(16, 512))
def gallery(output: str, count: int, per_row: int, image_size: int) -> None:
    """Render one grid per procedural domain into OUTPUT/domain-NAME.png (the README's pictures)."""
    from domains import DOMAINS, SyntheticDataset
    from domains.show import draw_grid

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS.names():
        ds = SyntheticDataset(f"gallery-{domain}", domain, "val", count, image_size)
        path = out / f"domain-{domain}.png"
        draw_grid([ds[i] for i in range(count)], ds.info, per_row, title=domain).save(path, optimize=True)
        click.echo(f"Wrote {path} ({path.stat().st_size // 1024} KB)")
