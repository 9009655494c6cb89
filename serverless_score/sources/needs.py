"""Checks at plan, before anything is created, that the workers can load a resolved model:

* the Python packages it needs (mlflow for a generic pyfunc, skops for a skops file, a vetiver
  pin's ``required_pkgs``) are on this machine for ``local``, or in the built-in image for
  ``docker`` / ``aci`` (an image the job names is the user's to vouch for);
* a vetiver model's prototype columns are all in the input.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InputError
from . import ModelSource

if TYPE_CHECKING:
    from ..planning.tasks import InputFile
    from ..spec import JobSpec
    from ..storage import StoreConfig

log = logging.getLogger(__name__)
# Distribution name -> module name, where they differ (vetiver writes distribution names).
_MODULES = {"scikit-learn": "sklearn", "mlflow-skinny": "mlflow", "pyyaml": "yaml"}
# The extras the built-in Python image installs (images/context.py BuildRequest.extras).
_IMAGE_EXTRAS = {"blob", "aci", "sklearn"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_here(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        module = _MODULES.get(_norm(name), name.replace("-", "_"))
        return importlib.util.find_spec(module) is not None


def image_packages() -> set[str]:
    """The distributions of the built-in Python image: serverless-score's own requirements and
    those of the extras the image installs."""
    names = {"serverless-score"}
    for req in importlib.metadata.requires("serverless-score") or []:
        name, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra is None or extra.group(1) in _IMAGE_EXTRAS:
            names.add(_norm(re.split(r"[<>=!~\[ (]", name.strip(), maxsplit=1)[0]))
    if "scikit-learn" in names:
        names |= {"scipy", "threadpoolctl"}  # what scikit-learn brings
    return names


def check_needs(spec: JobSpec, source: ModelSource) -> None:
    if spec.runtime != "python" or not source.needs:
        return
    if spec.backend == "local":
        missing = [p for p in source.needs if not installed_here(p)]
        where = "this machine (backend = \"local\")"
        hint = f"pip install {' '.join(missing)} into the environment serverless-score runs in."
    elif spec.image is None:
        have = image_packages()
        missing = [p for p in source.needs if _norm(p) not in have]
        where = f"the built-in scoring image (backend = {spec.backend!r})"
        hint = ("Build an image with them (FROM the built-in image, pip install them) and name it "
                "with image = \"...\" in the job file.")
    else:
        log.info("model %s needs %s; image %s is trusted to have them", source.uri,
                 ", ".join(source.needs), spec.image)
        return
    if missing:
        raise InputError(
            f"model: {source.uri} needs the Python package(s) {', '.join(missing)}, which "
            f"{where} does not have; nothing was created", hint=hint, retryable=False)


def check_prototype(spec: JobSpec, source: ModelSource | None, files: Sequence[InputFile],
                    config: StoreConfig) -> None:
    """A vetiver model's prototype columns must all be in the input (its first file's header;
    Parquet and headerless inputs are left to the workers)."""
    if source is None or not source.prototype or not files:
        return
    from ..planning.columns import input_columns

    columns = input_columns(spec, files[0], config)
    if columns is None:
        return
    missing = [c for c in source.prototype if c not in columns]
    if missing:
        raise InputError(
            f"input: {files[0].path!r} lacks the column(s) {', '.join(map(repr, missing))} that "
            f"the vetiver model {source.uri} was trained on (its prototype: "
            f"{', '.join(source.prototype)})",
            hint="Score an input with the model's columns, or pin a model trained on these.",
            retryable=False)
