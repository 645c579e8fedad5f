"""The one reader per format: OME-XML, table grids, GLB; and the fast XLSX sheet scan."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from maskbundle.errors import CorruptInputError, TableFormatError
from maskbundle.io import readers
from maskbundle.io.glb import read_glb_summary, write_glb
from maskbundle.io.intensity import read_intensity_image
from maskbundle.io.ometiff import parse_ome_xml, read_label_ome_tiff, read_ome_metadata
from maskbundle.io.readers import read_table_grid
from maskbundle.mesh.labels import ObjectMesh

OME = (
    '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
    '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
    'SizeX="6" SizeY="5" SizeZ="1" SizeC="2" SizeT="1" PhysicalSizeX="0.25" '
    'PhysicalSizeY="0.5"><Channel ID="Channel:0:0" Name="cells" SamplesPerPixel="1"/>'
    '<Channel ID="Channel:0:1" Name="nuclei" SamplesPerPixel="1"/>'
    '<TiffData IFD="0" PlaneCount="2"/></Pixels></Image></OME>'
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE OME [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
) + OME.replace('Name="cells"', 'Name="&b;"')


def _tiff(path: Path, description: str) -> Path:
    tifffile.imwrite(path, np.ones((2, 5, 6), np.uint16), description=description.encode(),
                     metadata=None)
    return path


def test_ome_metadata_of_a_written_tiff(tmp_path: Path) -> None:
    meta = read_ome_metadata(_tiff(tmp_path / "a.ome.tif", OME))
    assert meta is not None
    assert meta.channel_names == ["cells", "nuclei"] and meta.dimension_order == "XYCZT"
    size = meta.physical_size
    assert size is not None and (size.x, size.y, size.z) == (0.25, 0.5, None)
    assert meta.names_for(2) == ["cells", "nuclei"] and meta.names_for(3) is None
    assert read_ome_metadata(_tiff(tmp_path / "plain.tif", "just a comment")) is None


@pytest.mark.parametrize("xml", [LAUGHS, OME.replace("<OME", '<!DOCTYPE x SYSTEM "file:///etc/passwd"><OME')])
def test_every_reader_refuses_a_dtd(tmp_path: Path, xml: str) -> None:
    with pytest.raises(CorruptInputError, match="DTD or entities"):
        parse_ome_xml(xml, "x")
    path = _tiff(tmp_path / "bad.ome.tif", xml)
    for read in (read_ome_metadata, read_label_ome_tiff, read_intensity_image):
        with pytest.raises(CorruptInputError, match="DTD or entities"):
            read(path)


def test_overlong_ome_xml_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    from maskbundle.io import ometiff

    monkeypatch.setattr(ometiff, "MAX_OME_XML", len(OME) - 1)
    with pytest.raises(CorruptInputError, match="characters long"):
        parse_ome_xml(OME, "x")


def test_damaged_ome_xml_names_the_parser_error() -> None:
    with pytest.raises(CorruptInputError, match="cannot be used") as info:
        parse_ome_xml(OME.replace('PhysicalSizeX="0.25"', 'PhysicalSizeX="-1"'), "x")
    assert info.value.__cause__ is not None


# -- the sheet scan: the fast path against the plain one (every tag tried) -------------------

CHUNKS = [
    b'<row r="5"><c r="AB5"><is><t>r="ZZZ9 r="99" :f <f</t></is></c></row>',
    b'<x:row r="7"><x:c r="A7"><x:f>1+1</x:f></x:c></x:row>',
    b'<row xr="5" r="123"><c r="A1" t="s"/></row>',
    b'<c xr="ABC1" r="A1"/><row r="3">',
    b'<row r="1048577"><c r="XFD1"/></row><row r="2"><c r="B2"><f/></c></row>',
    b"<sheetData/>",
    b"",
]


def _random_sheet(rng: np.random.Generator) -> bytes:
    parts = []
    for r in rng.choice(5000, size=40, replace=False):
        cells = "".join(
            f'<c r="{"".join(chr(65 + int(k)) for k in rng.integers(0, 26, rng.integers(1, 4)))}'
            f'{r}"><v>{rng.random()}</v></c>'
            for _ in range(int(rng.integers(0, 5)))
        )
        parts.append(f'<row r="{r}">{cells}</row>')
    return "".join(parts).encode()


@pytest.mark.parametrize("chunk", CHUNKS + [_random_sheet(np.random.default_rng(s)) for s in range(5)])
def test_fast_sheet_scan_decides_as_the_plain_scan(chunk: bytes) -> None:
    fast = readers._sheet_facts(chunk)
    plain = readers._sheet_facts_plain(chunk)
    assert fast[:2] == plain[:2]
    # the column count is exact from column AA on; one-letter columns count as 26
    assert fast[2] == (max(plain[2], 26) if plain[1] else plain[2])


def test_look_alikes_fall_back_to_the_plain_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_MAX_UNCONFIRMED", 3)
    chunk = b'<row r="2"><c r="A2"><is><t>' + b' r="ZZ' * 10 + b"</t></is></c></row>"
    assert readers._sheet_facts(chunk) == readers._sheet_facts_plain(chunk) == (False, 2, 1)


def test_float_texts_are_repr_without_a_whole_numbers_point() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(size=200) * 10.0 ** rng.integers(-20, 20, 200),
                             np.arange(-5, 5, dtype=np.float64), [1e16, 2.5e16, 0.1, -0.0]])
    want = [re.sub(r"\.0$", "", repr(float(v))) for v in values]
    assert readers._float_texts(values) == want


# -- table grid ----------------------------------------------------------------------------


def test_table_grid_strict_and_lenient(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes(b"a\tb\r\n1\t2\r\n")
    with pytest.raises(TableFormatError, match="carriage return"):
        read_table_grid(path)
    assert read_table_grid(path, strict=False).rows == [["a", "b"], ["1", "2"]]
    path.write_bytes(b"a\tb\n\n")
    assert read_table_grid(path).rows == [["a", "b"], []]
    assert read_table_grid(path, strict=False).rows == [["a", "b"], [""]]


# -- GLB -----------------------------------------------------------------------------------


def _box(oid: int, offset: float) -> ObjectMesh:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) + offset
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.uint32)
    n = np.ones_like(v) / np.sqrt(3, dtype=np.float32)
    return ObjectMesh(object_id=oid, vertices=v, faces=f, normals=n)


def test_glb_summary_and_the_writer_check(tmp_path: Path) -> None:
    from maskbundle.bundle.meshes import check_mesh_file

    path = write_glb(tmp_path / "cells-mesh.glb", [_box(3, 0.0), _box(9, 2.0)], mask="cells")
    summary = read_glb_summary(path)
    assert sorted(summary.node_names) == ["3", "9"]
    assert summary.node_extras["9"] == {"object_id": 9, "mask": "cells"}
    assert summary.bounds is not None
    np.testing.assert_allclose(summary.bounds, [[0, 0, 0], [3, 3, 3]])
    assert check_mesh_file(path, [3, 9], "cells") == []
    problems = check_mesh_file(path, [3], "nuclei")
    assert len(problems) == 2
    assert any(re.fullmatch(r"cells-mesh.glb: node \d name '9' is not an Object ID of 'nuclei'", p)
               for p in problems)
    assert any(p.startswith("cells-mesh.glb: node 3 extras") and p.endswith("'nuclei'")
               for p in problems)
    broken = tmp_path / "broken-mesh.glb"
    broken.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptInputError, match="not a loadable glTF"):
        read_glb_summary(broken)
    assert check_mesh_file(broken, [3, 9], "cells")[0].startswith("broken-mesh.glb: not a loadable")
