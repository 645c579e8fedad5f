"""Load ``.npy`` files that hold pickled objects without running pickled code.

``np.save`` of a dict (what Cellpose's ``_seg.npy`` is) writes a 0-d object array, whose
payload is a pickle; ``np.load(allow_pickle=True)`` would call any function the pickle
names (``os.system`` included). Here the ``.npy`` header is parsed with
``numpy.lib.format`` and the payload is unpickled by an :class:`pickle.Unpickler` whose
``find_class`` admits only the globals that numpy arrays, numpy scalars and builtin
containers need; any other global is refused with :class:`CorruptInputError` before it
is even imported.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from typing import IO, Any

import numpy as np
from numpy.lib import format as npformat

from ..errors import CorruptInputError

__all__ = ["ALLOWED_GLOBALS", "load_npy_safely", "load_npz_safely"]

# (module, name) pairs a numpy-array pickle may name. Both spellings of numpy's core
# module are admitted (``numpy.core`` before numpy 2, ``numpy._core`` since); they are
# resolved to the module present without importing the deprecated alias.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "bytearray"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("__builtin__", "complex"),
        # protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')
        ("_codecs", "encode"),
    }
)


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy.core."):
        module = "numpy._core." + module[len("numpy.core.") :]
    if module == "__builtin__":
        module = "builtins"
    try:
        mod = importlib.import_module(module)
    except ImportError:  # numpy < 2 has no numpy._core
        mod = importlib.import_module(module.replace("numpy._core.", "numpy.core.", 1))
    return getattr(mod, name)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], what: str) -> None:
        super().__init__(fh, encoding="latin1")
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve(module, name)
        raise CorruptInputError(
            f"{self._what}: refused to load: the pickled data names the global "
            f"'{module}.{name}', which a numpy array or builtin container never needs "
            "(loading it with np.load(allow_pickle=True) could run code). Re-save the file "
            "from a trusted Cellpose session, or export the masks as _cp_masks.tif instead"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CorruptInputError(f"{self._what}: refused to load: pickle uses persistent ids")


def _read_header(fh: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            return npformat.read_array_header_1_0(fh)  # type: ignore[no-any-return]
        if version == (2, 0):
            return npformat.read_array_header_2_0(fh)  # type: ignore[no-any-return]
        reader = getattr(npformat, "_read_array_header", None)
        if version == (3, 0) and reader is not None:
            return reader(fh, version)  # type: ignore[no-any-return]
    except (ValueError, SyntaxError, OSError, EOFError) as exc:
        raise CorruptInputError(f"{what}: not a readable .npy file ({exc})") from exc
    raise CorruptInputError(f"{what}: .npy format version {version} is not supported")


def load_npy_safely(path: str | os.PathLike[str]) -> Any:
    """Read a ``.npy`` file; object arrays are unpickled with only numpy/builtin globals.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file.

    Returns
    -------
    object
        The array; for a 0-d object array (``np.save`` of a dict) the object inside it.

    Raises
    ------
    CorruptInputError
        The header or payload is damaged, or the pickle names a global outside
        :data:`ALLOWED_GLOBALS` (nothing it names is imported or called).
    """
    what = os.fspath(path)
    with open(path, "rb") as fh:
        shape, fortran, dtype = _read_header(fh, what)
        if not dtype.hasobject:
            try:
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise CorruptInputError(f"{what}: truncated or damaged .npy data ({exc})") from exc
        payload = fh.read()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(payload), what).load()
    except CorruptInputError:
        raise
    except Exception as exc:  # anything else raised while unpickling means a damaged file
        raise CorruptInputError(
            f"{what}: the pickled payload is damaged or truncated ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, np.ndarray) or obj.shape != tuple(shape):
        raise CorruptInputError(
            f"{what}: the pickled payload is not the array of shape {tuple(shape)} its header "
            "announces"
        )
    if fortran and obj.ndim > 1:
        obj = np.asfortranarray(obj)
    if obj.ndim == 0:
        return obj.item()
    return obj


def load_npz_safely(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` by key, in file order; object arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise CorruptInputError(
            f"{path}: an array of the .npz holds Python objects, which are not loaded ({exc})"
        ) from exc
    except Exception as exc:
        raise CorruptInputError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from exc
