from __future__ import annotations

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
