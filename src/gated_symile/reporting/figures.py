"""Result figures (matplotlib, Agg), each written as PNG and SVG with byte-deterministic output.

Why the care: figures are pipeline outputs like the tables, so rerunning the aggregation must not
change them. PNGs carry no software metadata; SVGs use a fixed ``svg.hashsalt`` (the ids of
clip paths and glyphs) and no date or creator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gated_symile.reporting.aggregate import estimate, method_key

_RC = {"svg.hashsalt": "gated-symile", "svg.fonttype": "path", "figure.dpi": 100}


def _save(fig: Any, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (each atomically); returns both paths."""
    import matplotlib.pyplot as plt

    from gated_symile.outputs import atomic_path

    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    for path, fmt, metadata in ((png, "png", {"Software": None}), (svg, "svg", {"Date": None, "Creator": None})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=metadata)
    plt.close(fig)
    return [png, svg]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, n: int, width: float = 4.2, height: float = 3.2) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _err(se: float | None) -> float:
    """Error-bar length: an undefined SE (a single run) draws no bar rather than a zero one."""
    return float("nan") if se is None else se


def top1_vs_p(rows: Sequence[dict[str, Any]], stem: Path) -> list[Path]:
    """Top-1 against misalignment p, one line per method with SE error bars, one panel per dataset.

    Chance and, where given, the oracle top-1 are drawn as reference lines.
    """
    plt = _pyplot()
    datasets = sorted({r["dataset"] for r in rows})
    methods = sorted({r["method"] for r in rows}, key=method_key)
    color = {m: f"C{k % 10}" for k, m in enumerate(methods)}  # one colour per method in every panel
    with plt.rc_context(_RC):
        fig, axes = _grid(plt, len(datasets))
        for ax, dataset in zip(axes, datasets):
            sub = [r for r in rows if r["dataset"] == dataset]
            for method in sorted({r["method"] for r in sub}, key=method_key):
                pts = sorted((r["p"], r["top1_mean"], _err(r["top1_se"])) for r in sub if r["method"] == method)
                ax.errorbar([x[0] for x in pts], [x[1] for x in pts], yerr=[x[2] for x in pts],
                            marker="o", capsize=3, label=method, color=color[method])
            for key, style, label in (("chance", "--", "chance"), ("oracle_top1", ":", "oracle")):
                line = sorted({(r["p"], r[key]) for r in sub if r.get(key) is not None})
                if line:
                    ax.plot([x[0] for x in line], [x[1] for x in line], style, color="0.4", label=label)
            ax.set_title(dataset)
            ax.set_xlabel("misalignment p")
            ax.set_ylabel("top-1 accuracy")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, stem)


def gate_weights(rows: Sequence[dict[str, Any]], stem: Path) -> list[Path]:
    """Mean gate weight per query modality by corruption type; one panel per gated cell."""
    plt = _pyplot()
    weights = [r for r in rows if r["statistic"].startswith("w_") and "-" not in r["statistic"]]
    cells = sorted({(r["dataset"], r["method"], r["p"]) for r in weights},
                   key=lambda c: (c[0], method_key(c[1]), c[2]))
    with plt.rc_context(_RC):
        fig, axes = _grid(plt, len(cells), width=4.8)
        for ax, (dataset, method, p) in zip(axes, cells):
            sub = [r for r in weights if (r["dataset"], r["method"], r["p"]) == (dataset, method, p)]
            groups = list(dict.fromkeys(r["group"] for r in sub))
            stats = sorted({r["statistic"] for r in sub})
            width = 0.8 / len(stats)
            for k, stat in enumerate(stats):
                by_group = {r["group"]: r for r in sub if r["statistic"] == stat}
                xs = [g + (k - (len(stats) - 1) / 2) * width for g in range(len(groups))]
                means = [by_group[g]["mean"] if g in by_group else 0.0 for g in groups]
                ses = [_err(by_group[g]["se"]) if g in by_group else float("nan") for g in groups]
                ax.bar(xs, means, width, yerr=ses, capsize=2, label=stat[2:])
            ax.set_xticks(range(len(groups)), [g.replace("_corrupted", "\ncorrupted") for g in groups], fontsize=8)
            ax.set_ylabel("mean gate weight (positive pairs)")
            ax.set_title(f"{dataset} · {method} · p={p!r}", fontsize=10)
            ax.legend(title="query", fontsize=8)
        fig.tight_layout()
        return _save(fig, stem)


def top1_vs_scale(points: Sequence[dict[str, Any]], scale: str, stem: Path) -> list[Path] | None:
    """Top-1 against ``scale`` ("pool" or "batch") for every (dataset, family, p) seen at >= 2 scales.

    Returns None (nothing written) when no such line exists.
    """
    lines: dict[tuple[str, str, float], dict[float, list[tuple[int | None, float]]]] = defaultdict(lambda: defaultdict(list))
    for pt in points:
        if pt[scale] is not None:
            lines[(pt["dataset"], pt["family"], pt["p"])][float(pt[scale])].append((pt["fold"], pt["top1"]))
    lines = {k: v for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    plt = _pyplot()
    datasets = sorted({k[0] for k in lines})
    label = {"pool": "retrieval candidates per query", "batch": "training batch size"}[scale]
    with plt.rc_context(_RC):
        fig, axes = _grid(plt, len(datasets))
        for ax, dataset in zip(axes, datasets):
            for (ds, family, p), by_scale in sorted(lines.items(), key=lambda kv: (kv[0][0], method_key(kv[0][1]), kv[0][2])):
                if ds != dataset:
                    continue
                xs = sorted(by_scale)
                ests = [estimate(by_scale[x]) for x in xs]
                ax.errorbar(xs, [e.mean for e in ests], yerr=[_err(e.se) for e in ests], marker="o", capsize=3,
                            label=f"{family} (p={p!r})")
            ax.set_xscale("log", base=2)
            ax.set_title(dataset)
            ax.set_xlabel(label)
            ax.set_ylabel("top-1 accuracy")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, stem)


def attrition(csv_file: Path, stem: Path) -> list[Path]:
    """Horizontal bars of the samples remaining after each cohort criterion (cohort stage CSV),
    each labelled with its count."""
    from gated_symile.errors import RecordError
    from gated_symile.intermediates import read_csv_rows

    table = read_csv_rows(csv_file, "attrition CSV", columns=("criterion", "remaining"))
    try:
        rows = [(r["criterion"], int(r["remaining"])) for r in table]
    except (TypeError, ValueError) as exc:
        raise RecordError(csv_file, f"remaining must be integers ({exc})") from None
    plt = _pyplot()
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(rows) + 1.2), dpi=100)
        positions = list(range(len(rows)))[::-1]  # the first criterion at the top
        counts = [count for _, count in rows]
        ax.barh(positions, counts, color="#4c72b0")
        ax.set_yticks(positions, [criterion for criterion, _ in rows])
        top = max(counts, default=0) or 1
        for y, count in zip(positions, counts):
            ax.text(count + 0.01 * top, y, f"{count:,}", va="center", fontsize=9)
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("samples remaining")
        ax.set_title("cohort attrition")
        fig.tight_layout()
        return _save(fig, stem)
