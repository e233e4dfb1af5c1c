"""Tables at 80 and 200 columns: every id, account and date whole, columns dropped in
order, blocks when nothing else fits, nothing read as markup."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from awsops.decommission.model import (
    Decision,
    InstanceFacts,
    Plan,
    PlanCriteria,
    SkipReason,
    TargetPlan,
    Volume,
)
from awsops.decommission.outcomes import ApplyPreview, InstanceResult
from awsops.decommission.render import (
    REPORT_COLUMNS,
    REPORT_DROP_ORDER,
    render_preview,
    render_review,
    result_row,
)
from awsops.decommission.review import review
from awsops.output import RecordWriter
from awsops.tables import Column, _drawn, _table, render_table
from awsops.text import printable

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 1, tzinfo=UTC)
ACCOUNTS = ("123456789012", "210987654321")


def _id(prefix: str, n: int, length: int = 17) -> str:
    return f"{prefix}-{n:0{length}x}"


def _facts(n: int, name: str) -> InstanceFacts:
    return InstanceFacts(
        instance_id=_id("i", n),
        state="stopped",
        stop_time=NOW - dt.timedelta(days=40 + n),
        stop_source="state-transition-reason",
        launch_time=None,
        tags={"Name": name},
        volumes=(
            Volume(_id("vol", n), "/dev/xvda", True, 8 + n, "gp3"),
            Volume(_id("vol", 100 + n), "/dev/sdf", True, 500, "io2"),
            Volume(_id("vol", 200 + n), "/dev/sdg", False, 50, "gp2"),
        ),
        instance_type="m7i.48xlarge",
        termination_protection=False,
    )


def _plan() -> Plan:
    targets = []
    for a, account in enumerate(ACCOUNTS):
        chosen = tuple(
            _facts(10 * a + i, f"payments-batch-worker-{i} [bold]x[/bold]") for i in range(3)
        )
        kept = (
            Decision(
                _facts(10 * a + 5, "db-primary-do-not-touch"),
                False,
                SkipReason.PROTECT_TAG,
                "tag DoNotDelete",
            ),
        )
        targets.append(
            TargetPlan(
                account, "ap-southeast-2", name="prod", examined=4, chosen=chosen, skipped=kept
            )
        )
    return Plan(
        plan_id="plan-20261101T000000Z-0123abcd",
        created_at=NOW,
        expires_at=NOW + dt.timedelta(hours=24),
        criteria=PlanCriteria(older_than_days=30, protect_tags=("DoNotDelete",)),
        targets=tuple(targets),
    )


def _ids(plan: Plan) -> list[str]:
    out = list(ACCOUNTS)
    for tp in plan.targets:
        for f in tp.chosen:
            out += [f.instance_id, *(v.volume_id for v in f.deletable_volumes)]
            out.append(f.stop_time.strftime("%Y-%m-%d") if f.stop_time else "")
        out += [d.facts.instance_id for d in tp.skipped]
    return out


def _console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, color_system=None), buf


@pytest.mark.parametrize("width", [80, 200])
def test_plan_review_keeps_every_id_whole(width: int) -> None:
    plan = _plan()
    console, buf = _console(width)
    render_review(review(plan), console)
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    for token in _ids(plan):
        assert token in text, (token, width)
    if width == 80:
        assert "left out to fit 80 columns" in text and "source" in text
    else:
        assert "left out" not in text and "state-transition-reason" in text
        assert "[bold]x[/bold]" in text  # shown as written, never read as markup


@pytest.mark.parametrize("width", [80, 200])
def test_confirmation_keeps_every_id_whole(width: int) -> None:
    plan = _plan()
    preview = ApplyPreview(
        plan.plan_id,
        plan.chosen,
        [
            InstanceResult(
                ACCOUNTS[0],
                "ap-southeast-2",
                _id("i", 9),
                "x",
                "skipped",
                "drift: tags changed: team",
            )
        ],
        snapshots=12,
        already_done=0,
    )
    console, buf = _console(width)
    render_preview(preview, "the local sandbox", console)
    text = buf.getvalue()
    for _, f in plan.chosen:
        assert f.instance_id in text
    assert _id("i", 9) in text and "drift: tags changed" in text
    summary = " ".join(text.split())
    assert "6 to terminate in 123456789012, 210987654321 (the local sandbox)" in summary
    assert "12 volume(s) backed up first, 1 skipped (drift 1)" in summary


@pytest.mark.parametrize("width", [80, 200])
def test_apply_report_keeps_snapshot_ids_whole(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(buf, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", str(width))
    results = [
        InstanceResult(
            ACCOUNTS[0],
            "ap-southeast-2",
            _id("i", n),
            f"payments-batch-worker-{n}",
            "terminated",
            "",
            None,
            {_id("vol", n): _id("snap", n), _id("vol", 50 + n): _id("snap", 50 + n)},
        )
        for n in range(4)
    ]
    with RecordWriter("table", buf, REPORT_COLUMNS, drop_order=REPORT_DROP_ORDER) as w:
        for r in results:
            row = result_row(r)
            row["snapshots"] = ", ".join(
                f"{s['snapshot_id']} ({s['volume_id']})" for s in row["snapshots"]
            )
            w.write(row)
    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())
    assert "terminated" in text  # the outcome is never left out
    for r in results:
        assert r.instance_id in text
        for v, s in r.snapshots.items():
            assert s in text and v in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_columns_drop_in_order_then_blocks() -> None:
    cols = (
        Column("instance", key=True),
        Column("note", drop=1),
        Column("region", key=True, drop=2),
    )
    rows = [(_id("i", 1), "a-long-note-that-cannot-wrap-at-all", "ap-southeast-2")]
    console, buf = _console(60)
    render_table(console, cols, rows)
    assert "note" in buf.getvalue().split("left out")[1]  # note went first
    assert "ap-southeast-2" in buf.getvalue()
    console, buf = _console(22)  # the id alone needs 23
    render_table(console, cols, rows, title="t")
    lines = buf.getvalue().splitlines()
    assert any(re.fullmatch(r"\s*instance: " + _id("i", 1), ln) for ln in lines), lines


_WORDS = st.text(alphabet=st.sampled_from([*"abcxyz-0129 ", "é", "漢", "字", "ﾊ"]), max_size=24)


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(st.text(alphabet="abc _", max_size=10), min_size=1, max_size=5),
    rows=st.lists(st.lists(_WORDS, min_size=5, max_size=5), max_size=6),
    title=st.one_of(st.none(), st.text(alphabet="abc ", max_size=30)),
    width=st.sampled_from([60, 120, 200]),
)
def test_a_table_that_fits_is_drawn_as_rich_would_measure_it(
    names: list[str], rows: list[list[str]], title: str | None, width: int
) -> None:
    """When every value fits on one line, the columns get their natural widths given
    outright (rich does not measure every cell again): the drawing must be the one rich
    makes when it measures them itself."""
    columns = [Column(n, key=i == 0) for i, n in enumerate(names)]
    texts = [[printable(v) for v in row[: len(columns)]] for row in rows]
    natural = {
        c.name: max([1, cell_len(c.name), *(cell_len(r[i]) for r in texts)])
        for i, c in enumerate(columns)
    }
    assume(len({c.name for c in columns}) == len(columns))
    assume(sum(w + 3 for w in natural.values()) + 1 <= width)
    minimum = {c.name: 1 for c in columns}

    def draw(table: Any) -> str:
        out = io.StringIO()
        Console(file=out, width=width).print(table)
        return out.getvalue()

    fast = draw(_table(columns, texts, title, natural, exact=True))
    assert fast == draw(_table(columns, texts, title, minimum))
    out = io.StringIO()
    render_table(Console(file=out, width=width), columns, texts, title)
    assert out.getvalue() == fast  # drawn without rich's Table where the title allows
    drawn = _drawn(Console(file=io.StringIO(), width=width), columns, texts, title, natural)
    table_width = sum(w + 3 for w in natural.values()) + 1
    if title is None or (title == title.strip() != "" and len(title) <= table_width):
        assert drawn is not None  # the fast drawing was the one compared above


def test_the_drawn_table_keeps_rich_styles_and_leaves_ascii_consoles_to_rich() -> None:
    """On a colour terminal the directly drawn table shows the header bold and the title
    in the theme's title style, as rich does; a console that can only write ASCII gets
    rich's own table, whose box rich replaces with ASCII characters."""
    cols = [Column("instance", key=True), Column("name")]
    rows = [[_id("i", 1), "web 1"]]
    ansi = re.compile(r"\x1b\[[0-9;]*m")

    def draw(console: Console, table: Any) -> None:
        console.print(table)

    mine, theirs = io.StringIO(), io.StringIO()
    render_table(Console(file=mine, width=80, force_terminal=True), cols, rows, title="kept")
    natural = {"instance": 19, "name": 5}
    draw(Console(file=theirs, width=80, force_terminal=True), _table(cols, rows, "kept", natural))
    assert ansi.sub("", mine.getvalue()) == ansi.sub("", theirs.getvalue())
    assert "\x1b[1m instance" in mine.getvalue() and "\x1b[3mkept" in mine.getvalue()
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii")
    render_table(Console(file=ascii_out, width=80), cols, rows, title="kept")
    ascii_out.flush()
    assert raw.getvalue().decode("ascii").splitlines()[1].startswith("+")
