"""The leaderboard as one self-contained HTML page: inline CSS, a small inline script that
sorts a table by the column whose header is clicked, and the figures as PNG data URIs (no
server, no network: the file can be opened, mailed or archived as it is)."""

from __future__ import annotations

import base64
import re
from html import escape
from typing import TYPE_CHECKING

from benchmarks.figures import Figure, Skipped
from benchmarks.records import REFERENCE, UNREAD, Unread

if TYPE_CHECKING:
    from benchmarks.leaderboard import Section

NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( ± [\d.]+)?( \(.*\))?$")

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 1.5em 1.5em 3em; max-width: 1700px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 .3em; }
h2 { font-size: 1.25em; margin: 2.2em 0 .6em; padding-bottom: .25em; border-bottom: 2px solid #e3e6ea; }
p.intro { max-width: 62em; color: #444; }
nav ul { columns: 2; padding-left: 1.2em; margin: .3em 0; }
code { font: .92em ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f4f6; padding: 0 .25em;
       border-radius: 3px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: .4em 0; }
th, td { padding: .3em .45em; border-bottom: 1px solid #e3e6ea; text-align: left; white-space: nowrap; }
thead th { background: #f3f4f6; cursor: pointer; user-select: none; white-space: normal; vertical-align: bottom;
           min-width: 4em; max-width: 8.5em; }
thead th:hover { background: #e6e9ee; }
th[aria-sort=ascending]::after { content: " \\25B2"; font-size: .75em; }
th[aria-sort=descending]::after { content: " \\25BC"; font-size: .75em; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4ff; }
td:first-child { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.reference td { color: #5a6270; font-style: italic; }
tr.reference td:first-child { font-weight: 400; }
ul.notes { color: #8a4b00; font-size: 13px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 1em; margin-top: 1em; }
figure { margin: 0; border: 1px solid #e3e6ea; border-radius: 6px; padding: .5em; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 12px; color: #555; margin-top: .3em; }
p.skipped { font-size: 12px; color: #777; }
"""

SCRIPT = """
for (const th of document.querySelectorAll("table.sortable thead th")) {
  th.title = "click to sort";
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0], col = th.cellIndex;
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    for (const other of th.parentNode.cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const key = (row) => {
      const text = row.cells[col].textContent.trim(), n = parseFloat(text.replace(/,/g, ""));
      return isNaN(n) ? text : n;
    };
    const rows = Array.from(body.rows).map((row) => [key(row), row]);
    rows.sort(([x], [y]) => {
      if (typeof x !== typeof y) return typeof x === "string" ? 1 : -1;  // numbers before text, both ways
      const order = typeof x === "string" ? x.localeCompare(y) : x - y;
      return ascending ? order : -order;
    });
    body.append(...rows.map(([, row]) => row));
  });
}
"""


def inline(text: str) -> str:
    """Escaped text with Markdown `code` spans as ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def table(section: Section) -> str:
    """One leaderboard table, sortable by any column; a shipped reference row is of class
    ``reference`` (greyed, italic)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in section.head)
    body = "\n".join((f'<tr class="{REFERENCE}">' if source == REFERENCE else "<tr>") + "".join(
        f'<td class="num">{escape(c)}</td>' if NUMBER.match(c) else f"<td>{escape(c)}</td>" for c in line) + "</tr>"
        for line, source in zip(section.cells, section.rows["source"]))
    return f'<div class="scroll"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n' \
           f"</tbody></table></div>"


def unread_html(unread: list[Unread]) -> str:
    """The records not read, each with its problem, under a heading that counts them."""
    items = "".join(f"<li><code>{escape(str(u.path))}</code>: {escape(u.problem)}</li>" for u in unread)
    return (f'<section id="unread">\n<h2>{UNREAD} ({len(unread)})</h2>\n<ul class="notes">{items}</ul>\n'
            "</section>")


def figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure><img alt="{escape(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(fig.caption)}</figcaption></figure>")


def section_html(section: Section, figs: list[Figure | Skipped]) -> str:
    """A table, its notes, its figures and a line naming the figures not drawn and why."""
    parts = [f'<section id="{section.slug}">', f"<h2>{escape(section.heading)}</h2>", table(section)]
    if section.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in section.notes) + "</ul>")
    drawn = [figure(f) for f in figs if isinstance(f, Figure)]
    if drawn:
        parts.append('<div class="figures">\n' + "\n".join(drawn) + "\n</div>")
    skipped = [f"{f.what} ({f.reason})" for f in figs if isinstance(f, Skipped)]
    if skipped:
        parts.append(f'<p class="skipped">Not drawn: {escape("; ".join(skipped))}.</p>')
    return "\n".join(parts + ["</section>"])


def page(title: str, intro: list[str], sections: list[Section], figures: dict[str, list[Figure | Skipped]],
         empty: str, data: list[str], unread: list[Unread] = ()) -> str:
    """The whole page: title, the ``intro`` lines, the records not read (``unread``), a
    table of contents, each section with its figures (``figures`` by section slug), or
    ``empty`` when there is no section; ``data``: files beside the page that hold the same
    numbers, linked by relative name."""
    links = ", ".join(f'<a href="{escape(name)}">{escape(name)}</a>' for name in data)
    body = [f"<h1>{escape(title)}</h1>", f'<p class="intro">{inline(" ".join(intro))}</p>',
            (f'<p class="intro">The same numbers as files beside this page: {links}. '
             "Click a column header to sort its table.</p>")]
    if unread:
        body.append(unread_html(unread))
    if not sections:
        body.append(f"<p>{inline(empty)}</p>")
    else:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{s.slug}">{escape(s.heading)}</a></li>'
                                          for s in sections) + "</ul></nav>")
        body += [section_html(s, figures.get(s.slug, [])) for s in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{escape(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n"
            "</body>\n</html>\n")
