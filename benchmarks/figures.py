"""Leaderboard figures: PNG images of one leaderboard table, drawn on matplotlib's Agg canvas.

For one table (the rows of ``benchmarks.leaderboard.summary`` for a profile, suite and
dataset, and their learning curves) :func:`draw` returns, in this order: the primary test
metric against parameters and against training throughput (one point per method and
configuration, error bars over seeds); the metric on the test split beside each robustness
transform (grouped bars per method: a model that is not invariant drops under the
transform); where ReLU networks were rescaled, the metric against the range of the scales;
the validation metric per epoch (mean over seeds, a band of one std); and, where
a method was run at several values, the metric against the number of probe inputs (the
neural-graph probe features, ablated by Kofinas et al. 2024) or of views per training image
(the augmented INR copies, ablated by Navon et al. 2023). A figure without enough data is a
:class:`Skipped` that says why. The shipped reference rows ranked in a table are drawn too,
labelled ``(reference)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as Canvas
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks.metrics import METRICS
from benchmarks.records import REFERENCE
from benchmarks.robustness import TRANSFORMS

if TYPE_CHECKING:
    from benchmarks.leaderboard import Section

SIZE, DPI = (6.8, 4.2), 100  # 680 x 420 pixels: two side by side on a 1400-pixel screen
# Fixed margins (no layout pass: a figure is drawn once): the axes on the left, the legend
# in the right quarter, room for a two-line title and rotated method names below.
LEFT, WIDTH, TOP = 0.115, 0.585, 0.85
LEGEND_CHARACTERS, TICK_CHARACTERS = 28, 24
LABEL_PIXELS = 6.0, 11.0  # the size of one character of an 8-point label, width and height
STYLES, MARKERS = ("-", "--", ":", "-."), ("o", "s", "D", "^", "v")
SPLIT_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
ERRORS = "bars: ± one std over seeds"
# Ablations: what varies, the columns that hold it (the resolved hyperparameter first), the axis label.
SWEEPS = {
    "probes": (("config.hyperparameters.probes", "config.method_options.probes"), "probe inputs (count)"),
    "views": (("config.data.options.views",), "views per training image (dataset option views)"),
}


@dataclass(frozen=True)
class Figure:
    """A drawn figure: ``name`` within its table (the file stem), its title, a caption that
    says how to read it, the PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Skipped:
    """A figure not drawn: its name, what it would have shown, and why not."""

    name: str
    what: str
    reason: str


def _png(fig: Canvas) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _axes(title: str, xlabel: str, ylabel: str, bottom: float = 0.12, left: float = LEFT):
    fig = Canvas(figsize=SIZE, dpi=DPI)
    ax = fig.add_axes((left, bottom, WIDTH + LEFT - left, TOP - bottom))
    fig.suptitle(title, fontsize=11, y=0.985)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _legend(ax, title: str) -> None:
    """The legend to the right of the axes, outside the data."""
    handles, names = ax.get_legend_handles_labels()
    names = [n if len(n) <= LEGEND_CHARACTERS else n[:LEGEND_CHARACTERS - 1] + "…" for n in names]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title=title,
              title_fontsize=8, frameon=False)


def _colours(methods) -> dict[str, tuple]:
    """One colour per method of the table, the same in all its figures."""
    names = sorted(set(methods))
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {m: palette(i % palette.N) for i, m in enumerate(names)}


def _chance(ax, rows: pd.DataFrame, scale: float) -> None:
    """A dashed line at the chance level of the validation split where the records hold it
    and it falls within the data; else only its value, in the legend."""
    if "chance.count" not in rows or not (rows["chance.count"] > 0).any():
        return
    level, (low, high) = rows["chance.mean"].mean() * scale, ax.get_ylim()
    if low <= level <= high:
        ax.axhline(level, color="0.45", linestyle="--", linewidth=1, label="chance (validation)")
    else:
        ax.plot([], [], " ", label=f"chance: {level:.3g} ({'below' if level < low else 'above'} the axis)")


def _log_x(ax) -> None:
    """A log-scaled x axis with short plain tick labels (20k, 1.5M) at 1, 2 and 5 per decade."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_short))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _short(value: float, _position=None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _annotate(ax, xs: np.ndarray, ys: np.ndarray, names: list[str]) -> None:
    """Each point's name beside it, moved to another side where it would cover a name
    already placed (highest points first)."""
    ax.get_xlim(), ax.get_ylim()  # settle the limits, so that data map to final pixels
    placed: list[tuple] = []
    for i in np.argsort(-ys, kind="stable"):
        px, py = ax.transData.transform((xs[i], ys[i]))
        w, h = LABEL_PIXELS[0] * len(names[i]), LABEL_PIXELS[1]
        sides = ((6, 3), (6, -h - 3), (-w - 6, 3), (-w - 6, -h - 3), (6, h + 4), (6, -2 * h - 6))
        boxes = [(px + dx, py + dy, px + dx + w, py + dy + h) for dx, dy in sides]
        inside = [b for b in boxes if ax.bbox.x0 <= b[0] and b[2] <= ax.bbox.x1] or boxes
        box = next((b for b in inside if not any(_overlaps(b, p) for p in placed)), inside[0])
        placed.append(box)
        ax.annotate(names[i], (xs[i], ys[i]), xytext=(box[0] - px, box[1] - py), textcoords="offset pixels",
                    fontsize=8)


def method_label(method: str, source: str) -> str:
    """A method's name in a table or figure, marked ``(reference)`` for a shipped reference run."""
    return f"{method} ({REFERENCE})" if source == REFERENCE else method


def labels(rows: pd.DataFrame) -> list[str]:
    """The method name of each row (:func:`method_label`), with what sets its configuration
    apart where the table has several configurations of that method from the same source:
    the parts of its budget the others lack (``dwsnet (2 ep)``), else the configuration
    values that differ (``ng-gnn (probes=4)``), else the configuration id."""
    out = []
    config = [c for c in rows.columns if c.startswith("config.") and c != "config.dataset_fingerprint"]
    for i, (method, source, budget) in enumerate(zip(rows["method"], rows["source"], rows["budget"])):
        same = rows[(rows["method"] == method) & (rows["source"] == source)]
        name = method_label(method, source)
        if len(same) == 1:
            out.append(name)
            continue
        common = set.intersection(*(set(b.split(", ")) for b in same["budget"]))
        own = [part.removeprefix("data ") for part in budget.split(", ") if part not in common]
        if not own:
            own = [f"{c.rsplit('.', 1)[1]}={_plain(rows[c].iloc[i])}" for c in config
                   if same[c].astype(str).nunique() > 1] or [rows["config_id"].iloc[i][:6]]
        out.append(f"{name} ({', '.join(own)})")
    return out


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(rows: pd.DataFrame, column: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Means and stds (0 where a single seed) of a summary column, scaled."""
    mean = rows[f"{column}.mean"].to_numpy(float) * scale
    return mean, np.nan_to_num(rows[f"{column}.std"].to_numpy(float)) * scale


def _has(rows: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The finished rows with a value in every column."""
    keep = rows["status"] == "ok"
    for column in columns:
        keep &= rows.get(f"{column}.count", pd.Series(0, index=rows.index)) > 0
    return rows[keep]


def _nth(methods) -> list[int]:
    """For each row, how many rows of the same method came before it."""
    seen: list[str] = []
    out = []
    for method in methods:
        out.append(seen.count(method))
        seen.append(method)
    return out


def scatter(section: Section, x: str, xlabel: str, name: str, what: str) -> Figure | Skipped:
    """The primary test metric against ``x`` (log scale), one point per method and
    configuration, error bars of one std over seeds on both axes."""
    metric = METRICS[section.metrics[0]]
    rows = _has(section.rows, x, f"test.{metric.name}")
    if len(rows) < 2:
        return Skipped(name, f"{metric.label} vs {what}",
                       f"fewer than two configurations have both {what} and a test {metric.label}")
    title = f"{section.heading}\ntest {metric.label} vs {what}"
    fig, ax = _axes(title, xlabel, f"test {metric.label} (mean ± std over seeds)")
    xs, xerr = _values(rows, x)
    ys, yerr = _values(rows, f"test.{metric.name}", metric.scale)
    colours, names = _colours(rows["method"]), labels(rows)
    for i, (method, nth) in enumerate(zip(rows["method"], _nth(rows["method"]))):
        ax.errorbar(xs[i], ys[i], xerr=xerr[i], yerr=yerr[i], fmt=MARKERS[nth % len(MARKERS)],
                    color=colours[method], capsize=3, markersize=6, label=names[i])
    ax.margins(x=0.15, y=0.12)
    _log_x(ax)
    _chance(ax, rows, metric.scale)
    _annotate(ax, xs, ys, names)
    _legend(ax, "method")
    return Figure(name, title.replace("\n", ": "), f"One point per method and configuration; {ERRORS}.", _png(fig))


def robustness(section: Section) -> Figure | Skipped:
    """Grouped bars: per method and configuration, the primary metric on the test split and
    on the same split after each function-preserving transform."""
    metric = METRICS[section.metrics[0]]
    if not section.transforms:
        return Skipped("robustness", "robustness bars", "no robustness transform was measured")
    rows = _has(section.rows, f"test.{metric.name}")
    if rows.empty:
        return Skipped("robustness", "robustness bars", f"no finished run has a test {metric.label}")
    title = f"{section.heading}\ntest {metric.label} before and after function-preserving transforms"
    fig, ax = _axes(title, "", f"test {metric.label} (mean ± std over seeds)", bottom=0.27, left=0.2)
    splits = ("test", *section.transforms)
    width, x = 0.8 / len(splits), np.arange(len(rows))
    for j, split in enumerate(splits):
        column = f"{split}.{metric.name}"
        if f"{column}.mean" not in rows:
            continue
        mean, std = _values(rows, column, metric.scale)
        ax.bar(x + (j - (len(splits) - 1) / 2) * width, mean, width, yerr=std, capsize=2,
               color=SPLIT_COLOURS[j % len(SPLIT_COLOURS)], label="test split" if split == "test" else split)
    _chance(ax, rows, metric.scale)
    names = [n if len(n) <= TICK_CHARACTERS else n[:TICK_CHARACTERS - 1] + "…" for n in labels(rows)]
    ax.set_xticks(x, names, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    ax.grid(axis="x", visible=False)
    _legend(ax, "split")
    caption = ("The transforms change the weights but not the functions the networks compute: an invariant model "
               f"scores the same, a model that is not invariant drops; {ERRORS}.")
    return Figure("robustness", title.replace("\n", ": "), caption, _png(fig))


def scale_ranges(section: Section) -> Figure | Skipped:
    """The primary test metric against the range of the positive rescaling (scales
    log-uniform in ``[1/r, r]``; ``r = 1`` is the untransformed test split), one line per
    method and configuration, as Monomial-NFN (Tran et al. 2024) plots it."""
    metric = METRICS[section.metrics[0]]
    ranges = sorted((TRANSFORMS[t].scale_range, t) for t in section.transforms if TRANSFORMS[t].scale_range)
    if not ranges:
        return Skipped("scale_range", "metric against the rescaling range", "no rescaling was measured (no ReLU "
                       "networks)")
    rows = _has(section.rows, f"test.{metric.name}", *(f"{t}.{metric.name}" for _, t in ranges))
    if rows.empty:
        return Skipped("scale_range", "metric against the rescaling range",
                       f"no finished run has a test {metric.label} under every rescaling")
    title = f"{section.heading}\ntest {metric.label} vs the range of positive rescaling"
    fig, ax = _axes(title, "scale range r (scales log-uniform in [1/r, r]; 1 = untransformed)",
                    f"test {metric.label} (mean ± std over seeds)")
    colours, xs = _colours(rows["method"]), [1.0] + [r for r, _ in ranges]
    columns = [f"test.{metric.name}"] + [f"{t}.{metric.name}" for _, t in ranges]
    for (_, row), label, nth in zip(rows.iterrows(), labels(rows), _nth(rows["method"])):
        mean = [row[f"{c}.mean"] * metric.scale for c in columns]
        std = np.nan_to_num([row[f"{c}.std"] for c in columns]) * metric.scale
        ax.errorbar(xs, mean, yerr=std, fmt=MARKERS[nth % len(MARKERS)], linestyle=STYLES[nth % len(STYLES)],
                    color=colours[row["method"]], capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    _chance(ax, rows, metric.scale)
    _legend(ax, "method")
    caption = ("Each ReLU neuron's incoming weights and bias times c, its outgoing weights divided by c: the same "
               f"function. A scale-invariant model gives a flat line; {ERRORS}.")
    return Figure("scale_range", title.replace("\n", ": "), caption, _png(fig))


def learning_curves(section: Section, curves: pd.DataFrame) -> Figure | Skipped:
    """Validation primary metric per epoch, mean over seeds with a band of one std, one line
    per method and configuration."""
    metric = METRICS[section.metrics[0]]
    column = f"val_{metric.name}"
    if f"{column}.count" not in curves:
        return Skipped("curves", "learning curves", f"no run recorded a validation {metric.label} per epoch")
    curves = curves[curves[f"{column}.count"] > 0]
    rows = section.rows[section.rows["config_id"].isin(
        curves.groupby("config_id")["epoch"].nunique().loc[lambda n: n >= 2].index)]
    if rows.empty:
        return Skipped("curves", "learning curves",
                       f"no run recorded a validation {metric.label} for two or more epochs")
    title = f"{section.heading}\nvalidation {metric.label} per epoch"
    fig, ax = _axes(title, "epoch", f"validation {metric.label} (mean over seeds)")
    colours = _colours(rows["method"])
    for label, method, config_id, nth in zip(labels(rows), rows["method"], rows["config_id"], _nth(rows["method"])):
        curve = curves[curves["config_id"] == config_id].sort_values("epoch")
        mean, std = _values(curve, column, metric.scale)
        ax.plot(curve["epoch"], mean, STYLES[nth % len(STYLES)], color=colours[method], label=label, linewidth=1.6)
        ax.fill_between(curve["epoch"], mean - std, mean + std, color=colours[method], alpha=0.12, linewidth=0)
    _legend(ax, "method")
    caption = ("Mean over seeds after each epoch, band ± one std; the test metrics are taken at the best "
               "validation epoch.")
    return Figure("curves", title.replace("\n", ": "), caption, _png(fig))


def sweep(section: Section, name: str) -> Figure | Skipped:
    """The primary test metric against the swept value, one line per method and fixed rest
    of the configuration, where that line has two or more values."""
    metric = METRICS[section.metrics[0]]
    columns, xlabel = SWEEPS[name]
    rows = _has(section.rows, f"test.{metric.name}")
    present = [c for c in columns if c in rows.columns]
    value = (rows[present].apply(pd.to_numeric, errors="coerce").bfill(axis=1).iloc[:, 0] if present and len(rows)
             else pd.Series(np.nan, index=rows.index))
    rows = rows.assign(swept=value)[value.notna()]
    fixed = [c for c in rows.columns if c.startswith("config.") and c not in columns
             and not (name == "views" and c == "config.dataset_fingerprint")]
    lines = [line for _, line in rows.groupby(["method"] + fixed, dropna=False, sort=True)
             if line["swept"].nunique() >= 2]
    if not lines:
        return Skipped(name, f"{name} ablation", f"no method was run at two or more values of {columns[0]}")
    title = f"{section.heading}\ntest {metric.label} vs {xlabel.split(' (')[0]}"
    fig, ax = _axes(title, xlabel, f"test {metric.label} (mean ± std over seeds)")
    heads = pd.DataFrame([line.iloc[0] for line in lines])
    heads["budget"] = [", ".join(p for p in b.split(", ") if f"{name}=" not in p) for b in heads["budget"]]
    colours = _colours(heads["method"])
    for label, line, nth in zip(labels(heads), lines, _nth(heads["method"])):
        line = line.sort_values("swept")
        mean, std = _values(line, f"test.{metric.name}", metric.scale)
        ax.errorbar(line["swept"], mean, yerr=std, fmt=MARKERS[nth % len(MARKERS)], linestyle=STYLES[nth % len(STYLES)],
                    color=colours[line["method"].iloc[0]], capsize=3, label=label)
    _chance(ax, rows, metric.scale)
    ax.set_xticks(sorted(rows["swept"].unique()))
    _legend(ax, "method")
    caption = f"One line per method, the rest of its configuration fixed; {ERRORS}."
    return Figure(name, title.replace("\n", ": "), caption, _png(fig))


def draw(section: Section, curves: pd.DataFrame) -> list[Figure | Skipped]:
    """Every figure of one leaderboard table; ``curves``: its rows of
    ``benchmarks.leaderboard.curves``."""
    return [scatter(section, "parameters", "parameters (count, log scale)", "parameters", "parameters"),
            scatter(section, "samples_per_second", "training throughput (samples/s, log scale)", "throughput",
                    "training throughput"),
            robustness(section), scale_ranges(section), learning_curves(section, curves),
            *(sweep(section, name) for name in SWEEPS)]
