"""Read UniGeo's released files (``calculation_*.pk``, ``proving_*.pk``, or JSON/JSONL exports) safely.

The official release is a set of pickles of lists of dicts whose images are numpy arrays. A pickle can run
arbitrary code on load, so :func:`load_unigeo_rows` unpickles with a restricted ``Unpickler`` that resolves
only plain builtin containers/scalars and numpy's array/dtype reconstructors; anything else (``os.system``,
``builtins.eval``, a custom class) raises ``pickle.UnpicklingError`` before it can run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["RestrictedUnpickler", "load_unigeo_rows"]

_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "list",
            "dict",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "complex",
            "str",
            "bytes",
            "bytearray",
            "bool",
        }
    ),
    "collections": frozenset({"OrderedDict"}),
    "_codecs": frozenset({"encode"}),  # protocol-2 pickles store bytes as latin-1 text
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An ``Unpickler`` that resolves only builtin containers/scalars and numpy arrays, scalars and dtypes.

    Raises:
        pickle.UnpicklingError: the pickle references any other global.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if it is on the allow-list, else refuse."""
        if name in _ALLOWED.get(module, ()):
            if module.startswith("numpy"):
                import importlib

                return getattr(importlib.import_module(module), name)
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            import numpy.dtypes

            return getattr(numpy.dtypes, name)
        raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name} (not a plain data type)")


def load_unigeo_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Load UniGeo rows from the official pickle (``.pk``/``.pkl``) or a JSON (list) / JSONL export.

    Args:
        path: the file.

    Returns:
        The list of row dicts (calculation rows: ``English_problem``, ``manual_program``, ``numbers``,
        ``choice_nums``, ``label``, ``id``, ``image``; proving rows: ``input_text``, ``proving_sequence``,
        ``problem_type``, ``img``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown extension, or the file does not hold a list of dicts.
        pickle.UnpicklingError: the pickle references a global outside plain data and numpy.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no UniGeo file at {p}")
    suffix = p.suffix.lower()
    if suffix in {".pk", ".pkl", ".pickle"}:
        rows = RestrictedUnpickler(io.BytesIO(p.read_bytes())).load()
    elif suffix == ".json":
        rows = json.loads(p.read_text(encoding="utf-8"))
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise ValueError(f"path must end in .pk/.pkl/.json/.jsonl, got {p.name!r}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{p.name} does not hold a list of dicts")
    return rows
