"""``read_bundle``: a Segmentation Mask dataset directory back into arrays and DataFrames.

The label OME-TIFF stays on disk: each mask is a lazy array per pyramid level over
tifffile's zarr store, and a slice decodes only the tiles it touches. Each objects table
is read whole on first access and typed by its ``Type`` header row.
Files are read by :mod:`maskbundle.io`; this module only shapes what they return.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..errors import BundleInvalidError, CorruptInputError, OptionError, Report
from ..io.glb import load_glb_scene
from ..io.lazy import LazyArray
from ..io.ometiff import LabelPyramid, open_label_pyramid
from ..io.readers import read_csv_rows, read_table_grid
from ..io.tables import read_json
from ..model import PhysicalSize
from ..rules import FEATURE_CLASS_ROW, HEADER_LABELS, HEADER_ROWS, OBJECT_ID, OBJECTS_FORMATS
from . import layout
from .validate import validate_bundle

if TYPE_CHECKING:
    import scipy.sparse

__all__ = ["Bundle", "LabelArray", "objects_from_cells", "read_bundle"]

AdjacencyKind = Literal["centroid", "linkage"]
ADJACENCY_KINDS: tuple[AdjacencyKind, ...] = ("centroid", "linkage")


class LabelArray(LazyArray):
    """One mask (one channel) of one pyramid level, read lazily.

    Shape ``(Y, X)`` for 2D masks and ``(Z, Y, X)`` for 3D ones. Supports basic indexing
    (integers, slices, ``...``) and ``np.asarray``; nothing is decoded before that. This
    is what napari and dask accept as a lazy array (``shape``, ``dtype``, ``ndim``,
    ``__getitem__``).

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle.demo import example_bundle
    >>> ds = example_bundle()  # three cells in 32 x 32 pixels
    >>> from maskbundle import read_bundle
    >>> with read_bundle(ds) as bundle:
    ...     level0 = bundle.masks["cells"]
    ...     print(type(level0).__name__, level0.shape, level0.dtype)
    ...     print(np.asarray(level0[8:12, 8:12]).tolist())
    LabelArray (32, 32) uint16
    [[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    """

    def __init__(self, array: Any, axes: str, channel: int, *, is_3d: bool) -> None:
        # the channel axis and size-1 extras are pinned; the user indexes (Z,) Y, X
        keep = "ZYX" if is_3d else "YX"
        super().__init__(array, axes, {a: channel if a == "C" else 0 for a in axes
                                       if a not in keep})


def _typed(raw: pd.Series, typ: str) -> Any:
    """One column of cell strings (object dtype) as the dtype its Type row names."""
    if typ in ("integer", "float"):
        nums = pd.to_numeric(raw, errors="coerce")  # blank -> NaN
        if typ == "integer":
            whole = nums.dropna()
            if bool((whole == np.round(whole)).all()):
                if not nums.isna().any():
                    return nums.to_numpy(np.int64)
                return nums.astype("Int64").array  # blanks kept as <NA> (an invalid table)
        return nums.to_numpy(np.float64)
    # text, obo id, doi (and boolean, which bundles should not hold): strings, blank -> NaN
    values = raw.to_numpy(dtype=object)
    blank = raw.str.strip().to_numpy() == ""
    values[blank] = np.nan
    return values


def objects_from_cells(rows: Sequence[Sequence[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An objects table given as rows of cell strings -> (objects, header cells).

    ``objects`` is indexed by ``Object ID`` (int64) with one column per feature, numeric
    columns typed by the ``Type`` row (integer -> int64, float -> float64) and text-like
    columns as strings (blank -> NaN). ``header`` has the eight header labels (``Type``,
    ``Unit``, ``Feature class`` ...) as index and the same columns, holding the cells as
    written.
    """
    if len(rows) < HEADER_ROWS:
        raise CorruptInputError(f"objects table has {len(rows)} rows, fewer than its header block")
    width = len(rows[HEADER_ROWS - 1])
    grid = [list(r[:width]) + [""] * (width - len(r)) if len(r) != width else r for r in rows]
    names = list(grid[HEADER_ROWS - 1][1:])
    header = pd.DataFrame(
        [list(g[1:]) for g in grid[: len(HEADER_LABELS)]],
        index=pd.Index(list(HEADER_LABELS), name="Header"),
        columns=names,
        dtype=object,
    )
    # one C-level construction, then column by column (positions: names may repeat)
    cells = pd.DataFrame(grid[HEADER_ROWS:], columns=range(width), dtype=object)
    ids = pd.to_numeric(cells[0], errors="coerce")
    if ids.isna().any() or not bool((ids == np.round(ids)).all()):
        raise CorruptInputError("objects table: Object IDs are not all whole numbers")
    columns = {
        name: _typed(cells[j + 1], str(header.iat[0, j]).strip().lower())
        for j, name in enumerate(names)
    }
    frame = pd.DataFrame(columns, index=pd.Index(ids.to_numpy(np.int64), name=OBJECT_ID))
    return frame, header


class _Tables(Mapping[str, pd.DataFrame]):
    """Objects tables (or their header blocks) by mask name, each read on first access."""

    def __init__(self, cache: _TableCache, part: int) -> None:
        self._cache = cache
        self._part = part

    def __getitem__(self, mask: str) -> pd.DataFrame:
        return self._cache.get(mask)[self._part]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache.paths)

    def __len__(self) -> int:
        return len(self._cache.paths)

    def __repr__(self) -> str:
        return f"<{len(self)} objects table(s): {list(self._cache.paths)}, read on access>"


class _TableCache:
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._parsed: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def get(self, mask: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        if mask not in self._parsed:
            path = self.paths[mask]  # KeyError for an unknown mask, as a dict would
            try:
                self._parsed[mask] = objects_from_cells(read_table_grid(path).rows)
            except CorruptInputError as exc:
                raise CorruptInputError(f"{path.name}: {exc}") from exc
        return self._parsed[mask]


def _adjacency_frame(rows: list[list[str]]) -> pd.DataFrame:
    if not rows:
        raise CorruptInputError("adjacency CSV is empty")
    head, body = rows[0], rows[1:]
    cols: dict[str, Any] = {}
    for j, name in enumerate(head):
        cells = pd.Series([r[j] if j < len(r) else "" for r in body], dtype=object)
        values = pd.to_numeric(cells, errors="coerce")
        if j < 2 and values.isna().any():
            raise CorruptInputError(f"adjacency column {name!r} holds non-numbers")
        cols[name] = values.astype(np.int64 if j < 2 else np.float64)
    return pd.DataFrame(cols, columns=head)


@dataclass(eq=False)
class Bundle:
    """A Segmentation Mask bundle read back. Use :func:`read_bundle` to make one.

    Attributes
    ----------
    path : the dataset directory.
    mask_names : the masks in channel order.
    masks : mask name -> :class:`LabelArray` of pyramid level 0 (lazy).
    physical_size : size of one pixel (voxel) from the OME-XML.
    objects : mask name -> objects table, indexed by Object ID (each table is read on
        first access and kept).
    headers : mask name -> the eight header cells of every column (index ``Type``,
        ``Unit``, ``Feature class``, ``Description``, ... as in SPEC section 5).
    adjacency : mask name -> {"centroid" | "linkage": edge DataFrame} for the files present.
    meshes : mask name -> path of ``<mask>-mesh.glb`` for the files present.
    provenance : ``derived/extras/provenance.json`` ({} when absent).
    manifest : ``segmentation-masks.csv`` as a DataFrame (None when absent).
    report : the validator's report (None when read with ``validate=False``).

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> ds = example_bundle()  # three cells in 32 x 32 pixels
    >>> from maskbundle import read_bundle
    >>> with read_bundle(ds) as bundle:
    ...     print(bundle.is_3d, bundle.n_levels, bundle.um_zyx)
    ...     print(bundle.feature_classes("cells")["Mask ID"])
    False 1 (1.0, 0.5, 0.5)
    mask
    """

    path: Path
    ome_tiff: Path
    mask_names: tuple[str, ...]
    physical_size: PhysicalSize | None
    objects: Mapping[str, pd.DataFrame]
    headers: Mapping[str, pd.DataFrame]
    adjacency: dict[str, dict[str, pd.DataFrame]]
    meshes: dict[str, Path]
    provenance: dict[str, Any]
    manifest: pd.DataFrame | None
    report: Report | None
    _pyramid: LabelPyramid = field(repr=False)
    _is_3d: bool = field(repr=False)

    # -- pixels --------------------------------------------------------------------------

    @property
    def is_3d(self) -> bool:
        return self._is_3d

    @property
    def n_levels(self) -> int:
        return len(self._pyramid.levels)

    def levels(self, mask: str) -> list[LabelArray]:
        """The pyramid of ``mask``: lazy arrays, level 0 (full resolution) first."""
        c = self._channel(mask)
        return [
            LabelArray(a, self._pyramid.axes, c, is_3d=self._is_3d) for a in self._pyramid.levels
        ]

    @property
    def masks(self) -> Mapping[str, LabelArray]:
        """Mask name -> lazy level-0 array (``(Y, X)`` or ``(Z, Y, X)``)."""
        return {name: self.levels(name)[0] for name in self.mask_names}

    def _channel(self, mask: str) -> int:
        if mask not in self.mask_names:
            raise OptionError(f"no mask {mask!r} in {self.path}; masks: {list(self.mask_names)}")
        return self.mask_names.index(mask)

    @property
    def um_zyx(self) -> tuple[float, float, float]:
        """Voxel size (z, y, x) in micrometres (z = 1.0 in 2D); (1, 1, 1) when unknown."""
        return (1.0, 1.0, 1.0) if self.physical_size is None else self.physical_size.um_zyx()

    # -- tables --------------------------------------------------------------------------

    def feature_classes(self, mask: str) -> dict[str, str]:
        """Column name -> its Feature class cell, for ``mask``'s objects table."""
        self._channel(mask)
        head = self.headers[mask]
        return {str(c): str(head.at[FEATURE_CLASS_ROW, c]) for c in head.columns}

    def adjacency_edges(self, mask: str, kind: AdjacencyKind = "linkage") -> pd.DataFrame:
        """The ``<mask>-<kind>-adjacency.csv`` rows; refused when the bundle has none."""
        self._channel(mask)
        edges = self.adjacency.get(mask, {}).get(kind)
        if edges is None:
            have = sorted(self.adjacency.get(mask, {}))
            raise OptionError(
                f"mask {mask!r} has no {kind} adjacency file (present: {have or 'none'}); "
                f"add it with maskbundle.add_adjacency(path, kinds={kind!r})"
            )
        return edges

    def adjacency_graph(
        self, mask: str, kind: AdjacencyKind = "linkage", *, weighted: bool = False
    ) -> scipy.sparse.csr_array:
        """The adjacency of ``mask`` as a symmetric sparse matrix over its objects.

        Row and column ``i`` are the ``i``-th row of ``objects[mask]`` (Object ID order).
        Entries are 1, or the ``Distance (micrometer)`` when ``weighted`` (a touching pair
        at distance 0 is then an explicit zero in the sparse structure).
        """
        import scipy.sparse

        edges = self.adjacency_edges(mask, kind)
        ids = self.objects[mask].index.to_numpy()
        n = ids.size
        a = np.searchsorted(ids, edges.iloc[:, 0].to_numpy())
        b = np.searchsorted(ids, edges.iloc[:, 1].to_numpy())
        if n and (np.any(ids[np.minimum(a, n - 1)] != edges.iloc[:, 0].to_numpy())
                  or np.any(ids[np.minimum(b, n - 1)] != edges.iloc[:, 1].to_numpy())):
            raise CorruptInputError(f"{mask} {kind} adjacency names objects not in its table")
        w = edges.iloc[:, 2].to_numpy(np.float64) if weighted else np.ones(len(edges))
        rows = np.concatenate([a, b])
        cols = np.concatenate([b, a])
        return scipy.sparse.csr_array((np.concatenate([w, w]), (rows, cols)), shape=(n, n))

    def load_mesh(self, mask: str) -> Any:
        """``<mask>-mesh.glb`` as a ``trimesh.Scene`` (nodes named by Object ID, micrometres)."""
        self._channel(mask)
        if mask not in self.meshes:
            raise OptionError(f"mask {mask!r} has no mesh file; write it with meshes=True")
        return load_glb_scene(self.meshes[mask])

    # -- exports (optional dependencies, imported on use) ---------------------------------

    def to_anndata(self, mask: str | None = None) -> Any:
        """One mask's objects table as ``anndata.AnnData`` in HuBMAP's layout.

        obs index ``<mask>-<Object ID>``; ``mask`` columns in obs (case-folded names, plus
        ``object id``); antibody/gene/IMS columns in X (var: ``alternative_id``,
        ``description``, ``protocol_doi``, ``feature_class``); ``spatial`` columns in
        ``obsm["X_spatial"]``, other classes in ``obsm[<class>]``; centroids (x, y[, z],
        pixels) in ``obsm["spatial"]``. Needs ``maskbundle[anndata]``.
        """
        from ..export.scverse import to_anndata

        return to_anndata(self, mask)

    def to_mudata(self, masks: Sequence[str] | None = None) -> Any:
        """Every mask's table in one ``mudata.MuData`` as HuBMAP's conversion intends.

        One AnnData per antibody/gene/IMS class (``default`` with no variables for tables
        without them), global obs/obsm as in :meth:`to_anndata`. Needs
        ``maskbundle[anndata]``.
        """
        from ..export.scverse import to_mudata

        return to_mudata(self, masks)

    def to_spatialdata(self, masks: Sequence[str] | None = None) -> Any:
        """Masks as multiscale labels (micrometre scale transform) and their tables.

        Labels element ``<mask>``, table ``<mask>_table`` annotating it (region key
        ``region``, instance key ``object_id``). Needs ``maskbundle[spatialdata]``.
        """
        from ..export.spatial import to_spatialdata

        return to_spatialdata(self, masks)

    def export(
        self,
        out: str | Path,
        *,
        to: str,
        masks: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the bundle as ``to`` (``h5ad``, ``h5mu``, ``spatialdata`` ...) at ``out``."""
        from ..export import export_bundle

        return export_bundle(self, out, to=to, masks=masks, overwrite=overwrite)

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the OME-TIFF (lazy arrays cannot be read afterwards)."""
        self._pyramid.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.mask_names)


def _refuse(root: Path, report: Report) -> BundleInvalidError:
    first = report.errors[0]
    more = len(report.errors) - 1
    return BundleInvalidError(
        f"{root} is not a valid Segmentation Mask bundle: {first.location} [{first.code}] "
        f"{first.message}" + (f" (and {more} more error(s))" if more else "")
        + f"; run `maskbundle validate {root}` for every finding and fix them",
        report=report,
    )


def read_bundle(path: str | Path, *, validate: bool = True) -> Bundle:
    """Read a Segmentation Mask dataset directory.

    Parameters
    ----------
    path : str or Path
        The dataset directory (the one holding ``extras/`` and ``derived/``).
    validate : bool
        Run :func:`~maskbundle.validate_bundle` first and refuse a bundle with errors
        (default). ``False`` skips it (faster on large bundles: the validator reads every
        pixel) and reads whatever parses.

    Returns
    -------
    Bundle
        Lazy masks, typed tables, adjacency, mesh paths, provenance. Close it (or use it
        as a context manager) to release the OME-TIFF.

    Raises
    ------
    BundleInvalidError
        The validator found errors; ``exc.report`` holds every finding.
    CorruptInputError
        With ``validate=False``: a file cannot be parsed at all.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> ds = example_bundle()  # three cells in 32 x 32 pixels
    >>> from maskbundle import read_bundle
    >>> with read_bundle(ds) as bundle:
    ...     table = bundle.objects["cells"]
    >>> bundle.mask_names
    ('cells',)
    >>> table.index.tolist(), table["Mask name"].tolist()
    ([1, 2, 3], ['cells', 'cells', 'cells'])
    """
    root = Path(path)
    report = None
    if validate:
        report = validate_bundle(root)
        if not report.ok:
            raise _refuse(root, report)
    seg = root / layout.SEG_DIR
    tiffs = sorted(seg.glob("*.ome.tif*")) if seg.is_dir() else []
    if len(tiffs) != 1:
        raise BundleInvalidError(
            f"{root}: {len(tiffs)} OME-TIFFs in {layout.SEG_DIR.as_posix()}; a bundle has "
            "exactly one (is this the dataset directory that holds derived/?)"
        )
    pyramid = open_label_pyramid(tiffs[0])
    try:
        names = tuple(pyramid.channel_names)
        axes = pyramid.axes
        shape = dict(zip(axes, pyramid.levels[0].shape, strict=True))
        is_3d = int(shape.get("Z", 1)) > 1
        tables: dict[str, Path] = {}
        adjacency: dict[str, dict[str, pd.DataFrame]] = {}
        meshes: dict[str, Path] = {}
        for name in names:
            table = next(
                (seg / f"{name}-objects.{ext}" for ext in OBJECTS_FORMATS
                 if (seg / f"{name}-objects.{ext}").is_file()),
                None,
            )
            if table is None:
                raise BundleInvalidError(f"{root}: mask {name!r} has no objects table")
            tables[name] = table
            for kind in ADJACENCY_KINDS:
                csv = seg / f"{name}-{kind}-adjacency.csv"
                if csv.is_file():
                    try:
                        frame = _adjacency_frame(read_csv_rows(csv))
                    except CorruptInputError as exc:
                        raise CorruptInputError(f"{csv.name}: {exc}") from exc
                    adjacency.setdefault(name, {})[kind] = frame
            glb = root / layout.mesh_path(name)
            if glb.is_file():
                meshes[name] = glb
        prov_path = root / layout.PROVENANCE
        try:
            provenance = read_json(prov_path) if prov_path.is_file() else {}
        except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
            raise CorruptInputError(f"{prov_path.name}: not valid JSON ({exc})") from exc
        man_path = root / layout.MANIFEST
        manifest = None
        if man_path.is_file():
            rows = read_csv_rows(man_path)
            manifest = pd.DataFrame(rows[1:], columns=rows[0]) if rows else None
    except BaseException:
        pyramid.close()
        raise
    cache = _TableCache(tables)
    return Bundle(
        path=root,
        ome_tiff=tiffs[0],
        mask_names=names,
        physical_size=pyramid.physical_size,
        objects=_Tables(cache, 0),
        headers=_Tables(cache, 1),
        adjacency=adjacency,
        meshes=meshes,
        provenance=provenance if isinstance(provenance, dict) else {},
        manifest=manifest,
        report=report,
        _pyramid=pyramid,
        _is_3d=is_3d,
    )
