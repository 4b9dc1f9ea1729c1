"""Install the OpenMMLab extra into the running interpreter's environment: what `make openmmlab` runs.

    python -m tasks.openmmlab.install

mmcv 2.1.0 (what mmdet 3.3.0 needs) has no wheel for torch 2.14, so it is built
from its source package with its compiled ops: its setup.py's `-std=c++17`
becomes `-std=c++20` (torch 2.14's headers need C++20), with `setuptools<81`
and `--no-build-isolation` (the build must see the installed torch), and
MMCV_WITH_OPS=1, FORCE_CUDA=0 where there is no GPU, MAX_JOBS = the CPU count.
The built wheel is cached outside the repository, keyed by the mmcv, torch and
Python versions and, for a build with CUDA ops, torch's CUDA version
($TMX_WHEEL_CACHE, default ~/.cache/transfer-matrix/wheels), so a second
install takes seconds. Then the pure-Python packages listed in pyproject.toml's
`openmmlab` extra (mmengine, mmdet 3.3.0, mmsegmentation 1.2.2, ftfy, regex)
install from the package index, and a fresh interpreter checks that mmcv's
compiled ops and both libraries import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

MMCV = "2.1.0"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def packages() -> list[str]:
    """The pure-Python pins: pyproject.toml's `openmmlab` optional dependencies (one list for docs and recipe)."""
    try:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        return list(project["optional-dependencies"]["openmmlab"])
    except (OSError, KeyError) as e:
        raise RuntimeError(f"{PYPROJECT}: no [project.optional-dependencies] openmmlab list ({e!r}); run the "
                           f"recipe from a checkout of the repository") from None  # fmt: skip


def wheel_cache() -> Path:
    import torch

    root = Path(os.environ.get("TMX_WHEEL_CACHE", Path.home() / ".cache" / "transfer-matrix" / "wheels"))
    torch_version = torch.__version__.split("+")[0]
    cuda = f"-cu{torch.version.cuda.replace('.', '')}" if torch.cuda.is_available() else ""  # ops built for CUDA
    return root / f"mmcv-{MMCV}-torch{torch_version}-py{sys.version_info.major}{sys.version_info.minor}{cuda}"


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def build_mmcv(out: Path) -> Path:
    """Build mmcv's wheel with ops from its source package into `out`; returns the wheel's path."""
    import torch

    with tempfile.TemporaryDirectory(prefix="mmcv-build-") as tmp:
        tmp = Path(tmp)
        pip("install", "--quiet", "setuptools<81", "wheel")  # mmcv's setup.py imports pkg_resources
        pip("download", f"mmcv=={MMCV}", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "--quiet",
            "-d", str(tmp))  # fmt: skip
        (sdist,) = tmp.glob("mmcv-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = tmp / f"mmcv-{MMCV}"
        setup = src / "setup.py"
        text = setup.read_text()
        if "-std=c++17" not in text:
            raise RuntimeError(f"{setup}: no '-std=c++17' to change; the recipe expects mmcv {MMCV}'s setup.py")
        setup.write_text(text.replace("-std=c++17", "-std=c++20"))
        env = dict(os.environ, MMCV_WITH_OPS="1", MAX_JOBS=str(os.cpu_count() or 2))
        if not torch.cuda.is_available():
            env["FORCE_CUDA"] = "0"
        started = time.time()
        pip("wheel", "--no-build-isolation", "--no-deps", "--quiet", "-w", str(tmp / "dist"), str(src), env=env)
        (wheel,) = (tmp / "dist").glob("mmcv-*.whl")
        out.mkdir(parents=True, exist_ok=True)
        target = out / wheel.name
        shutil.copy(wheel, target.with_suffix(".part"))
        os.replace(target.with_suffix(".part"), target)  # a killed build never leaves a half wheel in the cache
        print(f"built {target.name} in {time.time() - started:.0f} s; cached in {out}")
        return target


CHECK = "import mmcv.ops, mmdet.models, mmseg.models; mmcv.ops.nms"  # the compiled ops load, both libraries import


def main() -> None:
    pins = packages()
    cache = wheel_cache()
    wheels = sorted(cache.glob("mmcv-*.whl"))
    wheel = wheels[-1] if wheels else build_mmcv(cache)
    if wheels:
        print(f"using the cached {wheel}")
    pip("install", "--quiet", str(wheel), *pins)
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"the OpenMMLab extra installed but does not import: {last}; remove {cache} to rebuild mmcv")
    print("OpenMMLab extra installed: mmcv", MMCV, "+", ", ".join(pins))


if __name__ == "__main__":
    main()
