"""A lazily decoded view of a stored array: some axes pinned, the rest sliced on demand.

Shared by :class:`maskbundle.bundle.read.LabelArray` (one mask channel of one pyramid
level) and the napari reader (pyramid levels of a mask or of a parent-image channel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LazyArray"]


class LazyArray:
    """``array`` (axes ``axes``) with the axes in ``fixed`` read at one index and hidden.

    Supports basic indexing (integers, slices, ``...``) and ``np.asarray``; nothing is
    decoded before that. It has what napari and dask expect of a lazy array (``shape``,
    ``dtype``, ``ndim``, ``size``, ``__getitem__``). ``keep_alive`` is held for the life of
    the view (an owner whose finaliser closes the file).
    """

    def __init__(
        self,
        array: Any,
        axes: str,
        fixed: Mapping[str, int] | None = None,
        *,
        keep_alive: object = None,
    ) -> None:
        self._array = array
        self._axes = axes
        self._fixed = dict(fixed or {})
        self._keep_alive = keep_alive
        self._dims = [a for a in axes if a not in self._fixed]
        full = dict(zip(axes, (int(n) for n in array.shape), strict=True))
        self.shape: tuple[int, ...] = tuple(full[a] for a in self._dims)
        self.dtype: np.dtype[Any] = np.dtype(array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def axes(self) -> str:
        """The axes the user indexes, in stored order (``YX``, ``ZYX`` ...)."""
        return "".join(self._dims)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, axes={self.axes!r})"

    def __getitem__(self, key: Any) -> np.ndarray:
        user = list(key) if isinstance(key, tuple) else [key]
        if any(k is Ellipsis for k in user):
            i = next(j for j, k in enumerate(user) if k is Ellipsis)
            user = user[:i] + [slice(None)] * (self.ndim - len(user) + 1) + user[i + 1 :]
        if len(user) > self.ndim:
            raise IndexError(f"too many indices ({len(user)}) for a {self.ndim}-D array")
        for k in user:
            if not isinstance(k, int | np.integer | slice):
                raise IndexError(f"only integers, slices and ... index a lazy array, got {k!r}")
        user += [slice(None)] * (self.ndim - len(user))
        by_axis = dict(zip(self._dims, user, strict=True))
        full = tuple(by_axis[a] if a in by_axis else self._fixed[a] for a in self._axes)
        return np.asarray(self._array[full])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)
