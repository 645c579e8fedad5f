from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.segmentation import relabel_sequential

from maskbundle.errors import LabelError
from maskbundle.labels.checks import check_label_array
from maskbundle.labels.pyramid import pyramid_level, pyramid_level_count
from maskbundle.labels.relabel import label_dtype, relabel, relabel_mask

label_images = arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.uint64]),
    shape=st.one_of(st.tuples(st.integers(1, 12), st.integers(1, 12)),
                    st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 8))),
    elements=st.integers(0, 120),
)


@settings(max_examples=60, deadline=None)
@given(label_images)
def test_relabel_preserves_partition_and_order(arr: np.ndarray) -> None:
    out, original = relabel(check_label_array("cells", arr))
    # independent reference: scikit-image's relabel_sequential (ascending, 0 kept)
    ref, _, _ = relabel_sequential(arr.astype(np.int64))
    assert np.array_equal(out.astype(np.int64), ref)
    assert np.array_equal(original, np.unique(arr[arr != 0]).astype(np.int64))
    # the map inverts: original_ids[new - 1] gives back the input
    back = np.zeros(arr.shape, np.int64)
    back[out > 0] = original[out[out > 0].astype(np.int64) - 1]
    assert np.array_equal(back, arr.astype(np.int64))
    # idempotent
    again, ids2 = relabel(out)
    assert np.array_equal(again, out) and np.array_equal(ids2, np.arange(1, original.size + 1))


def test_sparse_huge_ids_do_not_allocate_by_max_label() -> None:
    arr = np.zeros((50, 50), np.uint64)
    arr[1, 1] = 2**63 + 5
    arr[2, 2] = 2**40
    arr[3, 3] = 2**31 - 1
    m = relabel_mask("cells", arr)
    assert m.labels.dtype == np.uint16
    assert m.original_ids.tolist() == [2**31 - 1, 2**40, 2**63 + 5]
    assert (m.labels[1, 1], m.labels[2, 2], m.labels[3, 3]) == (3, 2, 1)


def test_dtype_by_object_count() -> None:
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    with pytest.raises(LabelError, match="2\\*\\*32 - 1"):
        label_dtype(2**32)
    arr = np.arange(70000, dtype=np.uint32).reshape(350, 200) + 1
    m = relabel_mask("cells", arr)
    assert m.labels.dtype == np.uint32 and int(m.labels.max()) == 70000  # no wrap to 4464


def test_floats_only_when_whole_finite_non_negative() -> None:
    ok = check_label_array("cells", np.array([[0.0, 3.0], [3.0, 7.0]]))
    assert ok.dtype.kind == "u" and ok.tolist() == [[0, 3], [3, 7]]
    with pytest.raises(LabelError, match=r"NaN.*first at \(row, column\) \(0, 1\)"):
        check_label_array("cells", np.array([[0.0, np.nan]]))
    with pytest.raises(LabelError, match="fractional"):
        check_label_array("cells", np.array([[0.5, 1.0]]))
    with pytest.raises(LabelError, match="negative"):
        check_label_array("cells", np.array([[-1.0, 1.0]]))


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.ones((3, 3), bool), "skimage.measure.label"),
        (np.array([[0, -2], [1, -1]], np.int32), r"2 negative.*\(0, 1\)"),
        (np.zeros(5, np.uint8), "got 1D"),
        (np.zeros((2, 2, 2, 2), np.uint8), "got 4D"),
        (np.array([["a"]]), "not a label type"),
        (np.zeros((2, 2), complex), "not a label type"),
    ],
)
def test_refusals_name_mask_problem_and_fix(arr: np.ndarray, message: str) -> None:
    with pytest.raises(LabelError, match=message) as info:
        check_label_array("nuclei", arr)
    assert "'nuclei'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_mask_is_valid() -> None:
    m = relabel_mask("cells", np.zeros((4, 5), np.int32))
    assert m.n_objects == 0 and m.labels.shape == (4, 5) and not m.labels.any()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3000), st.sampled_from([64, 512]))
def test_pyramid_level_count_until_smaller_side_fits(h: int, w: int, tile: int) -> None:
    n = pyramid_level_count(h, w, tile)
    sizes = [(h, w)]
    for _ in range(n):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    assert min(sizes[-1]) <= tile
    assert n == 0 or min(sizes[-2]) > tile


def test_pyramid_level_is_stride() -> None:
    a = np.arange(2 * 3 * 9 * 7).reshape(2, 3, 9, 7)
    assert np.array_equal(pyramid_level(a, 2), a[..., ::4, ::4])


# One label check for every stage: the same rule for booleans and floats everywhere.
def _stage(name: str) -> Callable[[np.ndarray], object]:
    from maskbundle.measure.adjacency import centroid_adjacency, linkage_adjacency
    from maskbundle.measure.features import compute_features
    from maskbundle.mesh.labels import mesh_labels

    ps3 = (1.0, 1.0, 1.0)
    stages: dict[str, Callable[[np.ndarray], object]] = {
        "features": lambda a: compute_features(a, physical_size=ps3),
        "centroid adjacency": lambda a: centroid_adjacency(a, physical_size=ps3),
        "linkage adjacency": lambda a: linkage_adjacency(a, physical_size=ps3),
        "meshes": lambda a: mesh_labels(a, physical_size=ps3),
        "writer": lambda a: relabel_mask("cells", a),
    }
    return stages[name]


RELABELLED_STAGES = ["features", "centroid adjacency", "linkage adjacency", "meshes"]


@pytest.mark.parametrize("stage", [*RELABELLED_STAGES, "writer"])
def test_every_stage_refuses_booleans_with_the_same_fix(stage: str) -> None:
    mask = np.zeros((3, 6, 6), bool)
    mask[1, 2:4, 2:4] = True
    with pytest.raises(LabelError, match=r"boolean array has no object ids.*skimage"):
        _stage(stage)(mask)


@pytest.mark.parametrize("stage", RELABELLED_STAGES)
def test_stages_taking_relabelled_masks_refuse_floats(stage: str) -> None:
    whole = np.zeros((3, 6, 6), np.float32)
    whole[1, 2:4, 2:4] = 1.0
    with pytest.raises(LabelError, match=r"integers numbered 1\.\.N; relabel"):
        _stage(stage)(whole)


def test_converters_keep_what_the_file_held_once_checked() -> None:
    big_endian = np.array([[0, 2], [2, 5]], dtype=">f4")
    kept = check_label_array("cells", big_endian, convert=False)
    assert kept is big_endian  # provenance records the file's own dtype and bytes
    converted = check_label_array("cells", big_endian)
    assert converted.dtype == np.uint64 and converted.tolist() == [[0, 2], [2, 5]]
    with pytest.raises(LabelError, match=r"file.npy \(cells\): 3 fractional.*\(0, 1\) \(0.5 is"):
        check_label_array("cells", big_endian / 4, what="file.npy (cells)", convert=False)


def test_relabel_threaded_parts_match_skimage_on_a_strided_view() -> None:
    # a strided (non-contiguous) view with gaps in the ids: the presence-table path on two
    # parts, checked against scikit-image
    from maskbundle.synthetic import synthetic_tissue

    _, nuclei = synthetic_tissue((300, 260))
    view = nuclei.T[::2]
    out, original = relabel(view)
    ref, _, inv = relabel_sequential(view.astype(np.int64))
    assert np.array_equal(out.astype(np.int64), ref)
    assert np.array_equal(original, np.asarray(inv.in_values)[1:].astype(np.int64))
