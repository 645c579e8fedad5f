"""Compiled cell formatting for the objects-table writer: numbers to text, rows to bytes.

Floats get the text Python's ``repr`` gives (the shortest decimal that reads back to the
same double; exponent form below 1e-4 and from 1e16 on), computed with the Ryu algorithm
(Ulf Adams, PLDI 2018) in fixed-width integer arithmetic instead of ``repr``'s big-number
``dtoa``: about 30x faster per value. Tables of 5^q and 2^k / 5^q are built exactly with
Python integers at import.

A formatted column is a byte buffer plus each cell's ``[start, end)`` in it, so constant
text columns cost one copy of their text. :func:`join_tsv` and :func:`join_sheet_rows`
assemble rows from such columns.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["format_floats", "format_ints", "join_sheet_rows", "join_tsv"]

_POW5_INV_BITCOUNT = 125
_POW5_BITCOUNT = 125


def _tables() -> tuple[np.ndarray, np.ndarray]:
    inv = np.zeros((342, 2), np.uint64)  # [q] = floor(2^(bits(5^q) - 1 + 125) / 5^q) + 1
    pos = np.zeros((326, 2), np.uint64)  # [i] = top 125 bits of 5^i
    mask = (1 << 64) - 1
    for q in range(342):
        p = 5**q
        v = (1 << (p.bit_length() - 1 + _POW5_INV_BITCOUNT)) // p + 1
        inv[q] = (v & mask, v >> 64)
    for i in range(326):
        p = 5**i
        shift = p.bit_length() - _POW5_BITCOUNT
        v = p >> shift if shift >= 0 else p << -shift
        pos[i] = (v & mask, v >> 64)
    return inv, pos


_POW5_INV_SPLIT, _POW5_SPLIT = _tables()

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U4 = np.uint64(4)
_U5 = np.uint64(5)
_U10 = np.uint64(10)
_U32 = np.uint64(32)
_U52 = np.uint64(52)
_LO32 = np.uint64(0xFFFFFFFF)
_MANT = np.uint64((1 << 52) - 1)
_HIDDEN = np.uint64(1 << 52)


@numba.njit(cache=True, nogil=True, inline="always")  # type: ignore[misc]
def _umul128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:  # pragma: no cover
    """(high, low) 64-bit halves of the 128-bit product a * b."""
    a_lo = a & _LO32
    a_hi = a >> _U32
    b_lo = b & _LO32
    b_hi = b >> _U32
    b00 = a_lo * b_lo
    b01 = a_lo * b_hi
    b10 = a_hi * b_lo
    b11 = a_hi * b_hi
    mid1 = b10 + (b00 >> _U32)
    mid2 = b01 + (mid1 & _LO32)
    hi = b11 + (mid1 >> _U32) + (mid2 >> _U32)
    lo = (mid2 << _U32) | (b00 & _LO32)
    return hi, lo


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _mul_shift(m: np.uint64, mul_lo: np.uint64, mul_hi: np.uint64, j: int) -> np.uint64:
    # pragma: no cover
    """(m * mul) >> j for a 128-bit mul and 64 < j < 128; the result fits 64 bits."""
    high1, low1 = _umul128(m, mul_hi)
    high0, _low0 = _umul128(m, mul_lo)
    s = high0 + low1
    if s < high0:
        high1 += _U1
    d = np.uint64(j - 64)
    return (high1 << (np.uint64(64) - d)) | (s >> d)


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _pow5_factor(v: np.uint64) -> int:  # pragma: no cover
    count = 0
    while v > _U0:
        if v % _U5 != _U0:
            break
        v //= _U5
        count += 1
    return count


@numba.njit(cache=True, nogil=True, inline="always")  # type: ignore[misc]
def _pow5bits(e: int) -> int:  # pragma: no cover
    return ((e * 1217359) >> 19) + 1


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _shortest(bits: np.uint64, inv: np.ndarray, pos: np.ndarray) -> tuple[np.uint64, int]:
    # pragma: no cover
    """Shortest round-tripping decimal of a finite nonzero double: (digits, exponent10)."""
    ieee_m = bits & _MANT
    ieee_e = int((bits >> _U52) & np.uint64(0x7FF))
    if ieee_e == 0:
        e2 = 1 - 1023 - 52 - 2
        m2 = ieee_m
    else:
        e2 = ieee_e - 1023 - 52 - 2
        m2 = _HIDDEN | ieee_m
    even = (m2 & _U1) == _U0
    mv = _U4 * m2
    mm_shift = np.uint64(1) if (ieee_m != _U0 or ieee_e <= 1) else np.uint64(0)
    vm_trailing = False
    vr_trailing = False
    if e2 >= 0:
        q = ((e2 * 78913) >> 18) - (1 if e2 > 3 else 0)
        e10 = q
        k = _POW5_INV_BITCOUNT + _pow5bits(q) - 1
        i = -e2 + q + k
        lo = inv[q, 0]
        hi = inv[q, 1]
        vr = _mul_shift(mv, lo, hi, i)
        vp = _mul_shift(mv + _U2, lo, hi, i)
        vm = _mul_shift(mv - _U1 - mm_shift, lo, hi, i)
        if q <= 21:
            if mv % _U5 == _U0:
                vr_trailing = _pow5_factor(mv) >= q
            elif even:
                vm_trailing = _pow5_factor(mv - _U1 - mm_shift) >= q
            else:
                vp -= _U1 if _pow5_factor(mv + _U2) >= q else _U0
    else:
        q = ((-e2 * 732923) >> 20) - (1 if -e2 > 1 else 0)
        e10 = q + e2
        i = -e2 - q
        k = _pow5bits(i) - _POW5_BITCOUNT
        j = q - k
        lo = pos[i, 0]
        hi = pos[i, 1]
        vr = _mul_shift(mv, lo, hi, j)
        vp = _mul_shift(mv + _U2, lo, hi, j)
        vm = _mul_shift(mv - _U1 - mm_shift, lo, hi, j)
        if q <= 1:
            vr_trailing = True
            if even:
                vm_trailing = mm_shift == _U1
            else:
                vp -= _U1
        elif q < 63:
            vr_trailing = (mv & ((_U1 << np.uint64(q)) - _U1)) == _U0
    removed = 0
    last = _U0
    if vm_trailing or vr_trailing:
        while vp // _U10 > vm // _U10:
            vm_trailing = vm_trailing and bool(vm % _U10 == _U0)
            vr_trailing = vr_trailing and bool(last == _U0)
            last = vr % _U10
            vr //= _U10
            vp //= _U10
            vm //= _U10
            removed += 1
        if vm_trailing:
            while vm % _U10 == _U0:
                vr_trailing = vr_trailing and bool(last == _U0)
                last = vr % _U10
                vr //= _U10
                vp //= _U10
                vm //= _U10
                removed += 1
        if vr_trailing and last == _U5 and vr % _U2 == _U0:
            last = np.uint64(4)  # exactly halfway: round to even
        up = (vr == vm and (not even or not vm_trailing)) or last >= _U5
        out = vr + (_U1 if up else _U0)
    else:
        round_up = False
        # most doubles lose two or more digits here: strip two at a time first
        while vp // _U100 > vm // _U100:
            vr100 = vr // _U100
            round_up = bool(vr - vr100 * _U100 >= np.uint64(50))
            vr = vr100
            vp //= _U100
            vm //= _U100
            removed += 2
        while vp // _U10 > vm // _U10:
            round_up = bool(vr % _U10 >= _U5)
            vr //= _U10
            vp //= _U10
            vm //= _U10
            removed += 1
        out = vr + (_U1 if (vr == vm or round_up) else _U0)
    return out, e10 + removed


_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint8).copy()
_POW10 = np.array([10**k for k in range(20)], np.uint64)
_U100 = np.uint64(100)


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _put_digits(buf: np.ndarray, p: int, v: np.uint64, n: int) -> None:  # pragma: no cover
    """The last ``n`` decimal digits of ``v`` at buf[p:p + n], two at a time."""
    t = p + n
    while t - p >= 2:
        q = v // _U100
        r = int(v - q * _U100)
        buf[t - 2] = _PAIRS[2 * r]
        buf[t - 1] = _PAIRS[2 * r + 1]
        v = q
        t -= 2
    if t > p:
        buf[p] = np.uint8(48 + int(v % _U10))


@numba.njit(cache=True, nogil=True, inline="always")  # type: ignore[misc]
def _n_digits(v: np.uint64) -> int:  # pragma: no cover
    n = 1
    while n < 20 and v >= _POW10[n]:
        n += 1
    return n


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _format_floats(
    values: np.ndarray, inv: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = values.shape[0]
    buf = np.empty(n * 24, np.uint8)
    ends = np.empty(n, np.int64)
    p = 0
    bits_all = values.view(np.uint64)
    for r in range(n):
        x = values[r]
        if x != x:  # NaN: a missing value, an empty cell
            ends[r] = p
            continue
        bits = bits_all[r]
        if bits >> np.uint64(63):
            buf[p] = 45  # '-'
            p += 1
            bits &= ~(np.uint64(1) << np.uint64(63))
        if bits == np.uint64(0x7FF0000000000000):
            buf[p] = 105  # inf
            buf[p + 1] = 110
            buf[p + 2] = 102
            p += 3
            ends[r] = p
            continue
        if bits == _U0:
            buf[p] = 48  # 0.0
            buf[p + 1] = 46
            buf[p + 2] = 48
            p += 3
            ends[r] = p
            continue
        digits, e10 = _shortest(bits, inv, pos)
        nd = _n_digits(digits)
        decpt = nd + e10  # value = 0.DIGITS x 10^decpt
        if -4 < decpt <= 16:
            if decpt <= 0:  # 0.000ddd
                buf[p] = 48
                buf[p + 1] = 46
                p += 2
                for _ in range(-decpt):
                    buf[p] = 48
                    p += 1
                _put_digits(buf, p, digits, nd)
                p += nd
            elif decpt >= nd:  # ddd000.0
                _put_digits(buf, p, digits, nd)
                p += nd
                for _ in range(decpt - nd):
                    buf[p] = 48
                    p += 1
                buf[p] = 46
                buf[p + 1] = 48
                p += 2
            else:  # dd.ddd
                _put_digits(buf, p, digits // (_U10 ** np.uint64(nd - decpt)), decpt)
                p += decpt
                buf[p] = 46
                p += 1
                _put_digits(buf, p, digits, nd - decpt)  # low digits
                p += nd - decpt
        else:  # d.ddde+XX
            _put_digits(buf, p, digits, nd)
            if nd > 1:
                for t in range(p + nd, p + 1, -1):
                    buf[t] = buf[t - 1]
                buf[p + 1] = 46
                p += nd + 1
            else:
                p += 1
            buf[p] = 101
            x10 = decpt - 1
            buf[p + 1] = 45 if x10 < 0 else 43
            p += 2
            a = -x10 if x10 < 0 else x10
            na = 2 if a < 100 else 3
            _put_digits(buf, p, np.uint64(a), na)
            p += na
        ends[r] = p
    return buf[:p], ends


def format_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell text of float64 ``values`` as (bytes, end offsets); NaN gives an empty cell."""
    arr = np.ascontiguousarray(values, dtype=np.float64)
    buf, ends = _format_floats(arr, _POW5_INV_SPLIT, _POW5_SPLIT)
    return buf, ends


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _format_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = values.shape[0]
    buf = np.empty(n * 20, np.uint8)
    ends = np.empty(n, np.int64)
    p = 0
    for r in range(n):
        v = values[r]
        if v < 0:
            buf[p] = 45
            p += 1
            u = np.uint64(0) - np.uint64(v)  # exact for the smallest int64 too
        else:
            u = np.uint64(v)
        nd = _n_digits(u)
        _put_digits(buf, p, u, nd)
        p += nd
        ends[r] = p
    return buf[:p], ends


def format_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal text of int64 ``values`` as (bytes, end offsets)."""
    return _format_ints(np.ascontiguousarray(values, dtype=np.int64))  # type: ignore[no-any-return]


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def join_tsv(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    # pragma: no cover
    """Rows of tab-separated cells ending in ``\\n``; cell (r, c) is buf[starts[r, c]:ends[r, c]]."""
    n, k = starts.shape
    size = n * k
    for c in range(k):
        for r in range(n):
            size += ends[r, c] - starts[r, c]
    out = np.empty(size, np.uint8)
    p = 0
    for r in range(n):
        for c in range(k):
            for t in range(starts[r, c], ends[r, c]):
                out[p] = buf[t]
                p += 1
            out[p] = 9 if c < k - 1 else 10
            p += 1
    return out

# XML pieces of a sheet row (numba freezes global arrays as constants)
_ROW_OPEN = np.frombuffer(b'<row r="', np.uint8).copy()
_ROW_CLOSE = np.frombuffer(b"</row>", np.uint8).copy()
_CELL_OPEN = np.frombuffer(b'<c r="', np.uint8).copy()
_NUM_MID = np.frombuffer(b'"><v>', np.uint8).copy()
_NUM_CLOSE = np.frombuffer(b"</v></c>", np.uint8).copy()
_TXT_MID = np.frombuffer(b'" t="inlineStr">', np.uint8).copy()
_TXT_CLOSE = np.frombuffer(b"</c>", np.uint8).copy()


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def join_sheet_rows(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    numeric: np.ndarray,
    refs: np.ndarray,
    ref_ends: np.ndarray,
    first_row: int,
) -> np.ndarray:  # pragma: no cover
    """Sheet XML ``<row>`` elements of the cells; empty cells are left out.

    Numeric columns give ``<c r="B12"><v>TEXT</v></c>``; the cells of other columns
    already hold their ``<is><t>...</t></is>`` and get ``t="inlineStr"``. ``refs`` holds
    the column letters, column c at ``refs[ref_ends[c - 1]:ref_ends[c]]``.
    """
    n, k = starts.shape
    size = n * (40 + k * 48)
    for c in range(k):
        for r in range(n):
            size += ends[r, c] - starts[r, c]
    out = np.empty(size, np.uint8)
    p = 0
    for r in range(n):
        row = np.uint64(first_row + r)
        nrow = _n_digits(row)
        for t in range(_ROW_OPEN.size):
            out[p] = _ROW_OPEN[t]
            p += 1
        _put_digits(out, p, row, nrow)
        p += nrow
        out[p] = 34  # "
        out[p + 1] = 62  # >
        p += 2
        for c in range(k):
            s = starts[r, c]
            e = ends[r, c]
            if e == s:
                continue
            for t in range(_CELL_OPEN.size):
                out[p] = _CELL_OPEN[t]
                p += 1
            for t in range(ref_ends[c - 1] if c > 0 else 0, ref_ends[c]):
                out[p] = refs[t]
                p += 1
            _put_digits(out, p, row, nrow)
            p += nrow
            mid = _NUM_MID if numeric[c] else _TXT_MID
            for t in range(mid.size):
                out[p] = mid[t]
                p += 1
            for t in range(s, e):
                out[p] = buf[t]
                p += 1
            close = _NUM_CLOSE if numeric[c] else _TXT_CLOSE
            for t in range(close.size):
                out[p] = close[t]
                p += 1
        for t in range(_ROW_CLOSE.size):
            out[p] = _ROW_CLOSE[t]
            p += 1
    return out[:p]
