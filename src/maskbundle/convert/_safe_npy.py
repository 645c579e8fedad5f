"""Load ``.npy`` files that hold pickled objects without running pickled code.

``np.save`` of a dict (what Cellpose's ``_seg.npy`` is) writes a 0-d object array, whose
payload is a pickle; ``np.load(allow_pickle=True)`` would call any function the pickle
names (``os.system`` included). Here the ``.npy`` header is parsed with
``numpy.lib.format`` and the payload is unpickled by an :class:`pickle.Unpickler` whose
``find_class`` admits only the globals that numpy arrays, numpy scalars and builtin
containers need; any other global is refused with :class:`CorruptInputError` before it
is even imported.

Even the admitted numpy globals are never handed to the pickle: ``numpy.dtype`` and
``ndarray.__setstate__`` trust the flags, item size and byte count the pickle gives them,
and ``dtype(..., copy=False)`` returns numpy's shared built-in descriptor, so one flipped
byte could mark numpy's global ``float32`` as holding object pointers and crash the
process later (SIGSEGV) in unrelated code. The pickle builds inert stand-ins instead
(:class:`_DtypeSpec`, :class:`_ArraySpec`); after loading they are checked (simple dtypes
only, byte count == shape x item size) and turned into fresh arrays with
``np.frombuffer``.

Sizes are checked against the file before anything is allocated: a header announcing
1e6 x 1e6 items over 100 bytes of data is refused, not allocated.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import pickle
import re
import zipfile
from typing import IO, Any

import numpy as np
from numpy.lib import format as npformat

from ..errors import CorruptInputError
from ..io.limits import check_zip_member

__all__ = ["ALLOWED_GLOBALS", "load_npy_safely", "load_npz_safely"]

# (module, name) pairs a numpy-array pickle may name. Both spellings of numpy's core
# module are admitted (``numpy.core`` before numpy 2, ``numpy._core`` since).
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

# dtypes a label file or a Cellpose dict may hold: booleans, numbers, objects, text
_DTYPE_RE = re.compile(r"(b1|[iu][1248]|f[248]|c8|c16|O[48]?|[US]\d{0,7})")
_MAX_DEPTH = 100  # nesting of containers in a pickle (a _seg.npy nests 3 deep)
_MAX_INT_BITS = 4096  # Python ints in metadata (longer ones cannot even be printed)


def _damaged(what: str, why: str) -> CorruptInputError:
    return CorruptInputError(f"{what}: the pickled payload is damaged ({why})")


class _DtypeSpec:
    """What a pickle says about a dtype; turned into a fresh numpy dtype by :meth:`resolve`."""

    def __init__(self, what: str, obj: object, *_: object) -> None:
        self.what = what
        self.code = obj
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def resolve(self) -> np.dtype[Any]:
        code = self.code
        if not isinstance(code, str) or not _DTYPE_RE.fullmatch(code):
            raise _damaged(self.what, f"dtype {code!r} is not a plain number, text or object type")
        order = "="
        elsize = -1
        if self.state is not None:
            st = self.state
            if not (isinstance(st, tuple) and len(st) in (8, 9) and st[0] in (3, 4)):
                raise _damaged(self.what, f"dtype {code!r} has an unknown state")
            if st[2] is not None or st[3] is not None or st[4] is not None:
                raise _damaged(self.what, f"dtype {code!r} claims sub-arrays or fields")
            if st[1] not in ("<", ">", "|", "="):
                raise _damaged(self.what, f"dtype {code!r} has byte order {st[1]!r}")
            order = "=" if st[1] == "|" else st[1]
            elsize = st[5] if isinstance(st[5], int) else -2
        kind = code[0]
        if kind in "US" and elsize != -1:
            if not 0 <= elsize <= 10**7 or (kind == "U" and elsize % 4):
                raise _damaged(self.what, f"text dtype {code!r} has item size {elsize}")
            code = f"{kind}{elsize // 4 if kind == 'U' else elsize}"
        elif elsize != -1:
            raise _damaged(self.what, f"dtype {code!r} has item size {elsize}")
        if kind == "O":
            return np.dtype(object)
        return np.dtype(order + code)


def _dtype_of(value: object, what: str) -> np.dtype[Any]:
    if not isinstance(value, _DtypeSpec):
        raise _damaged(what, f"expected a dtype, found a {type(value).__name__}")
    return value.resolve()


def _shape_of(value: object, what: str) -> tuple[int, ...]:
    if not (
        isinstance(value, tuple)
        and len(value) <= 32
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62 for n in value)
    ):
        raise _damaged(what, f"array shape {value!r:.80} is not a tuple of sizes")
    return value


def _from_bytes(
    raw: object, dtype: np.dtype[Any], shape: tuple[int, ...], fortran: bool, what: str
) -> np.ndarray:
    """A fresh, writable, native-byte-order array from exactly prod(shape) items of bytes."""
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(raw, list) or len(raw) != count:
            raise _damaged(what, f"an object array of {count} items holds {type(raw).__name__}")
        arr = np.empty(count, dtype=object)
        for i, item in enumerate(raw):
            arr[i] = item
        return arr.reshape(shape, order="F" if fortran else "C")
    if isinstance(raw, str):  # protocol-2 pickles of numpy 1 hold latin-1 text
        raw = raw.encode("latin-1")
    if isinstance(raw, pickle.PickleBuffer):
        raw = bytes(raw.raw())
    if not isinstance(raw, bytes | bytearray):
        raise _damaged(what, f"array data is a {type(raw).__name__}, not bytes")
    if len(raw) != count * dtype.itemsize:
        raise _damaged(
            what, f"array of shape {shape} {dtype} needs {count * dtype.itemsize} bytes, "
            f"holds {len(raw)}"
        )
    flat = np.frombuffer(bytes(raw), dtype=dtype, count=count)
    if not dtype.isnative:
        flat = flat.astype(dtype.newbyteorder("="))
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


class _ArraySpec:
    """``_reconstruct(ndarray, ...)`` followed by BUILD: the array's state, checked later."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def build(self) -> np.ndarray:
        st = self.state
        if isinstance(st, tuple) and len(st) == 5:
            st = st[1:]
        if not (isinstance(st, tuple) and len(st) == 4):
            raise _damaged(self.what, "an array without a valid state")
        shape = _shape_of(st[0], self.what)
        dtype = _dtype_of(st[1], self.what)
        return _from_bytes(st[3], dtype, shape, bool(st[2]), self.what)


class _Factories:
    """The callables handed to the pickle in place of the admitted globals."""

    def __init__(self, what: str) -> None:
        self.what = what

    def dtype(self, obj: object = None, *args: object) -> _DtypeSpec:
        return _DtypeSpec(self.what, obj, *args)

    def reconstruct(self, subtype: object, *_: object) -> _ArraySpec:
        if subtype is not _NDARRAY:
            raise _damaged(self.what, "_reconstruct of something other than numpy.ndarray")
        return _ArraySpec(self.what)

    def scalar(self, dtype: object, data: object = None) -> Any:
        dt = _dtype_of(dtype, self.what)
        if dt.hasobject:
            raise _damaged(self.what, "a numpy object scalar")
        arr = _from_bytes(data if data is not None else b"", dt, (), False, self.what)
        return arr[()]

    def frombuffer(self, buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
        dt = _dtype_of(dtype, self.what)
        if dt.hasobject:
            raise _damaged(self.what, "an object array from a buffer")
        return _from_bytes(buf, dt, _shape_of(shape, self.what), order == "F", self.what)

    def bytearray(self, data: object = b"", *args: object) -> bytearray:
        if isinstance(data, int):  # bytearray(n) allocates n bytes: never from a file
            raise _damaged(self.what, "bytearray of a size")
        if isinstance(data, str):
            return bytearray(self.encode(data, *args))
        if not isinstance(data, bytes | bytearray | list):
            raise _damaged(self.what, f"bytearray of a {type(data).__name__}")
        return bytearray(data)

    def encode(self, obj: object, encoding: object = "utf-8", *_: object) -> bytes:
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8"):
            raise _damaged(self.what, f"_codecs.encode with {encoding!r}")
        return codecs.encode(obj, str(encoding))


_NDARRAY = object()  # stands for numpy.ndarray: only _reconstruct may receive it


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], what: str) -> None:
        super().__init__(fh, encoding="latin1")
        self._what = what
        self._f = _Factories(what)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise CorruptInputError(
                f"{self._what}: refused to load: the pickled data names the global "
                f"'{module}.{name}', which a numpy array or builtin container never needs "
                "(loading it with np.load(allow_pickle=True) could run code). Re-save the "
                "file from a trusted Cellpose session, or export the masks as _cp_masks.tif "
                "instead"
            )
        f = self._f
        table: dict[str, Any] = {
            "_reconstruct": f.reconstruct,
            "scalar": f.scalar,
            "_frombuffer": f.frombuffer,
            "ndarray": _NDARRAY,
            "dtype": f.dtype,
            "bytearray": f.bytearray,
            "encode": f.encode,
            "dict": dict,
            "list": list,
            "tuple": tuple,
            "set": set,
            "frozenset": frozenset,
            "complex": complex,
        }
        return table[name]

    def persistent_load(self, pid: Any) -> Any:
        raise CorruptInputError(f"{self._what}: refused to load: pickle uses persistent ids")


def _materialise(obj: Any, what: str) -> Any:
    """Replace every stand-in by its checked array, iteratively (no recursion limit)."""
    done: dict[int, Any] = {}

    def convert(value: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise _damaged(what, f"containers nested more than {_MAX_DEPTH} deep")
        key = id(value)
        if key in done:
            return done[key]
        if isinstance(value, _ArraySpec):
            arr = value.build()
            done[key] = arr
            if arr.dtype.hasobject:
                flat = arr.reshape(-1, order="A")
                for i in range(flat.size):
                    flat[i] = convert(flat[i], depth + 1)
            return arr
        if isinstance(value, _DtypeSpec):
            out: Any = value.resolve()
        elif isinstance(value, dict):
            out = {}
            done[key] = out
            for k, v in value.items():
                out[convert(k, depth + 1)] = convert(v, depth + 1)
            return out
        elif isinstance(value, list):
            out = []
            done[key] = out
            out.extend(convert(v, depth + 1) for v in value)
            return out
        elif isinstance(value, tuple | set | frozenset):
            out = type(value)(convert(v, depth + 1) for v in value)
        elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            raise _damaged(what, f"an integer of {value.bit_length()} bits")
        else:
            out = value
        done[key] = out
        return out

    return convert(obj, 0)


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
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, MemoryError ...
        raise CorruptInputError(
            f"{what}: not a readable .npy file ({type(exc).__name__}: {exc})"[:400]
        ) from exc
    raise CorruptInputError(f"{what}: .npy format version {version} is not supported")


def _check_data_size(
    shape: tuple[int, ...], dtype: np.dtype[Any], available: int, what: str
) -> None:
    """Refuse a header whose array needs more (or fewer) bytes than the file holds."""
    need = math.prod(int(n) for n in shape) * dtype.itemsize
    if need != available:
        raise CorruptInputError(
            f"{what}: the .npy header declares shape {tuple(shape)} of {dtype} "
            f"({need} bytes) but the file holds {available} bytes of data; the file is "
            "truncated or its header is damaged"
        )


def _unpickle(fh: IO[bytes], what: str) -> Any:
    try:
        return _materialise(_RestrictedUnpickler(fh, what).load(), what)
    except CorruptInputError:
        raise
    except Exception as exc:  # anything else raised while unpickling means a damaged file
        raise CorruptInputError(
            f"{what}: the pickled payload is damaged or truncated ({type(exc).__name__}: "
            f"{exc})"[:400]
        ) from exc


def _load_stream(fh: IO[bytes], size: int, what: str) -> Any:
    shape, fortran, dtype = _read_header(fh, what)
    if not dtype.hasobject:
        if dtype.fields is not None or dtype.subdtype is not None:
            raise CorruptInputError(f"{what}: a structured array ({dtype}) is not a label array")
        _check_data_size(shape, dtype, size - fh.tell(), what)
        try:
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError, OSError, EOFError ...
            raise CorruptInputError(f"{what}: truncated or damaged .npy data ({exc})") from exc
    obj = _unpickle(fh, what)
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
        The header or payload is damaged, the header declares more data than the file
        holds, or the pickle names a global outside :data:`ALLOWED_GLOBALS` (nothing it
        names is imported or called).
    """
    what = os.fspath(path)
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb")
    except OSError as exc:
        raise CorruptInputError(f"{what}: cannot be read ({exc})") from exc
    with fh:
        return _load_stream(fh, size, what)


def load_npz_safely(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` by key, in file order; object arrays are refused.

    Each member's declared array size is checked against its uncompressed size in the zip
    directory, and that against the memory available, before it is read.
    """
    what = os.fspath(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                member = f"{what}[{info.filename}]"
                check_zip_member(info, member, max_ratio=None)
                with zf.open(info) as raw:
                    head = io.BytesIO(raw.read(min(info.file_size, 1 << 16)))
                    shape, _, dtype = _read_header(head, member)
                if dtype.hasobject:
                    raise CorruptInputError(
                        f"{member}: holds Python objects, which are not loaded from an .npz; "
                        "save plain arrays"
                    )
                if dtype.fields is not None or dtype.subdtype is not None:
                    raise CorruptInputError(f"{member}: a structured array ({dtype})")
                _check_data_size(shape, dtype, info.file_size - head.tell(), member)
                with zf.open(info) as raw:
                    arr = np.lib.format.read_array(raw, allow_pickle=False)  # type: ignore[attr-defined]
                out[key] = arr
    except CorruptInputError:
        raise
    except Exception as exc:  # zipfile, zlib and numpy raise many types on damaged files
        raise CorruptInputError(
            f"{what}: not a readable .npz ({type(exc).__name__}: {exc})"[:400]
        ) from exc
    return out

