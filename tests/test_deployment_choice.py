"""`wslab compare` on runs built by hand: the table's rows and statuses, measured limits beside
the configured ones, plain traffic as `wslab run` judged it, each fix once, and a recommendation
that follows the measurements.

The topologies are the real compared ones (their parameters and facts, as a run records them);
the cells are built to say what the real-proxy runs observe, then changed one figure at a time.
"""

from __future__ import annotations

import re

import pytest
from builders import run_of
from markdown_it import MarkdownIt
from rich.console import Console
from rich.markdown import Markdown

from wslab.backends import Deployment
from wslab.deployment_choice import (
    COMPARED,
    LONG_LIVED,
    REQUEST_RESPONSE,
    Comparison,
    Option,
    compare,
    recommend,
)
from wslab.records import (
    Cell,
    ClientKind,
    Connection,
    DeploymentStatus,
    Diagnosis,
    Hold,
    Outcome,
    Run,
    ScenarioRecord,
    ServerError,
    Step,
    Transcript,
)
from wslab.reports.deployment_choice import render_markdown
from wslab.topology import load_topologies

pytestmark = pytest.mark.fast

PLAIN_FIX = "Answer requests that do not ask for a WebSocket in process_request."
STATIC_FIX = "Static deployments run no server process."
SCENARIOS = [
    ScenarioRecord(id="websockets-echo", suite="handshake"),
    ScenarioRecord(id="browser-tab-get", suite="platform-traffic"),
    ScenarioRecord(id="deploy-health-check", suite="platform-traffic"),
    ScenarioRecord(id="head-root", suite="platform-traffic", tier="informational"),
    ScenarioRecord(id="idle-without-pings", suite="timeouts", tier="informational"),
    ScenarioRecord(id="lifetime-with-pings", suite="timeouts"),
]
HOLDS = {"idle-without-pings": (150.0, None), "lifetime-with-pings": (400.0, 20)}


def cell(
    topology: str,
    scenario: str,
    outcome: Outcome,
    summary: str,
    error: str | None = None,
    rule: str = "",
    fix: str = "",
    hold: Transcript | None = None,
) -> Cell:
    suite = next(s.suite for s in SCENARIOS if s.id == scenario)
    server = []
    if error:
        server = [
            Connection(
                listener=topology,
                conn=1,
                cell="c1",
                opened_at=1.0,
                at=1.0,
                peer=None,
                bytes_received=100,
                raw_head="",
                request=None,
                response=None,
                upgraded=False,
                error=ServerError(type="InvalidUpgrade", text=error),
            )
        ]
    diagnosis = Diagnosis(rule=rule, cause="because", fix=fix) if rule else None
    return Cell(
        topology=topology,
        scenario=scenario,
        suite=suite,
        outcome=outcome,
        summary=summary,
        client=hold,
        server=server,
        diagnosis=diagnosis,
    )


def held(scenario: str, lived: float | None) -> Transcript:
    """A connect + hold transcript: cut after ``lived`` faithful seconds, or never (None)."""
    seconds, ping = HOLDS[scenario]
    return Transcript(
        kind=ClientKind.CONNECT,
        upgraded=True,
        steps=[
            Step(step="connect", argument={"path": "/x", "server_ping": ping}),
            Step(step="hold", argument={"seconds": seconds}),
        ],
        hold=Hold(
            seconds=seconds / 50,
            seconds_faithful=seconds,
            closed=lived is not None,
            lived=(lived or seconds) / 50,
            lived_faithful=lived or seconds,
            since_last_byte=0.1,
            code=1006 if lived else None,
            reason=None,
            closed_by="abnormal" if lived else None,
        ),
    )


def limit_cells(topology: str, idle: float | None, busy: float | None) -> list[Cell]:
    cells = []
    for scenario, lived in (("idle-without-pings", idle), ("lifetime-with-pings", busy)):
        informational = scenario == "idle-without-pings"
        outcome = Outcome.PASS if lived is None else Outcome.INFORMATIONAL if informational else Outcome.FAIL
        summary = "open 150s" if lived is None else f"cut {lived:.0f}s"
        rule = ("idle-timeout" if informational else "lifetime-cap") if lived is not None else ""
        fix = f"No ping beats a lifetime cap ({topology})." if rule == "lifetime-cap" else ""
        cells.append(
            cell(topology, scenario, outcome, summary, rule=rule, fix=fix, hold=held(scenario, lived))
        )
    return cells


def server_cells(topology: str, fixed: bool, carries: bool = True) -> list[Cell]:
    """A websockets server behind a keep-alive proxy: plain GETs get 426, HEAD 405 (informational)."""
    echo = cell(topology, "websockets-echo", Outcome.PASS, "101")
    if not carries:
        echo = cell(
            topology, "websockets-echo", Outcome.FAIL, "502", rule="proxy-rejected-upgrade", fix="Fix it."
        )
    if fixed:
        plain = [cell(topology, s, Outcome.PASS, "200") for s in ("browser-tab-get", "deploy-health-check")]
        head = cell(topology, "head-root", Outcome.PASS, "200")
    else:
        plain = [
            cell(
                topology,
                s,
                Outcome.FAIL,
                "426",
                "missing Connection header",
                "plain-http-through-keepalive-proxy",
                PLAIN_FIX,
            )
            for s in ("browser-tab-get", "deploy-health-check")
        ]
        head = cell(
            topology,
            "head-root",
            Outcome.INFORMATIONAL,
            "405",
            "unsupported HTTP method: HEAD",
            "client-sent-no-upgrade",
            PLAIN_FIX,
        )
    return [echo, *plain, head]


def static_cells() -> list[Cell]:
    name = "replit-static"
    no = [
        cell(
            name,
            "idle-without-pings",
            Outcome.INFORMATIONAL,
            "404",
            rule="proxy-rejected-upgrade",
            fix=STATIC_FIX,
        ),
        cell(name, "lifetime-with-pings", Outcome.BLOCKED, "404"),
    ]
    pages = [
        cell(name, s, Outcome.PASS, "200") for s in ("browser-tab-get", "deploy-health-check", "head-root")
    ]
    echo = cell(name, "websockets-echo", Outcome.FAIL, "404", rule="proxy-rejected-upgrade", fix=STATIC_FIX)
    return [echo, *pages, *no]


def runs(
    busy: dict[str, float | None] | None = None,
    idle: dict[str, float | None] | None = None,
    broken: tuple[str, ...] = (),
) -> tuple[Run, Run]:
    """The plain run and the fixed run, as the real proxies give them; ``busy`` and ``idle``
    change when a topology's connections are cut, ``broken`` which carry no WebSockets."""
    busy = {"replit-autoscale": 291.0, "cloudrun": 299.0, **(busy or {})}
    idle = {"nginx-websocket": 60.0, **(idle or {})}
    topologies = load_topologies()
    made = []
    for fixed in (False, True):
        cells = static_cells()
        for name in COMPARED:
            if name != "replit-static":
                cells += server_cells(name, fixed, carries=name not in broken)
                cells += limit_cells(name, idle.get(name), busy.get(name))
        run = run_of(cells, list(COMPARED), SCENARIOS)
        run.topologies = [Deployment(topologies[name], DeploymentStatus.READY).record() for name in COMPARED]
        made.append(run)
    return made[0], made[1]


def comparison(**changes: object) -> Comparison:
    return compare(*runs(**changes))  # type: ignore[arg-type]


def row(page: str, label: str) -> list[str]:
    """A table row's cells, by its label's start."""
    line = next(line for line in page.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[2:-1]]


def option(result: Comparison, name: str) -> Option:
    return next(o for o in result.options if o.name == name)


def choice(result: Comparison, app: str) -> str:
    assert result.recommendation is not None
    return next(c.option for c in result.recommendation.choices if c.app == app)


def test_one_table_of_every_option_with_each_figure_and_how_it_is_known() -> None:
    page = render_markdown(comparison())
    header = next(line for line in page.splitlines() if line.startswith("| | "))
    assert [c.strip("* ") for c in header.split("|")[2:-1]] == [
        "Replit dev URL",
        "Replit Autoscale",
        "Replit Reserved VM",
        "Replit Static",
        "Cloud Run",
        "self-hosted nginx",
    ]
    assert (
        page.count("<table>") == 0
        and MarkdownIt("commonmark").enable("table").render(page).count("<table>") == 1
    )
    assert row(page, "real WebSocket clients [measured]")[3] == "✗ 0/1 pass (404)"
    assert row(page, "real WebSocket clients [measured]")[1] == "✓ 1/1 pass"
    lifetime = row(page, "lifetime cap")
    assert lifetime[1] == "✗ 300s [inferred] (measured 291s)", "Replit's cap is Cloud Run's, inferred"
    assert lifetime[4] == "✗ 300s [documented] (measured 299s)"
    assert lifetime[2] == "✓ none [assumed]; lived ≥ 400s"
    assert lifetime[3] == "⊘ 404: no WebSocket"
    assert row(page, "idle cut")[5] == "ℹ 60s [documented] (measured 60s)"
    assert row(page, "idle cut")[0] == "✓ 3600s [assumed]; lived ≥ 150s"
    for label in ("scales to zero", "cold starts", "several instances", "cost, in kind"):
        cells = row(page, label)
        assert len(cells) == 6 and all(re.search(r"\[(documented|inferred|assumed)\]$", c) for c in cells), (
            cells
        )
    # Only older revisions of Replit's autoscale page say it scales to zero (platform-facts §9).
    assert row(page, "scales to zero")[1] == "yes, after 15 min idle (older docs) [inferred]"
    assert row(page, "scales to zero")[2] == "no, always on [documented]"
    assert row(page, "several instances")[2] == "one VM; in-memory state is shared [inferred]"
    assert row(page, "cost, in kind")[5] == "you pay for the machine, idle or not [assumed]"
    assert "Where the facts and limits come from" in page and "https://docs.replit.com/" in page
    assert "⚠" not in page, "every measured limit agrees with its configuration"


def test_plain_traffic_shows_what_the_server_logs_and_what_the_fix_changes() -> None:
    page = render_markdown(comparison())
    tab = row(page, "browser tab GET / [measured]")
    assert tab[0] == "✗ 426, logs `missing Connection header`; fixed: ✓ 200"
    assert tab[3] == "✓ 200", "the static host serves the page; nothing to fix"
    assert row(page, "health check GET / [measured]")[2].endswith("fixed: ✓ 200")


def test_head_is_informational_as_in_run_never_a_failure() -> None:
    result = comparison()
    head = row(render_markdown(result), "HEAD / [measured]")
    assert head[1] == "ℹ 405, logs `unsupported HTTP method: HEAD`; fixed: ✓ 200"
    assert not any("✗" in text for text in head)
    assert "client-sent-no-upgrade" not in [cause.rule for cause in option(result, "replit-autoscale").causes]


def test_each_distinct_fix_is_printed_once_and_each_option_refers_to_it() -> None:
    result = comparison()
    page = render_markdown(result)
    assert page.count(PLAIN_FIX) == 1 and page.count(STATIC_FIX) == 1
    assert len(result.fixes) == len(set(result.fixes))
    plain = result.fixes.index(PLAIN_FIX)
    users = [o.name for o in result.options if any(c.fix == plain for c in o.causes)]
    assert users == [name for name in COMPARED if name != "replit-static"]
    assert f"**Fix {plain + 1}**, for Replit dev URL, Replit Autoscale" in page
    assert f"plain-http-through-keepalive-proxy, 2 cells: fix {plain + 1}" in page


@pytest.mark.parametrize(
    ("change", "row_label", "text"),
    [
        (
            {"busy": {"replit-autoscale": 150.0}},
            "lifetime cap",
            "⚠ measured 150s, but 300s [inferred] is configured",
        ),
        (
            {"busy": {"cloudrun": None}},
            "lifetime cap",
            "⚠ lived ≥ 400s, but 300s [documented] should have cut it",
        ),
        (
            {"busy": {"replit-reserved-vm": 120.0}},
            "lifetime cap",
            "⚠ cut at 120s, but none [assumed] is configured",
        ),
        (
            {"idle": {"nginx-websocket": None}},
            "idle cut",
            "⚠ lived ≥ 150s, but 60s [documented] should have cut it",
        ),
    ],
)
def test_a_measurement_that_disagrees_with_the_configuration_is_said_loudly(
    change: dict, row_label: str, text: str
) -> None:
    result = comparison(**change)
    page = render_markdown(result)
    assert f"**{text}**" in " ".join(row(page, row_label)), "bold in its cell"
    assert "**⚠ Measured limits that disagree with the configuration:**" in page
    assert len(result.disagreements()) == 1
    top = page.index("⚠ Measured limits")
    assert top < page.index("| | "), "before the table"


def test_within_the_tolerance_the_configured_limit_is_reported() -> None:
    inside = option(comparison(busy={"replit-autoscale": 271.0}), "replit-autoscale")
    limit = inside.limits["lifetime-with-pings"]
    assert limit.agrees and limit.text() == "300 s [inferred] (measured 271 s)"
    outside = option(comparison(busy={"replit-autoscale": 269.0}), "replit-autoscale")
    assert outside.limits["lifetime-with-pings"].agrees is False, "10% of 300 s is 30 s"


def test_the_recommendation_follows_the_measurements_and_cites_its_rows() -> None:
    result = comparison()
    assert choice(result, LONG_LIVED) == "replit-reserved-vm"
    assert choice(result, REQUEST_RESPONSE) == "replit-autoscale"
    assert result.recommendation is not None
    long_lived = result.recommendation.choices[0]
    rows = {reason.row for reason in long_lived.reasons}
    assert {"real WebSocket clients", "lifetime cap", "several instances", "scales to zero"} <= rows
    against = next(r for r in long_lived.reasons if r.text.startswith("not Replit Autoscale"))
    assert against.row == "lifetime cap" and "291 s" in against.text
    static = next(r for r in long_lived.reasons if r.text.startswith("not Replit Static"))
    assert static.row == "real WebSocket clients"
    page = render_markdown(result)
    assert page.index("**On Replit: for a long-lived WebSocket app") < page.index("| | "), "up front"
    assert "(row “lifetime cap”)" in page

    # Autoscale's connections outlive the test, the Reserved VM's are cut: now Autoscale carries
    # the long-lived app, and the reason says what was measured.
    swapped = comparison(busy={"replit-autoscale": None, "replit-reserved-vm": 290.0})
    assert choice(swapped, LONG_LIVED) == "replit-autoscale"
    # The Reserved VM carries no WebSockets: both kinds of app go to Autoscale.
    broken = comparison(broken=("replit-reserved-vm",))
    assert choice(broken, LONG_LIVED) == choice(broken, REQUEST_RESPONSE) == "replit-autoscale"
    # Autoscale carries none: the request/response app goes to the Reserved VM.
    assert choice(comparison(broken=("replit-autoscale",)), REQUEST_RESPONSE) == "replit-reserved-vm"
    # None carries: no option is named, and the page says none carried.
    none = comparison(broken=("replit-autoscale", "replit-reserved-vm"))
    assert none.recommendation is None
    page = render_markdown(none)
    assert "**On Replit: none of the compared options carried WebSockets in this run.**" in page


def test_the_recommendation_says_what_the_fix_changes_whatever_the_option() -> None:
    result = comparison()
    assert result.recommendation is not None
    (common,) = result.recommendation.common
    assert common.rows == ("browser tab GET /", "health check GET /")
    assert "200 instead of 426" in common.text and "missing Connection header" in common.text


def test_recommend_works_on_one_run_and_needs_a_replit_profile() -> None:
    plain, _ = runs()
    alone = recommend(plain)
    assert alone is not None
    assert [c.option for c in alone.choices] == ["replit-reserved-vm", "replit-autoscale"]
    assert alone.common == (), "without the fixed run, nothing says what the fix changes"
    assert alone.headline() == (
        "For a long-lived WebSocket app (chat, dashboards), choose Replit Reserved VM; "
        "for a request/response app with occasional WebSockets, Replit Autoscale."
    )
    others = plain.model_copy(
        update={"topologies": [t for t in plain.topologies if not t.name.startswith("replit")]}
    )
    assert recommend(others) is None
    assert compare(others, others).recommendation is None


def test_the_page_reads_at_100_columns() -> None:
    page = render_markdown(comparison())
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(Markdown(page))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    table = text[text.index("Replit dev") : text.index("Rows tagged")]
    assert not re.search(r"\d\s*\n\s+s\b", table), "no number wrapped away from its unit"
