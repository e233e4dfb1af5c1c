"""``decommission show`` and ``decommission report`` in every format, at 80 and 200
columns, and the HTML opened in headless Chromium (not blank, every id in the DOM)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import invoke, run_cli

from awsops.sandbox.seed import seed_demo

REGIONS = "us-east-1,eu-west-1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def applied(
    aws: Any, sandbox_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """A plan of the demo fleet in two regions, applied."""
    seed_demo(
        aws.session(), aws.settings, aws.server_url, REGIONS.split(","), 16, with_buckets=False
    )
    path = tmp_path / "plan.json"
    made = invoke(
        [
            "--sandbox",
            "decommission",
            "plan",
            "--older-than",
            "30d",
            "--regions",
            REGIONS,
            "-o",
            str(path),
            "--output",
            "json",
        ],
        capsys,
    )
    assert made.code == 0, made.stderr
    raw = json.loads(path.read_text())
    return {"path": path, "raw": raw}


def _ids(raw: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for t in raw["targets"]:
        for f in t["terminate"]:
            out.add(f["instance_id"])
            out.update(v["volume_id"] for v in f["volumes"] if v["delete_on_termination"])
        out.update(s["instance_id"] for s in t["skip"])
    return out


@pytest.mark.parametrize("width", ["80", "200"])
def test_show_table_keeps_every_id_whole(applied: dict[str, Any], width: str) -> None:
    r = run_cli(["decommission", "show", str(applied["path"])], env={"COLUMNS": width})
    assert r.code == 0, r.stderr
    for token in _ids(applied["raw"]):
        assert token in r.stdout, (token, width)
    assert max(len(line) for line in r.stdout.splitlines()) <= int(width)
    for t in applied["raw"]["targets"]:
        assert f"{t['region']}: terminate {len(t['terminate'])}, keep {len(t['skip'])}" in r.stdout


def test_show_markdown_and_json(
    applied: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    md = invoke(["decommission", "show", str(applied["path"]), "--output", "markdown"], capsys)
    assert md.code == 0, md.stderr
    assert md.stdout.startswith(f"# Decommission plan {applied['raw']['plan_id']}")
    table_rows = [ln for ln in md.stdout.splitlines() if ln.startswith("| i-")]
    raw = applied["raw"]
    planned = sum(len(t["terminate"]) + len(t["skip"]) for t in raw["targets"])
    assert len(table_rows) == planned
    for token in _ids(raw):
        assert token in md.stdout
    js = invoke(["decommission", "show", str(applied["path"]), "--output", "json"], capsys)
    data = json.loads(js.stdout)
    assert data["totals"]["terminate"] == sum(len(t["terminate"]) for t in raw["targets"])
    kept = {r["instance_id"]: r["reason"] for t in data["targets"] for r in t["keep"]}
    assert kept == {s["instance_id"]: s["skip_reason"] for t in raw["targets"] for s in t["skip"]}


def _png_pixels(png: bytes) -> tuple[int, list[bytes]]:
    """(bytes per pixel, unfiltered rows) of an 8-bit PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", data[:8])
            assert data[8] == 8, "8-bit samples only"
            bpp = {0: 1, 2: 3, 4: 2, 6: 4}[data[9]]
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * bpp, []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return bpp, rows


def _png_is_blank(png: bytes) -> bool:
    """True if every pixel of the PNG has one colour."""
    bpp, rows = _png_pixels(png)
    colours = {row[x : x + bpp] for row in rows[::7] for x in range(0, len(row), bpp * 5)}
    return len(colours) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)")
def test_show_html_renders_in_a_browser_with_every_id(
    applied: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = invoke(["decommission", "show", str(applied["path"]), "--output", "html"], capsys)
    assert page.code == 0, page.stderr
    html = page.stdout
    assert "<script" not in html and "http://" not in html and "https://" not in html
    path = tmp_path / "plan.html"
    path.write_text(html)
    flags = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run(
        [*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, env=env
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for token in _ids(applied["raw"]):
        assert token in dom.stdout, token
    shot = tmp_path / "plan.png"
    done = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,900", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert not _png_is_blank(shot.read_bytes())


def test_report_after_apply_in_every_format(
    applied: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path, raw = applied["path"], applied["raw"]
    before = invoke(["decommission", "report", str(path), "--output", "json"], capsys)
    assert {i["outcome"] for i in json.loads(before.stdout)["instances"]} == {"not-started"}
    done = invoke(
        [
            "--sandbox",
            "decommission",
            "apply",
            str(path),
            "--yes",
            "--snapshot-delay",
            "0",
            "--terminate-delay",
            "0",
            "--output",
            "json",
        ],
        capsys,
    )
    assert done.code == 0, done.stderr
    applied_rows = {r["instance_id"]: r for r in json.loads(done.stdout)}
    rep = json.loads(
        invoke(["decommission", "report", str(path), "--output", "json"], capsys).stdout
    )
    assert rep["runs"] == 1
    for inst in rep["instances"]:
        assert inst["outcome"] == "terminated" and inst["at"]
        assert inst["snapshots"] == [
            {**s, "state": "completed"} for s in applied_rows[inst["instance_id"]]["snapshots"]
        ]
    chosen = {f["instance_id"] for t in raw["targets"] for f in t["terminate"]}
    assert {i["instance_id"] for i in rep["instances"]} == chosen
    for fmt in ("table", "markdown", "html"):
        out = run_cli(["decommission", "report", str(path), "--output", fmt], env={"COLUMNS": "80"})
        assert out.code == 0, out.stderr
        for iid in chosen:
            assert iid in out.stdout, (fmt, iid)
        for s in (s for i in rep["instances"] for s in i["snapshots"]):
            assert s["snapshot_id"] in out.stdout, (fmt, s)
