"""The data directory: where benchmark data files live, how they are checked and fetched.

Files are looked up in one folder: ``$SAMPLEFLOW_DATA`` when set (tests and CI point it at the shared
data folder), else ``$XDG_CACHE_HOME/sampleflow/data`` (``~/.cache/sampleflow/data``). Every file has a
known size and SHA-256 and is checked before first use. ``fetch(name)`` (CLI: ``sampleflow data fetch
NAME``) downloads a missing file, from ``base_url`` / ``$SAMPLEFLOW_DATA_URL`` (a mirror holding the files
under their names) or, for files that are byte-for-byte copies of a public upstream file, from that
file at a pinned commit; the download is streamed to a temporary file, its size and SHA-256 checked,
and only then renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataFile", "FILES", "DataFileError", "data_dir", "path", "load_array", "fetch", "sha256_file",
           "status"]


class DataFileError(RuntimeError):
    """A data file is missing, unknown, or fails its checksum; ``file`` names it."""

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.file = file


@dataclass(frozen=True)
class DataFile:
    size: int
    sha256: str
    url: str | None  # a public byte-identical upstream copy, pinned to a commit; None where there is none
    source: str      # where the content comes from (see the data folder's PROVENANCE.md)


FILES: dict[str, DataFile] = {
    "breast_cancer.data": DataFile(124103, "4ba46e0483a3a4106f1dbd83b8a16dc85289da597d3d4a4ae03de07763a7c07b",
                       'https://raw.githubusercontent.com/DenisBless/variational_sampling_methods/32de62189abe07e96742735d91adbb959692d8c3/targets/data/breast_cancer.data',
                       'DenisBless/variational_sampling_methods: targets/data/breast_cancer.data'),
    "breast_cancer_reference_10k.npy": DataFile(2499968, "3291291eaa399d76c74e76265569b207734085289d0d6fea5fd16911480c95c4",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/breastcancer_gt_with_lns_10k.npz'),
    "breast_cancer_reference_10k_logdensity_normal10.npy": DataFile(80768, "d3fd67a011a15dfa9d0dbed187bdcc27b136220853af5a492a26fae130093437",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/breastcancer_gt_with_lns_10k.npz'),
    "brownian_observations.npy": DataFile(248, "4b4a4722bf609a7f7c920ff9fcebbfcad5e4ea225c797f14df9a493048672e20",
                       None,
                       'tensorflow/probability: spinoffs/inference_gym/inference_gym/internal/datasets/brownian_motion_missing_middle_observations.py'),
    "dw4_test.npy": DataFile(320128, "ef4466793b3502b2fe405aad22d3ae43b34827971594c5bab28684771d828244",
                       'https://raw.githubusercontent.com/jarridrb/DEM/8e9531987b0bfe4e770d5009c10a56b8434c0f0a/data/test_split_DW4.npy',
                       'jarridrb/DEM: data/test_split_DW4.npy'),
    "dw4_train.npy": DataFile(3200128, "03e4cd085b52bf021cebc7f5f6d05aec0cdccff890a476b36595c2e343b1c58a",
                       'https://raw.githubusercontent.com/jarridrb/DEM/8e9531987b0bfe4e770d5009c10a56b8434c0f0a/data/train_split_DW4.npy',
                       'jarridrb/DEM: data/train_split_DW4.npy'),
    "dw4_val.npy": DataFile(320128, "05683af2442aea8c358d35482a1c6877fc53796e46c9f5335fa92aa4f3670de6",
                       'https://raw.githubusercontent.com/jarridrb/DEM/8e9531987b0bfe4e770d5009c10a56b8434c0f0a/data/val_split_DW4.npy',
                       'jarridrb/DEM: data/val_split_DW4.npy'),
    "german.data-numeric": DataFile(102000, "2752b044394958ab6dd193a0b56ca0f0b3a2d8bc7cb8c008e35a5e84bbec02f8",
                       'https://raw.githubusercontent.com/DenisBless/variational_sampling_methods/32de62189abe07e96742735d91adbb959692d8c3/targets/data/german.data-numeric',
                       'DenisBless/variational_sampling_methods: targets/data/german.data-numeric'),
    "german_credit_reference_10k.npy": DataFile(2000128, "3b8cb8ba61b6f5f04131d68190d961992491692dc7f1eef6e321842f2ce23b0e",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/german_credit10k.npy'),
    "gmm40_fab_means_d2.npy": DataFile(448, "d9486fd466b081a2d90eff05b25d252f80c000da176156925ab55e2553f9b1bc",
                       None,
                       'lollcat/fab-torch + jarridrb/DEM: fab/target_distributions/gmm.py; dem/energies/gmm_energy.py'),
    "ionosphere_X.npy": DataFile(47864, "50ff07b8478025869bd4043bd664370776a6993825780a1bc2aae382946bc281",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/ionosphere_full.pkl'),
    "ionosphere_y.npy": DataFile(2936, "8934a188d99138f57b58f2b8225338a232bce983445460ba21d84f3a34a28a7e",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/ionosphere_full.pkl'),
    "lj13_test.npy": DataFile(1560128, "c5064a56282e96441f1ff2f1babb13c241a99cd1077aee3667951d06055a785b",
                       'https://raw.githubusercontent.com/jarridrb/DEM/8e9531987b0bfe4e770d5009c10a56b8434c0f0a/data/test_split_LJ13-1000.npy',
                       'jarridrb/DEM: data/test_split_LJ13-1000.npy'),
    "lj13_val.npy": DataFile(1560128, "77a051cd50b16bec41e8fa056f6f77e21804d530a7461369f3a3ee985a576eb7",
                       'https://raw.githubusercontent.com/jarridrb/DEM/8e9531987b0bfe4e770d5009c10a56b8434c0f0a/data/val_split_LJ13-1000.npy',
                       'jarridrb/DEM: data/val_split_LJ13-1000.npy'),
    "logdensity_checks.csv": DataFile(2959, "3a1a88b55b9e4846fe1c6127a04378447e31b15f0163d3539e55dc930b44ca7c",
                       None,
                       '(made here): —'),
    "mog40_means_d2.npy": DataFile(448, "e5e24e8d0af8d11056a9d87a9bf7bac3270ca4c9a5698fb8c0678669d1972cc0",
                       None,
                       'DenisBless/variational_sampling_methods: targets/gmm40.py'),
    "mog40_means_d50.npy": DataFile(8128, "0a79ca6c334cd1f2b2d7e0087c1b5a0c569b26f4cd46aae5f3019daebe310954",
                       None,
                       'DenisBless/variational_sampling_methods: targets/gmm40.py'),
    "mos10_locs_d2.npy": DataFile(208, "79b9ea35c3e7b405a04a15d410de4816d58b70f3331f736d71347799e5244467",
                       None,
                       'DenisBless/variational_sampling_methods: targets/student_t_mixture.py'),
    "mos10_locs_d50.npy": DataFile(2128, "7e3360e01213aac3c66aaa19e3af1c5ad19f61ce1994e52ce1f88ea0a70d9621",
                       None,
                       'DenisBless/variational_sampling_methods: targets/student_t_mixture.py'),
    "pines.csv": DataFile(3268, "c57af2e9f2a38ed99a3884fbf81ad1b0c607adcf7749bad53a6df66ef313c89a",
                       'https://raw.githubusercontent.com/DenisBless/variational_sampling_methods/32de62189abe07e96742735d91adbb959692d8c3/targets/data/pines.csv',
                       'DenisBless/variational_sampling_methods: targets/data/pines.csv'),
    "planar_robot_1goal_reference_10k.npy": DataFile(800128, "66ee506bc15df539ae5f19ec4cccb2bfb2b8751753fee72b9eef0caa18e0c2c3",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/planar_robot_gt_10k.npz'),
    "planar_robot_4goal_reference_10k.npy": DataFile(400128, "b7b04c2739db1d7a23af32fdec003b2eb5680b4d312ee7aab81d1e0a866d4cc6",
                       None,
                       'anonymous3141/SCLD: targets/planar_robot.py (recipe) applied to BE targets/data/planar_robot_gt_10k.npz'),
    "planar_robot_4goal_testpoints.npy": DataFile(16128, "cd7160cfb92b0ab3480a72033f519861c4ae170d54d1ac8dfe3ca6096fc9bd58",
                       None,
                       'anonymous3141/SCLD: targets/data/planar4goal_testdat.npz'),
    "planar_robot_4goal_testpoints_logdensity.npy": DataFile(1728, "1ad68e15b2e1fb3a4a30df68e6e55d3def186c55a5cbefc0e8d83a0d623cfbe6",
                       None,
                       'anonymous3141/SCLD: targets/data/planar4goal_testdat.npz'),
    "seeds.csv": DataFile(211, "0b96a02c651797027811e2e2bf84851fdbdabfe0226927cad68a66e30c72af5d",
                       None,
                       'DenisBless/variational_sampling_methods: targets/seeds.py'),
    "sonar_X.npy": DataFile(50048, "3d344e45e4ee25f89d4961e44ad49e1de1f09733ea8b9bf0121e73ee845a7e6d",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/sonar_full.pkl'),
    "sonar_y.npy": DataFile(1792, "ec7ddcfdf6a833a21387b588637b98fc1ac3f986ccb3d183b6921e7bc4bd3b60",
                       None,
                       'DenisBless/variational_sampling_methods: targets/data/sonar_full.pkl'),
}

_verified: dict[tuple, bool] = {}


def data_dir() -> Path:
    """The data folder: $SAMPLEFLOW_DATA, else the per-user cache folder."""
    env = os.environ.get("SAMPLEFLOW_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sampleflow" / "data"


def _entry(name: str) -> DataFile:
    try:
        return FILES[name]
    except KeyError:
        raise DataFileError(f"unknown data file '{name}'; known files: {', '.join(sorted(FILES))}") from None


def sha256_file(p: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verify(name: str, p: Path) -> None:
    entry = _entry(name)
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if _verified.get(key):
        return
    if st.st_size != entry.size:
        raise DataFileError(f"data file {p} has {st.st_size} bytes, expected {entry.size}: it is not the "
                            f"expected '{name}' (delete it and run `sampleflow data fetch {name}`)")
    digest = sha256_file(p)
    if digest != entry.sha256:
        raise DataFileError(f"data file {p} fails its SHA-256 check (got {digest}, expected {entry.sha256}); "
                            f"delete it and run `sampleflow data fetch {name}`")
    _verified[key] = True


def path(name: str, *, download: bool = False) -> Path:
    """Path of data file ``name`` in the data folder, checked against its SHA-256.

    A missing file is downloaded when ``download`` is true; otherwise a DataFileError says how to get it."""
    _entry(name)
    p = data_dir() / name
    if not p.exists():
        if download:
            return fetch(name)
        raise DataFileError(f"data file '{name}' is not in the data folder {data_dir()}: set SAMPLEFLOW_DATA "
                            f"to the folder that holds it, or run `sampleflow data fetch {name}`", name)
    _verify(name, p)
    return p


def load_array(name: str, *, download: bool = False) -> np.ndarray:
    """A checked ``.npy`` data file as a NumPy array (never unpickles)."""
    return np.load(path(name, download=download), allow_pickle=False)


def fetch(name: str, *, base_url: str | None = None, force: bool = False, timeout: float = 60.0) -> Path:
    """Download data file ``name`` into the data folder and check it; returns its path.

    The source is ``base_url + "/" + name`` when ``base_url`` (or $SAMPLEFLOW_DATA_URL) is given, else
    the file's public upstream URL. An existing file that passes its check is kept unless ``force``."""
    entry = _entry(name)
    dest = data_dir() / name
    if dest.exists() and not force:
        _verify(name, dest)
        return dest
    base_url = base_url or os.environ.get("SAMPLEFLOW_DATA_URL")
    url = f"{base_url.rstrip('/')}/{name}" if base_url else entry.url
    if url is None:
        raise DataFileError(f"data file '{name}' has no public byte-identical source (it was re-saved from "
                            f"{entry.source}); give a mirror with --base-url or SAMPLEFLOW_DATA_URL")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DataFileError(f"cannot write to the data folder {dest.parent}: {e}") from None
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                size += len(block)
                if size > entry.size:
                    break
        if size != entry.size or h.hexdigest() != entry.sha256:
            raise DataFileError(f"download of '{name}' from {url} failed its check: {size} bytes "
                                f"(expected {entry.size}), SHA-256 {h.hexdigest()} (expected {entry.sha256})")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        raise DataFileError(f"download of '{name}' from {url} failed: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def status() -> list[dict]:
    """One row per known file: name, present, size, source."""
    d = data_dir()
    return [{"name": n, "present": (d / n).exists(), "bytes": f.size, "downloadable": f.url is not None,
             "source": f.source} for n, f in sorted(FILES.items())]
