"""The HTML report (`report --since DATE --html FILE`): one self-contained page.

Pure: it takes the figures of :func:`~digest_mailer.reports.across.across_report` and
gives the page's text. Everything is inside the page: the style, and the charts as
inline SVG (:mod:`~digest_mailer.reports.charts`). No script, no font, image or style
sheet to fetch, and a Content-Security-Policy that forbids them anyway, so the file can
be mailed or opened anywhere. Each chart has a title and a description for screen
readers, and its figures are in a table next to it. The same figures give the same bytes.
"""

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from digest_mailer.csvio.writing import write_private_file
from digest_mailer.reports.charts import Chart, bar_chart, line_chart
from digest_mailer.reports.weekly import STATUSES
from digest_mailer.reports.wording import day, duration_text, share

CSP = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1a1a1a; background: #fff; margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #ccc; }
p.note { color: #444; margin: 0 0 1rem; }
figure { margin: 1rem 0; }
figcaption { color: #444; font-size: .9rem; }
svg.chart { width: 100%; height: auto; max-width: 60rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; white-space: nowrap; }
th, td { padding: .25rem .4rem; border-bottom: 1px solid #ddd; text-align: left;
  vertical-align: top; white-space: nowrap; }
thead th { white-space: normal; }
th[scope="col"] { border-bottom: 2px solid #888; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.url, td.wrap { white-space: normal; word-break: break-word; }
"""
# the per-issue columns: (header, what the cell shows)
ISSUE_COLUMNS = (
    "Recipients",
    "Sent",
    "Deferred",
    "Failed",
    "Uncertain",
    "Hard bounces",
    "Soft bounces",
    "Complaints",
    "Unsubscribes",
    "Clicks",
)


def _issue_numbers(figures: dict[str, Any]) -> list[int]:
    counts = figures["counts"]
    return [
        figures["recipients"],
        counts["sent"],
        counts["deferred"],
        counts["failed"],
        counts["uncertain"],
        figures["bounces"]["hard"],
        figures["bounces"]["soft"],
        figures["complaints"],
        figures["unsubscribes"]["total"],
        figures["clicks"]["total"],
    ]


def _table(
    caption: str, headers: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int
) -> str:
    """A data table: the first cell of each row is its header; cells from
    ``numeric_from`` on are numbers (right-aligned)."""
    numeric = ' class="n"'
    head = "".join(
        f'<th scope="col"{numeric if i >= numeric_from else ""}>{escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = [f'<th scope="row">{escape(str(row[0]))}</th>']
        for i, value in enumerate(row[1:], 1):
            cls = ' class="n"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _figure(chart: Chart, caption: str) -> str:
    return f"<figure>\n{chart.svg}\n<figcaption>{escape(caption)}</figcaption>\n</figure>"


def list_size_chart(weeks: Sequence[dict[str, Any]]) -> Chart:
    labels = [w["week"] for w in weeks]
    series = {s: [w["counts"].get(s, 0) for w in weeks] for s in STATUSES}
    series = {s: v for s, v in series.items() if any(v)} or {"active": [0] * len(weeks)}
    first, last = weeks[0], weeks[-1]
    moves = "; ".join(f"{s} from {v[0]} to {v[-1]}" for s, v in series.items())
    desc = (
        f"Subscribers by status at the end of each week, {first['week']} to "
        f"{last['week']} ({len(weeks)} weeks): {moves}. The table below gives every week."
    )
    return line_chart(
        "list-size", "List size by status, weekly", desc, labels, series, ylabel="subscribers"
    )


def per_issue_chart(issues: Sequence[dict[str, Any]]) -> Chart:
    labels = [i["issue"] for i in issues]
    series = {
        "unsubscribes": [i["unsubscribes"]["total"] for i in issues],
        "hard bounces": [i["bounces"]["hard"] for i in issues],
        "soft bounces": [i["bounces"]["soft"] for i in issues],
        "complaints": [i["complaints"] for i in issues],
    }
    if issues:
        parts = "; ".join(
            f"{i['issue']}: {i['unsubscribes']['total']} unsubscribes, "
            f"{i['bounces']['hard']} hard and {i['bounces']['soft']} soft bounces, "
            f"{i['complaints']} complaints"
            for i in issues
        )
    else:
        parts = "no issue was sent in this period"
    desc = f"Unsubscribes, bounces and complaints of each issue. {parts}."
    return bar_chart(
        "per-issue",
        "Unsubscribes and bounces per issue",
        desc,
        labels,
        series,
        ylabel="subscribers",
    )


def report_page(report: dict[str, Any], title: str = "Newsletter") -> str:
    """The whole page, as text."""
    since, issues, weeks = report["since"][:10], report["issues"], report["weeks"]
    heading = f"{title}: report since {since}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{escape(heading)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape(heading)}</h1>",
        f'<p class="note">{len(issues)} issue(s) whose send started since {escape(since)}; '
        f"figures as of {escape(day(report['now']))} UTC.</p>",
        "<h2>Issues</h2>",
    ]
    rows = [
        [
            i["issue"],
            day(i["started_at"])[:10],
            duration_text((i["time_to_send"] or {}).get("seconds")),
            *_issue_numbers(i),
        ]
        for i in issues
    ]
    parts.append(
        _table(
            "Figures per issue (counts of subscribers)",
            ["Issue", "Started", "Time to send", *ISSUE_COLUMNS],
            rows,
            3,
        )
        if issues
        else "<p>No issue was sent in this period.</p>"
    )
    parts += [
        "<h2>List size</h2>",
        _figure(
            list_size_chart(weeks),
            "Subscribers by status at the end of each week (the last week ends now).",
        ),
    ]
    week_rows = [
        [w["week"], day(w["end"]), *[w["counts"].get(s, 0) for s in STATUSES], w["total"]]
        for w in weeks
    ]
    parts.append(
        _table(
            "Subscribers by status at the end of each week",
            ["Week", "Ends (UTC)", *STATUSES, "total"],
            week_rows,
            2,
        )
    )
    parts += [
        "<h2>Unsubscribes and bounces per issue</h2>",
        _figure(
            per_issue_chart(issues),
            "Unsubscribes (by link and otherwise), bounces and complaints, per issue.",
        ),
    ]
    detail_rows = [
        [
            i["issue"],
            i["unsubscribes"]["link"],
            i["unsubscribes"]["email"],
            i["unsubscribes"]["total"],
            share(i["unsubscribes"]["total"], i["counts"]["sent"]),
            i["bounces"]["hard"],
            i["bounces"]["soft"],
            i["complaints"],
        ]
        for i in issues
    ]
    if issues:
        parts.append(
            _table(
                "Unsubscribes and bounces per issue",
                [
                    "Issue",
                    "Unsubscribes by link",
                    "otherwise",
                    "total",
                    "of sent",
                    "Hard bounces",
                    "Soft bounces",
                    "Complaints",
                ],
                detail_rows,
                1,
            )
        )
    reasons = [
        [i["issue"], r["kind"], r["status"] or "-", r["addresses"], r["example"]]
        for i in issues
        for r in i["bounces"]["reasons"]
    ]
    if reasons:
        parts += ["<h2>Most common bounce reasons</h2>", _reasons_table(reasons)]
    parts += ["<h2>Clicks per link</h2>", _clicks(issues)]
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _reasons_table(rows: Sequence[Sequence[object]]) -> str:
    body = "\n".join(
        f'<tr><th scope="row">{escape(str(issue))}</th><td>{escape(str(kind))}</td>'
        f'<td>{escape(str(status))}</td><td class="n">{count}</td>'
        f'<td class="wrap">{escape(str(example))}</td></tr>'
        for issue, kind, status, count, example in rows
    )
    return (
        '<div class="scroll"><table><caption>Bounces by kind and status code</caption>'
        '<thead><tr><th scope="col">Issue</th><th scope="col">Kind</th>'
        '<th scope="col">Status</th><th scope="col" class="n">Addresses</th>'
        f'<th scope="col">Example</th></tr></thead><tbody>\n{body}\n</tbody></table></div>'
    )


def _clicks(issues: Sequence[dict[str, Any]]) -> str:
    rows = [(i["issue"], link) for i in issues for link in i["clicks"]["links"]]
    if not rows:
        return "<p>No clicks recorded (click tracking is off, or no link was followed).</p>"
    body = "\n".join(
        f'<tr><th scope="row">{escape(issue)}</th><td class="n">{link["link"]}</td>'
        f'<td class="url">{escape(link["url"])}</td><td class="n">{link["clicks"]}</td></tr>'
        for issue, link in rows
    )
    return (
        '<div class="scroll"><table><caption>Clicks per link (counts only, nothing per person)'
        '</caption><thead><tr><th scope="col">Issue</th><th scope="col" class="n">Link</th>'
        '<th scope="col">Address</th><th scope="col" class="n">Clicks</th></tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def write_report_page(path: Path, report: dict[str, Any], title: str = "Newsletter") -> int:
    """Write the page to ``path``: private (0600), whole or not at all. Returns its size
    in characters."""
    page = report_page(report, title)
    return write_private_file(path, lambda handle: handle.write(page))
