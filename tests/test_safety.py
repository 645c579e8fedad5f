"""Adversarial negative suite (issue 13): data loss, wrong data, formulas, plain failures.

Every refused case asserts the named MaskBundleError subclass, that the CLI exits 2 with
one line, and that nothing was written and nothing deleted (a snapshot of the working
folder is compared before and after).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from helpers import DOI
from maskbundle.bundle.adjacency import add_adjacency
from maskbundle.bundle.build import write_segmentation_bundle
from maskbundle.bundle.metadata import write_upload_metadata
from maskbundle.bundle.validate import validate_bundle
from maskbundle.cli import _physical_size_args, main
from maskbundle.convert import read_qupath
from maskbundle.errors import (
    EmptyResultError,
    LabelError,
    MaskBundleError,
    MaskNameError,
    OptionError,
    OutputExistsError,
    OutputWriteError,
    PlausibilityWarning,
    Report,
    TableFormatError,
    UnsafeOverwriteError,
)
from maskbundle.io import staging
from maskbundle.model import ColumnSpec
from maskbundle.rules import text_cell_problem

SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- helpers ----------------------------------------------------------------------------------


def _labels(shape: tuple[int, ...] = (24, 24)) -> np.ndarray:
    m = np.zeros(shape, np.uint16)
    m[..., 2:6, 2:6] = 1
    m[..., 8:14, 9:15] = 2
    m[..., 16:22, 3:8] = 3
    return m


KW: dict[str, Any] = {"physical_size": (0.5, 0.5), "protocol_doi": DOI}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: equal snapshots = nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def refused(
    root: Path, fn: Callable[[], Any], error: type[MaskBundleError], match: str | None = None
) -> MaskBundleError:
    """``fn()`` raises ``error`` and leaves ``root`` exactly as it was."""
    before = snapshot(root)
    with pytest.raises(error, match=match) as info:
        fn()
    assert snapshot(root) == before, "a refused call wrote or deleted something"
    return info.value


def cli(args: list[str]) -> Any:
    return CliRunner().invoke(main, _physical_size_args(args))


def cli_refused(root: Path, args: list[str], match: str | None = None) -> str:
    """The CLI exits 2 with one line on stderr and leaves ``root`` untouched."""
    before = snapshot(root)
    result = cli(args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if match is not None:
        assert match in lines[0], lines[0]
    assert snapshot(root) == before, "a refused command wrote or deleted something"
    return lines[0]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def bundle(work: Path) -> Path:
    return write_segmentation_bundle(work / "b", {"cells": _labels()}, **KW)


# == Data loss ================================================================================


def test_overwrite_refuses_a_folder_that_is_not_our_bundle(work: Path) -> None:
    victim = work / "project"
    (victim / "src").mkdir(parents=True)
    (victim / "src" / "thesis.tex").write_text("years of work")
    err = refused(work, lambda: write_segmentation_bundle(
        victim, {"cells": _labels()}, overwrite=True, **KW), UnsafeOverwriteError,
        "src/thesis.tex")
    assert "overwrite=" not in str(err) and "--overwrite" not in err.cli_message
    # and without overwrite the message does not recommend it either
    err = refused(work, lambda: write_segmentation_bundle(victim, {"cells": _labels()}, **KW),
                  UnsafeOverwriteError)
    assert "overwrite=" not in str(err) and "--overwrite" not in err.cli_message


def test_cli_overwrite_never_deletes_the_input_mask_or_notes(work: Path) -> None:
    victim = work / "victimdir"
    victim.mkdir()
    tifffile.imwrite(victim / "mask2d.tif", _labels())
    (victim / "notes.txt").write_text("notes")
    line = cli_refused(work, ["bundle", "victimdir", "--mask", "nuclei=victimdir/mask2d.tif",
                              "--physical-size", "0.5", "0.5", "--protocol-doi", DOI,
                              "--overwrite"])
    assert "--overwrite" not in line
    assert (victim / "mask2d.tif").is_file() and (victim / "notes.txt").is_file()


def test_overwrite_refuses_a_bundle_that_holds_an_input(bundle: Path, work: Path) -> None:
    tiff = next((bundle / "derived/segmentation_masks").glob("*.ome.tiff"))
    cli_refused(work, ["convert", "labels", str(tiff), "-o", str(bundle), "--protocol-doi", DOI,
                       "--mask-name", "cells", "--overwrite"], "holds the input")


@pytest.mark.parametrize("where", [".", "..", "PARENT"])
def test_overwrite_never_replaces_the_working_directory_or_a_parent(
    work: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # the working directory holds a bundle of ours: still never replaced
    inner = work / "a" / "b"
    write_segmentation_bundle(inner, {"cells": _labels()}, **KW)
    monkeypatch.chdir(inner / "derived" if where == "PARENT" else inner)
    target = Path("..") if where == "PARENT" else Path(where)
    if where == "..":
        monkeypatch.chdir(inner / "derived")
    refused(work, lambda: write_segmentation_bundle(
        target, {"cells": _labels()}, overwrite=True, **KW), UnsafeOverwriteError)


def test_overwrite_replaces_our_own_bundle_with_identical_bytes(bundle: Path, work: Path) -> None:
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    result = cli(["bundle", str(bundle), "--mask", "cells=m.npy", "--physical-size", "0.5",
                  "0.5", "--protocol-doi", DOI])
    assert result.exit_code == 2  # no m.npy, and it exists: refused first
    write_segmentation_bundle(bundle, {"cells": _labels()}, overwrite=True, **KW)
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in work.iterdir()] == ["b"]  # no stage or old copy left


def test_exists_message_names_the_cli_flag(bundle: Path, work: Path) -> None:
    np.save(work / "m.npy", _labels())
    line = cli_refused(work, ["bundle", str(bundle), "--mask", "cells=m.npy",
                              "--physical-size", "0.5", "0.5", "--protocol-doi", DOI])
    assert "--overwrite" in line and "overwrite=True" not in line


def _run_killed(script: str, cwd: Path) -> None:
    """Run ``script`` in a fresh interpreter that SIGKILLs itself at a hook."""
    code = textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=120, check=False)
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])


def test_kill_between_the_two_renames_is_recovered_by_the_next_run(bundle: Path,
                                                                   work: Path) -> None:
    """Without an atomic exchange the swap has two renames; a kill between them leaves
    the new bundle in its stage, and the next run moves it into place."""
    _run_killed(f"""
        import os, signal, numpy as np
        from maskbundle.io import staging
        from maskbundle.bundle.build import write_segmentation_bundle
        staging._exchange = lambda a, b: False
        staging._between_moves = lambda: os.kill(os.getpid(), signal.SIGKILL)
        m = np.zeros((24, 24), np.uint16); m[3:9, 3:9] = 7
        write_segmentation_bundle("b", {{"cells": m}}, physical_size=(0.5, 0.5),
                                  protocol_doi="{DOI}", overwrite=True)
    """, work)
    assert not bundle.exists()  # the window: the old bundle is inside the stage
    stages = [p for p in work.iterdir() if staging.is_stage_dir(p)]
    assert len(stages) == 1
    # the next run of any write into this folder finishes the swap
    write_segmentation_bundle(work / "other", {"cells": _labels()}, **KW)
    assert sorted(p.name for p in work.iterdir()) == ["b", "other"]
    assert validate_bundle(bundle).ok
    prov = json.loads((bundle / "derived/extras/provenance.json").read_text())
    assert prov["masks"]["cells"]["objects"] == 1  # the new bundle (one object) won


def test_swap_uses_an_atomic_exchange_where_available(bundle: Path, work: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if staging._RENAMEAT2 is None:
        pytest.skip("no renameat2 on this platform (the two-rename path is tested above)")
    seen = []
    monkeypatch.setattr(staging, "_between_moves", lambda: seen.append("window"))
    write_segmentation_bundle(bundle, {"cells": _labels()}, overwrite=True, **KW)
    assert seen == []  # no moment without a target
    assert validate_bundle(bundle).ok


def test_kill_between_adjacency_moves_keeps_provenance_and_is_finished(
    bundle: Path, work: Path
) -> None:
    _run_killed("""
        import os, signal
        from maskbundle.io import staging
        from maskbundle.bundle.adjacency import add_adjacency
        real = staging._move_into_place
        calls = []
        def move(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(*a, **k)
        staging._move_into_place = move
        add_adjacency("b", adjacency=("centroid", "linkage"), validate=False)
    """, work)
    prov_file = bundle / "derived/extras/provenance.json"
    assert json.loads(prov_file.read_text())  # never missing
    extras = bundle / "derived/extras"
    assert any(staging.is_stage_dir(p) for p in extras.iterdir())
    # next run: finish the moves, then the request sees the files that now exist
    refused_again = add_adjacency
    with pytest.raises(OutputExistsError):
        refused_again(bundle, adjacency="centroid", validate=False)
    assert not any(staging.is_stage_dir(p) for p in extras.iterdir())
    prov = json.loads(prov_file.read_text())
    assert set(prov["adjacency"]["cells"]) == {"centroid", "linkage"}
    seg = bundle / "derived/segmentation_masks"
    assert (seg / "cells-centroid-adjacency.csv").is_file()
    assert (seg / "cells-linkage-adjacency.csv").is_file()
    assert validate_bundle(bundle).ok


def test_kill_between_mesh_moves_keeps_provenance_and_is_finished(work: Path) -> None:
    labels = np.zeros((6, 16, 16), np.uint16)
    labels[1:4, 2:7, 2:7] = 1
    labels[2:5, 9:14, 8:13] = 2
    out = write_segmentation_bundle(work / "b", {"cells": labels, "nuclei": labels},
                                    physical_size=(0.5, 0.5, 1.0), protocol_doi=DOI)
    _run_killed("""
        import os, signal
        from maskbundle.io import staging
        from maskbundle.bundle.meshes import add_meshes
        real = staging._move_into_place
        calls = []
        def move(payload, target, *a, **k):
            if target.name.endswith("-mesh.glb") and target.parent.name == "segmentation_masks":
                calls.append(1)  # a move into the bundle (not write_glb's own inner stage)
                if len(calls) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            real(payload, target, *a, **k)
        staging._move_into_place = move
        add_meshes("b")
    """, work)
    prov_file = out / "derived/extras/provenance.json"
    assert "meshes" not in json.loads(prov_file.read_text())  # never missing, not yet updated
    from maskbundle.bundle.meshes import add_meshes

    with pytest.raises(OutputExistsError):  # the next run finishes the moves first
        add_meshes(out)
    prov = json.loads(prov_file.read_text())
    assert set(prov["meshes"]["masks"]) == {"cells", "nuclei"}
    assert not any(staging.is_stage_dir(p) for p in (out / "derived/extras").iterdir())
    assert validate_bundle(out).ok


def test_stale_stages_of_killed_runs_are_cleared_and_only_ours(work: Path) -> None:
    _run_killed(f"""
        import os, signal, numpy as np
        from maskbundle.bundle import build, write
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        write.write_label_ome_tiff = die
        m = np.zeros((24, 24), np.uint16); m[3:9, 3:9] = 7
        build.write_segmentation_bundle("b", {{"cells": m}}, physical_size=(0.5, 0.5),
                                        protocol_doi="{DOI}")
    """, work)
    stale = [p for p in work.iterdir() if staging.is_stage_dir(p)]
    assert len(stale) == 1 and not (work / "b").exists()
    # look-alikes that are not ours: no marker, or a live owner
    (work / ".b.staging-1-0123456789ab").mkdir()
    (work / ".b.staging-1-0123456789ab" / "keep.txt").write_text("mine")
    live = work / f".x.staging-{os.getpid()}-abcdefabcdef"
    live.mkdir()
    (live / "stage.json").write_text(json.dumps({
        "maskbundle_stage": 1, "pid": os.getpid(), "host": os.uname().nodename,
        "created": 1e12, "state": "writing", "targets": []}))
    write_segmentation_bundle(work / "b", {"cells": _labels()}, **KW)
    names = sorted(p.name for p in work.iterdir())
    assert names == sorted(["b", ".b.staging-1-0123456789ab", live.name])
    assert validate_bundle(work / "b").ok


@pytest.mark.parametrize("rel", ["../../evil.txt", "/tmp/evil.txt", "../evil.txt",
                                 "sub/../../evil.txt"])
def test_a_planted_stage_marker_cannot_move_files_elsewhere(work: Path, rel: str) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    inner = work / "a" / "b"
    stage = inner / f".x.staging-{int(dead.stdout)}-0123456789ab"
    (stage / "new" / "0").mkdir(parents=True)
    (stage / "new" / "0" / "evil.txt").write_text("payload")
    (stage / "stage.json").write_text(json.dumps({
        "maskbundle_stage": 1, "pid": int(dead.stdout), "host": os.uname().nodename,
        "created": 0, "state": "committing",
        "targets": [{"rel": rel, "payload": "new/0/evil.txt", "ino": None}]}))
    assert staging.clear_stale_stages(inner) == [stage]
    assert not stage.exists()
    assert [p for p in work.rglob("evil.txt")] == [] and not Path("/tmp/evil.txt").exists()


# == Wrong data accepted silently ===============================================================


@pytest.mark.parametrize(("dtype", "exact"), [
    (np.float16, 2048), (np.float32, 2**24), (np.float64, 2**53)])
def test_inexact_float_labels_are_refused_at_every_width(
    work: Path, dtype: Any, exact: int
) -> None:
    m = np.zeros((8, 8), dtype)
    m[0, 0], m[4, 4] = exact, exact + 1  # exact + 1 rounds to exact: one object
    assert np.unique(m[m > 0]).size == 1
    refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": m}, **KW), LabelError,
            "integer dtype")
    np.save(work / "f.npy", m)
    cli_refused(work, ["bundle", "o", "--mask", "cells=f.npy", "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI], "integer dtype")
    ok = np.zeros((8, 8), dtype)
    ok[0, 0], ok[4, 4] = exact - 2, exact - 1  # below the limit: two exact objects
    out = write_segmentation_bundle(work / "ok", {"cells": ok}, **KW)
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["masks"]["cells"]["objects"] == 2


@pytest.mark.parametrize("value", [
    "12", b"12", True, (True, 1.0), (0.5, "0.5"), 1e-320, (1e-320, 1e-320), float("nan"),
    (0.5, float("inf")), -1.0, 0, (0.5, 0.0), complex(1, 1), {"x": 0.5, "y": 0.5},
    (0.5, 0.5, 0.5, 0.5), [], None, np.array(["a", "b"]),
])
def test_physical_size_refuses_what_is_not_a_pixel_size(work: Path, value: Any) -> None:
    kw = {**KW, "physical_size": value}
    refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": _labels()}, **kw),
            OptionError)


@pytest.mark.parametrize(("value", "warns"), [
    (500.0, True), (0.0005, True), ((0.5, 0.5), False), (np.float32(0.65), False),
    (np.array([0.5, 0.5]), False), ((0.3, 200.0), True),
])
def test_physical_size_outside_the_plausible_range_warns(
    work: Path, value: Any, warns: bool
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_segmentation_bundle(work / "o", {"cells": _labels()},
                                        physical_size=value, protocol_doi=DOI)
    got = [w for w in caught if issubclass(w.category, PlausibilityWarning)]
    assert bool(got) == warns
    if warns:
        assert "0.01-100 um" in str(got[0].message)
    assert validate_bundle(out).ok


def _spec(name: str, typ: str) -> ColumnSpec:
    return ColumnSpec(name, typ, "morphology", f"test column {name}")  # type: ignore[arg-type]


@pytest.mark.parametrize(("typ", "values", "fmt"), [
    ("integer", [1, 1.5, 2], "tsv"),
    ("integer", [1, "x", 2], "tsv"),
    ("integer", [True, False, True], "tsv"),
    ("boolean", ["yes", "maybe", "no"], "tsv"),
    ("integer", [1, 2**53 + 1, 3], "xlsx"),
    ("integer", [1, 10**15 + 1, 3], "xlsx"),
    ("text", ["a", {"k": 1}, "c"], "tsv"),
    ("text", ["a", ["list"], "c"], "xlsx"),
    ("float", [0.5, "high", 0.1], "tsv"),
])
def test_column_values_must_match_their_spec(work: Path, typ: str, values: list[Any],
                                             fmt: str) -> None:
    frame = pd.DataFrame({"extra": values}, index=[1, 2, 3], dtype=object)
    extra = {"cells": (frame, {"extra": _spec("extra", typ)})}
    refused(work, lambda: write_segmentation_bundle(
        work / "o", {"cells": _labels()}, extra_columns=extra, objects_format=fmt,  # type: ignore[arg-type]
        **KW), TableFormatError)


def test_integer_feature_of_a_mask_is_not_truncated(work: Path) -> None:
    from maskbundle.model import Mask

    feats = pd.DataFrame({"n": [1.0, 1.5, 2.0]}, index=[1, 2, 3])
    mask = Mask(labels=_labels(), features=feats, feature_specs={"n": _spec("n", "integer")})
    refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": mask}, **KW),
            TableFormatError, "1.5")


def test_integers_beyond_2_53_are_fine_in_tsv(work: Path) -> None:
    frame = pd.DataFrame({"big": np.array([1, 2**53 + 1, 3], np.int64)}, index=[1, 2, 3])
    out = write_segmentation_bundle(work / "o", {"cells": _labels()},
                                    extra_columns={"cells": (frame, {"big": _spec("big",
                                                                                   "integer")})},
                                    **KW)
    text = (out / "derived/segmentation_masks/cells-objects.tsv").read_text()
    assert str(2**53 + 1) in text


@pytest.mark.parametrize("flag", ["--mask", "--mask-id"])
def test_cli_refuses_a_repeated_name(work: Path, flag: str) -> None:
    np.save(work / "a.npy", _labels())
    np.save(work / "b.npy", _labels())
    pairs = (["--mask", "cells=a.npy", "--mask", "cells=b.npy"] if flag == "--mask" else
             ["--mask", "cells=a.npy", "--mask-id", "cells=CL:0000000",
              "--mask-id", "cells=CL:0000236"])
    cli_refused(work, ["bundle", "o", *pairs, "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI], "given twice")


def _square(x0: float, y0: float, size: float) -> list[list[list[float]]]:
    return [[[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]]


def _geojson(path: Path, objects: list[tuple[str, float, float]]) -> Path:
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": _square(x, y, 6)},
              "properties": {"objectType": kind}} for kind, x, y in objects]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def test_qupath_shape_smaller_than_the_objects_is_refused_unless_clip(work: Path) -> None:
    gj = _geojson(work / "q.geojson", [("detection", 2, 2), ("detection", 36, 36),
                                       ("detection", 50, 50)])
    refused(work, lambda: read_qupath(gj, shape=(40, 40)), EmptyResultError, "2 object")
    line = cli_refused(work, ["convert", "qupath", "q.geojson", "-o", "o", "--shape", "40", "40",
                              "--physical-size", "0.5", "0.5", "--protocol-doi", DOI],
                       "--clip")
    assert "clip=True" not in line
    result = cli(["convert", "qupath", "q.geojson", "-o", "o", "--shape", "40", "40", "--clip",
                  "--physical-size", "0.5", "0.5", "--protocol-doi", DOI])
    assert result.exit_code == 0, result.output
    # what was dropped is said: 3 read, the one at (50, 50) has no pixel, 2 reached beyond
    assert "3 object(s) read, 1 dropped" in result.output
    assert "2 reaching beyond" in result.output


@pytest.mark.parametrize("content", [
    [],
    {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": _square(2, 2, 6)},
         "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}}}]},
])
def test_qupath_without_objects_is_refused_unless_allow_empty(work: Path, content: Any) -> None:
    (work / "e.geojson").write_text(json.dumps(content))
    refused(work, lambda: read_qupath(work / "e.geojson", shape=(20, 20)), EmptyResultError)
    cli_refused(work, ["convert", "qupath", "e.geojson", "-o", "o", "--shape", "20", "20",
                       "--physical-size", "0.5", "0.5", "--protocol-doi", DOI], "--allow-empty")
    seg = read_qupath(work / "e.geojson", shape=(20, 20), allow_empty=True)
    assert all(not m.labels.any() for m in seg.masks.values())


# == Formula and control characters =============================================================

PAYLOADS = [
    '=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3+cmd", " =1+1",
    "\t=1+1", "|cmd", "a\rb", "a\x00b", "a\x1bb", "a\nb", "ok\x7f",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_one_rule_refuses_every_payload(payload: str) -> None:
    assert text_cell_problem(payload) is not None


@pytest.mark.parametrize("fine", ["-2", "+1.5", "-1e3", "cell type A", "a-b", "e-mail@x.org",
                                  ".5", ""])
def test_the_one_rule_lets_numbers_and_text_pass(fine: str) -> None:
    assert text_cell_problem(fine) is None


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("fmt", ["tsv", "xlsx"])
def test_text_columns_refuse_payloads(work: Path, payload: str, fmt: str) -> None:
    frame = pd.DataFrame({"note": ["a", payload, "c"]}, index=[1, 2, 3])
    extra = {"cells": (frame, {"note": _spec("note", "text")})}
    refused(work, lambda: write_segmentation_bundle(
        work / "o", {"cells": _labels()}, extra_columns=extra, objects_format=fmt,  # type: ignore[arg-type]
        **KW), TableFormatError)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ["first_name", "affiliation", "display_name", "email"])
def test_contributor_fields_refuse_payloads(work: Path, payload: str, field: str) -> None:
    rec = {"first_name": "Ada", "last_name": "Lovelace", "affiliation": "Lab", field: payload}
    refused(work, lambda: write_segmentation_bundle(
        work / "o", {"cells": _labels()}, contributors=[rec], **KW), OptionError, field)


def test_contributors_tsv_from_the_cli_refuses_payloads(work: Path) -> None:
    np.save(work / "m.npy", _labels())
    (work / "c.tsv").write_text("first_name\tlast_name\taffiliation\n"
                                "=HYPERLINK(\"x\")\tLovelace\tLab\n")
    cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI, "--contributors", "c.tsv"], "first_name")


@pytest.mark.parametrize("payload", PAYLOADS[:8])
@pytest.mark.parametrize("field", ["lab_id", "program_url"])
def test_upload_metadata_refuses_payloads(bundle: Path, work: Path, payload: str,
                                          field: str) -> None:
    kw = {"parent_dataset_id": "HBM386.ZGKG.235", field: payload}
    refused(work, lambda: write_upload_metadata(work / "metadata.tsv", [bundle], **kw),
            OptionError, field)
    flag = "--" + field.replace("_", "-")
    cli_refused(work, ["metadata", "metadata.tsv", str(bundle), "--parent-dataset-id",
                       "HBM386.ZGKG.235", f"{flag}={payload}"], field)


def test_validator_fails_formula_cells_in_an_xlsx(work: Path) -> None:
    from openpyxl import load_workbook

    out = write_segmentation_bundle(work / "o", {"cells": _labels()}, objects_format="xlsx", **KW)
    table = out / "derived/segmentation_masks/cells-objects.xlsx"
    assert validate_bundle(out).ok
    wb = load_workbook(table)
    ws = wb["MAIN"]
    names = [c.value for c in ws[10]]
    ws.cell(row=11, column=names.index("Solidity") + 1, value='=WEBSERVICE("http://x")')
    wb.save(table)
    report = validate_bundle(out)
    assert not report.ok
    assert any(f.code == "objects.formula" and "WEBSERVICE" in f.message for f in report.errors)
    # a formula in a header cell too
    wb = load_workbook(table)
    wb["MAIN"].cell(row=4, column=names.index("Solidity") + 1, value="=1+1")
    wb.save(table)
    assert any(f.code == "objects.header-formula" for f in validate_bundle(out).errors)


def test_validator_fails_unsafe_contributor_cells(bundle: Path) -> None:
    path = bundle / "extras/contributors.tsv"
    assert validate_bundle(bundle).ok
    header = path.read_text().splitlines()[0]
    path.write_text(header + "\n" + "\t".join(["=HYPERLINK(1)", "L", "", "A L", "Lab", "", "",
                                                "Yes", "No", "No", "x"]) + "\n")
    report = validate_bundle(bundle)
    assert any(f.code == "extras.contributors-cells" and "HYPERLINK" in f.message
               for f in report.errors)


# == Plain failures that should read as one line ================================================


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES])
def test_file_system_refusals_are_one_line(work: Path, monkeypatch: pytest.MonkeyPatch,
                                           code: int) -> None:
    from maskbundle.bundle import write

    def full(*_a: Any, **_k: Any) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(write, "write_json", full)
    refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": _labels()}, **KW),
            OutputWriteError, "nothing was written")
    np.save(work / "m.npy", _labels())
    cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI], "cannot write")


def test_read_only_folder_is_one_line(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ro(self: Any, *a: Any, **k: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(staging.Stage, "__init__", ro)
    refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": _labels()}, **KW),
            OutputWriteError, "read-only")


@pytest.mark.parametrize("where", ["target", "name", "mask"])
def test_names_over_255_bytes_are_one_line(work: Path, where: str) -> None:
    long = "x" * 250
    if where == "target":
        refused(work, lambda: write_segmentation_bundle(work / (long + "yyyyyy"),
                                                        {"cells": _labels()}, **KW),
                OutputWriteError, "255")
    elif where == "name":
        refused(work, lambda: write_segmentation_bundle(
            work / "o", {"cells": _labels()}, stem=long, **KW), OutputWriteError, "255")
    else:
        # mask names are bounded (64 characters) before any file name is made from them
        kw = {**KW, "mask_ids": {long: "CL:0000000"}}
        refused(work, lambda: write_segmentation_bundle(
            work / "o", {long: _labels()}, **kw), MaskNameError, "64 characters")
        np.save(work / "m.npy", _labels())
        cli_refused(work, ["bundle", "o", "--mask", f"{long}=m.npy", "--mask-id",
                           f"{long}=CL:0000000", "--physical-size", "0.5", "0.5",
                           "--protocol-doi", DOI], "64 characters")


def test_validate_json_to_an_unwritable_place_is_one_line(bundle: Path, work: Path) -> None:
    (work / "afile").write_text("x")
    result = cli(["validate", str(bundle), "--json", "afile/report.json"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot write" in result.stderr
    result = cli(["validate", str(bundle), "--json", str(bundle)])
    assert result.exit_code == 2 and bundle.is_dir()


def test_non_utf8_contributors_is_one_line(work: Path) -> None:
    np.save(work / "m.npy", _labels())
    (work / "c.tsv").write_bytes(b"first_name\tlast_name\taffiliation\nJos\xe9\tX\tLab\n")
    cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI, "--contributors", "c.tsv"], "UTF-8")


BAD_OPTIONS: list[dict[str, Any]] = [
    {"physical_size": "0.5"},
    {"physical_size": complex(0.5, 0)},
    {"physical_size": {"x": 0.5}},
    {"annotation_tool": 5},
    {"annotation_tool": "Photoshop"},
    {"object_types": {"abc": "CL:0000000"}},
    {"object_types": {"cells": 5}},
    {"object_types": "CL:0000000"},
    {"mask_ids": ["CL:0000000"]},
    {"mask_ids": {"cells": 5}},
    {"adjacency": "centroid", "adjacency_options": {"contact": "yes"}},
    {"adjacency": "linkage", "adjacency_options": {"contact": "yes"}},
    {"adjacency": "centroid", "adjacency_options": {"k": 2.5, "method": "knn"}},
    {"adjacency": "centroid", "adjacency_options": {"max_distance": "far"}},
    {"adjacency": 5},
    {"features": 5},
    {"meshes": "yes"},
    {"overwrite": "no"},
    {"contributors": "Ada Lovelace"},
    {"contributors": [["Ada"]]},
    {"marker_names": "DAPI"},
    {"stem": 5},
    {"objects_format": ["tsv"]},
    {"compression": None},
    {"intensity_image": 5},
    {"extra_columns": {"cells": "x"}},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda d: "-".join(f"{k}={v!r}"[:30]
                                                                      for k, v in d.items()))
def test_wrong_option_types_get_one_message(work: Path, bad: dict[str, Any]) -> None:
    kw = {**KW, **bad}
    err = refused(work, lambda: write_segmentation_bundle(work / "o", {"cells": _labels()}, **kw),
                  OptionError)
    assert "\n" not in str(err)


@pytest.mark.parametrize("masks", [
    {"cells": [[1, 2], [3]]},  # ragged
    {"cells": np.array([["a", "b"], ["c", "d"]])},
    {"cells": np.zeros((4, 4), dtype=object)},
])
def test_wrong_arrays_get_one_message(work: Path, masks: dict[str, Any]) -> None:
    refused(work, lambda: write_segmentation_bundle(work / "o", masks, **KW), LabelError)


def test_big_endian_and_numpy_scalars_are_accepted_correctly(work: Path) -> None:
    m = _labels().astype(">u4")
    m[m == 3] = 70000  # a value whose bytes differ by order
    out = write_segmentation_bundle(work / "o", {"cells": m}, physical_size=np.float64(0.5),
                                    protocol_doi=DOI)
    from maskbundle.io.ometiff import read_label_ome_tiff

    img = read_label_ome_tiff(next((out / "derived/segmentation_masks").glob("*.tiff")))
    native = m.astype(np.uint32)
    # relabelled ascending: 1, 2, 70000 -> 1, 2, 3
    expect = np.searchsorted(np.unique(native), native)
    assert np.array_equal(img.labels[0, 0], expect)


def test_cli_errors_speak_cli_flags(work: Path) -> None:
    np.save(work / "m.npy", _labels())
    line = cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--protocol-doi", DOI])
    assert "--physical-size X Y" in line and "physical_size=" not in line
    np.save(work / "r.npy", _labels())
    line = cli_refused(work, ["bundle", "o", "--mask", "regions=r.npy", "--physical-size", "0.5",
                              "0.5", "--protocol-doi", DOI])
    assert "--mask-id regions=" in line and "mask_ids=" not in line
    np.save(work / "z.npy", _labels((3, 24, 24)))
    line = cli_refused(work, ["bundle", "o", "--mask", "cells=z.npy", "--physical-size", "0.5",
                              "0.5", "--protocol-doi", DOI])
    assert "--physical-size X Y Z" in line


@pytest.mark.parametrize("args", [
    ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "abc", "--protocol-doi", DOI],
    ["bundle", "o", "--protocol-doi", DOI],
    ["convert", "qupath", "q.geojson", "-o", "o", "--shape", "1"],
    ["convert", "nosuch"],
    ["bundle", "o", "--mask", "cells=m.npy", "--objects-format", "csv", "--protocol-doi", DOI],
])
def test_cli_usage_errors_are_one_line(work: Path, args: list[str]) -> None:
    np.save(work / "m.npy", _labels())
    (work / "q.geojson").write_text("[]")
    cli_refused(work, args, "(see --help)")


def test_validate_missing_path_says_it_does_not_exist(work: Path) -> None:
    result = cli(["validate", "nowhere"])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_intensity_problems_say_intensity_image(work: Path) -> None:
    np.save(work / "m.npy", _labels())
    tifffile.imwrite(work / "i.tif", np.zeros((2, 3, 24, 24, 3), np.uint8), photometric="rgb")
    line = cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5",
                              "0.5", "--protocol-doi", DOI, "--intensity", "i.tif"])
    assert "intensity image" in line and "label image" not in line


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_a_zyx_intensity_file_works_from_the_cli(work: Path, suffix: str) -> None:
    labels = _labels((3, 24, 24))
    intensity = np.arange(3 * 24 * 24, dtype=np.float32).reshape(3, 24, 24)
    if suffix == ".tif":
        tifffile.imwrite(work / "i.tif", intensity, photometric="minisblack")
    else:
        np.save(work / "i.npy", intensity)
    np.save(work / "m.npy", labels)
    result = cli(["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5", "0.5", "2",
                  "--protocol-doi", DOI, "--intensity", f"i{suffix}", "--marker", "dna"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(work / "o/derived/segmentation_masks/cells-objects.tsv", sep="\t",
                        skiprows=9)
    col = next(c for c in table.columns if "dna" in c.lower() and "mean" in c.lower())
    for obj in (1, 2, 3):  # brute force over the voxels of each object
        want = intensity[labels == obj].mean()
        assert table.loc[table["Object ID"] == obj, col].item() == pytest.approx(want, rel=1e-6)


# == Also ======================================================================================


def test_reprs_are_short(bundle: Path) -> None:
    report = Report("x")
    for i in range(2000):
        report.add(f"loc{i}", "code", "message " * 10)
    assert len(repr(report)) < 200 and "2000" in repr(report)
    result = add_adjacency(bundle, adjacency=("centroid", "linkage"), validate=True)
    assert len(repr(result)) < 300


def test_contributors_schema_id_is_never_rewritten_silently(work: Path) -> None:
    np.save(work / "m.npy", _labels())
    (work / "c.tsv").write_text("first_name\tlast_name\taffiliation\tmetadata_schema_id\n"
                                "Ada\tLovelace\tLab\t00000000-0000-0000-0000-000000000000\n")
    cli_refused(work, ["bundle", "o", "--mask", "cells=m.npy", "--physical-size", "0.5", "0.5",
                       "--protocol-doi", DOI, "--contributors", "c.tsv"], "metadata_schema_id")


def test_provenance_is_the_same_when_inputs_move(work: Path) -> None:
    for d in ("one", "two/deeper"):
        (work / d).mkdir(parents=True)
        tifffile.imwrite(work / d / "cells.tif", _labels())
        tifffile.imwrite(work / d / "marker.tif", np.ones((24, 24), np.uint16))
    outs = []
    for i, d in enumerate(("one", "two/deeper")):
        out = work / f"out{i}"
        result = cli(["bundle", str(out), "--mask", f"cells={d}/cells.tif", "--physical-size",
                      "0.5", "0.5", "--protocol-doi", DOI, "--intensity", f"{d}/marker.tif",
                      "--name", "same"])
        assert result.exit_code == 0, result.output
        outs.append(out)
    a, b = ((o / "derived/extras/provenance.json").read_bytes() for o in outs)
    assert a == b
    assert str(work) not in a.decode()
    prov = json.loads(a)
    want = hashlib.sha256((work / "one" / "marker.tif").read_bytes()).hexdigest()
    assert prov["features"]["intensity_image_sha256"] == want
    want = hashlib.sha256((work / "one" / "cells.tif").read_bytes()).hexdigest()
    assert prov["masks"]["cells"]["source"]["sha256"] == want
    assert prov["masks"]["cells"]["source"]["file"] == "cells.tif"
    shutil.rmtree(outs[1])
