"""Model files that are not a joblib/pickle, by name (what ``serverless_score.sources`` resolves
an MLflow model to):

* ``*.skops``: a scikit-learn model MLflow saved with skops, loaded with skops;
* ``*.mlflow.tar``: any other MLflow pyfunc model, its folder packed into one file; unpacked
  once beside it (per file content: the name carries no version, the checksum was verified) and
  loaded with ``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

SKOPS_SUFFIX = ".skops"
PYFUNC_SUFFIX = ".mlflow.tar"


def is_special(path: str) -> bool:
    return path.endswith((SKOPS_SUFFIX, PYFUNC_SUFFIX))


def load_special(path: str) -> Any:
    if path.endswith(SKOPS_SUFFIX):
        import skops.io

        # The job named this model in its own registry: trusted as a pickle would be (MLflow's
        # own loader trusts the types it recorded; these are the file's).
        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(_unpacked(Path(path))))


def _unpacked(tar_path: Path) -> Path:
    st = tar_path.stat()
    folder = tar_path.with_name(f"{tar_path.name}.{st.st_size}-{st.st_mtime_ns}.d")
    if (folder / "MLmodel").is_file():
        return folder
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=tar_path.parent))
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(scratch, filter="data")  # no links out, no absolute names
        try:
            os.replace(scratch, folder)
        except OSError:
            if not (folder / "MLmodel").is_file():  # another worker's finished copy is as good
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
