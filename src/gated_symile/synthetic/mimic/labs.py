"""``labevents.csv.gz`` and ``d_labitems.csv.gz``: vectorised lab panels with the cohort branches.

Labs come in panels (one ``specimen_id``, one ``charttime``): admission panels around admittime
(ED labs, empty ``hadm_id`` for ``lab_null_hadm_rate``), daily morning panels, and the branch
panels (outpatient before the window, exactly on a bound, the previous admission's last panel
for close readmissions).  Values carry the latents ``f``, ``b`` and ``b2`` (``lab_catalogue``).  Rows are
generated for blocks of ``CHUNK`` admissions with a random stream keyed on the block, and
streamed into one gzip file, so 10 million rows need only one block in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gated_symile.synthetic.mimic.cohort_plan import (
    DAY,
    HOUR,
    LAB_STREAM,
    Plan,
    alternate,
    choose,
    uniform_int,
)
from gated_symile.synthetic.mimic.identifiers import (
    SPECIMEN,
    format_times,
    provider_ids,
    scrambled_ids,
)
from gated_symile.synthetic.mimic.lab_catalogue import (
    COMMENTS,
    NUMERIC_ITEMS,
    PANELS,
    TEXT_ITEMS,
    TEXT_RESULTS,
)
from gated_symile.synthetic.mimic.tables import GzipCsvWriter, write_csv

LABEVENTS_COLUMNS = [
    "labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id",
    "charttime", "storetime", "value", "valuenum", "valueuom", "ref_range_lower",
    "ref_range_upper", "flag", "priority", "comments",
]  # fmt: skip
CHUNK = 2000
"""Admissions per generated block (fixed: the output must not depend on it varying)."""

N_NUMERIC = len(NUMERIC_ITEMS)
_ITEMIDS = np.array([i.itemid for i in NUMERIC_ITEMS] + [t[0] for t in TEXT_ITEMS])
_PANEL_OF_ITEM = [i.panel for i in NUMERIC_ITEMS] + [t[4] for t in TEXT_ITEMS]
_PANEL_ITEMS = [
    np.array([k for k, p in enumerate(_PANEL_OF_ITEM) if p == name]) for name in PANELS
]
_PANEL_SIZE = np.array([a.size for a in _PANEL_ITEMS])
_PANEL_START = np.r_[0, np.cumsum(_PANEL_SIZE)[:-1]]
_PANEL_FLAT = np.concatenate(_PANEL_ITEMS)
_CODE = {name: k for k, name in enumerate(PANELS)}
_LOG = np.array([i.log for i in NUMERIC_ITEMS])
_CENTER = np.array([np.log(i.center) if i.log else i.center for i in NUMERIC_ITEMS])
_SPREAD = np.array([i.spread for i in NUMERIC_ITEMS])
_DECIMALS = np.array([i.decimals for i in NUMERIC_ITEMS])
_LOAD_F = np.array([i.loading if i.latent == "f" else 0.0 for i in NUMERIC_ITEMS])
_LOAD_B = np.array([i.loading if i.latent == "b" else 0.0 for i in NUMERIC_ITEMS])
_LOAD_B2 = np.array([i.loading if i.latent == "b2" else 0.0 for i in NUMERIC_ITEMS])
_LOWEST = np.array(
    [
        -30.0 if i.itemid == 50802 else 6.8 if i.itemid == 50820 else 0.0
        for i in NUMERIC_ITEMS
    ]
)
_HIGHEST = np.array(
    [
        100.0 if i.uom == "%" else 7.8 if i.itemid == 50820 else np.inf
        for i in NUMERIC_ITEMS
    ]
)
_REF_LO = np.array(
    [np.nan if i.ref_lower is None else i.ref_lower for i in NUMERIC_ITEMS]
)
_REF_HI = np.array(
    [np.nan if i.ref_upper is None else i.ref_upper for i in NUMERIC_ITEMS]
)


def _strings(values: list[str | None], name: str) -> pl.Series:
    return pl.Series(name, values, dtype=pl.String)


_SIGN = pl.Series(["", "-"])
_TEXT_RESULTS = pl.Series(TEXT_RESULTS)
_ITEM_TEXT = _strings(
    [None] * (2 * N_NUMERIC)
    + [v or None for t in TEXT_ITEMS for v in (t[5][0], t[5][-1])],
    "text",
)  # two candidate texts per item: index 2 * item + (0 | 1)
_COMMENTS = pl.Series("comments", COMMENTS)
_EGFR_COMMENT = 4
_PRIORITY = _strings(["STAT", "ROUTINE", None], "priority")
_POTASSIUM = next(k for k, i in enumerate(NUMERIC_ITEMS) if i.itemid == 50971)
_EGFR = N_NUMERIC + next(k for k, t in enumerate(TEXT_ITEMS) if t[0] == 50920)


_UOM = _strings(
    [i.uom or None for i in NUMERIC_ITEMS] + [None] * len(TEXT_ITEMS), "valueuom"
)
_REF_LO_TEXT = _strings(
    [None if i.ref_lower is None else f"{i.ref_lower:g}" for i in NUMERIC_ITEMS]
    + [None] * len(TEXT_ITEMS),
    "ref_range_lower",
)
_REF_HI_TEXT = _strings(
    [None if i.ref_upper is None else f"{i.ref_upper:g}" for i in NUMERIC_ITEMS]
    + [None] * len(TEXT_ITEMS),
    "ref_range_upper",
)


@dataclass(frozen=True)
class LabBranches:
    """Per-admission lab branch masks (drawn once for all admissions)."""

    null_hadm: np.ndarray
    before: np.ndarray
    text: np.ndarray
    bound_side: np.ndarray  # -1 / +1 for a panel at exactly -24 h / +24 h, 0 otherwise
    none: np.ndarray
    text_only: np.ndarray

    def counts(self, plan: Plan) -> dict[str, int]:
        return {
            "labs_null_hadm_admission_panels": int(self.null_hadm.sum()),
            "labs_before_window": int(self.before.sum()),
            "labs_text_without_valuenum": int(self.text.sum()),
            "labs_at_minus_24h": int((self.bound_side < 0).sum()),
            "labs_at_plus_24h": int((self.bound_side > 0).sum()),
            "labs_none_in_window": int(self.none.sum()),
            "labs_text_only_in_window": int(self.text_only.sum()),
            "labs_from_adjacent_admission": int(plan.readmission.sum()),
        }


def draw_lab_branches(plan: Plan) -> LabBranches:
    cfg, n = plan.cfg, plan.n
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, LAB_STREAM]))
    everyone = np.ones(n, dtype=bool)
    none = choose(rng, everyone, cfg.labs_none_rate)
    text_only = choose(rng, ~none, cfg.labs_text_only_rate)
    ok = ~(none | text_only)
    return LabBranches(
        null_hadm=choose(rng, everyone, cfg.lab_null_hadm_rate),
        before=choose(rng, everyone, cfg.labs_before_rate),
        text=choose(rng, ok, cfg.lab_text_rate),
        bound_side=alternate(choose(rng, ok, cfg.labs_bound_rate, minimum=2)),
        none=none,
        text_only=text_only,
    )


def _panels(
    plan: Plan, br: LabBranches, lo: int, hi: int, rng: np.random.Generator
) -> dict:
    """Panel table of admissions ``lo..hi-1``: adm (whose latents), time, hadm (-1 = null), code, mode.

    The three kinds of panel are drawn in this order from ``rng`` (the order fixes the bytes).
    """
    adm = np.arange(lo, hi)
    parts = [
        *_admission_panels(plan, br, adm, rng),
        *_daily_panels(plan, br, adm, rng),
        *_branch_panels(plan, br, adm, rng),
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _panel_part(adm: np.ndarray, time: np.ndarray, hadm: np.ndarray, code: int, mode: Any = 0) -> dict:
    """Panels of one panel type: one row per admission in ``adm``."""
    return {"adm": adm, "time": time, "hadm": hadm, "code": np.full(adm.size, code),
            "mode": np.broadcast_to(mode, adm.shape)}  # fmt: skip


def _admission_panels(
    plan: Plan, br: LabBranches, adm: np.ndarray, rng: np.random.Generator
) -> list[dict]:
    """ED / admission panels: one draw time per admission (after 24 h when it has no labs)."""
    m = adm.size
    late = br.none[adm]
    t0 = plan.admit_s[adm] + np.where(
        late,
        DAY + uniform_int(rng, 60, 600, m) * 60,
        uniform_int(rng, -180, 120, m) * 60,
    )
    h0 = np.where(br.null_hadm[adm], -1, plan.hadm_id[adm])
    mode = np.where(br.text_only[adm], 2, np.where(br.text[adm], 1, 0))
    parts = []
    for name, p in (
        ("CBC", 1),
        ("DIFF", 0.6),
        ("CHEM", 1),
        ("COAG", 0.6),
        ("LFT", 0.5),
        ("BG", 0.35),
        ("UA", 0.4),
        ("HOLD", 0.3),
    ):
        take = rng.random(m) < p
        panel_mode = (
            mode[take] if name in ("CBC", "CHEM") else np.where(mode[take] == 2, 2, 0)
        )
        parts.append(_panel_part(adm[take], t0[take], h0[take], _CODE[name], panel_mode))
    return parts


def _daily_panels(
    plan: Plan, br: LabBranches, adm: np.ndarray, rng: np.random.Generator
) -> list[dict]:
    """Morning panels of each hospital day (none inside the window of a no-labs admission)."""
    rep = np.repeat(adm, plan.n_daily[adm])
    day = (
        np.arange(rep.size)
        - np.repeat(np.cumsum(plan.n_daily[adm]) - plan.n_daily[adm], plan.n_daily[adm])
        + 1
    )
    t = (
        plan.admit_s[rep] // DAY * DAY
        + day * DAY
        + 5 * HOUR
        + uniform_int(rng, -60, 60, rep.size) * 60
    )
    keep = ~((br.none | br.text_only)[rep] & (t - plan.admit_s[rep] <= DAY))
    rep, t = rep[keep], t[keep]
    parts = []
    for name, p in (
        ("CBC", 1),
        ("CHEM", 1),
        ("COAG", 0.3),
        ("BG", 0.15),
        ("DIFF", 0.2),
    ):
        take = rng.random(rep.size) < p
        parts.append(_panel_part(rep[take], t[take], plan.hadm_id[rep[take]], _CODE[name]))
    return parts


def _branch_panels(
    plan: Plan, br: LabBranches, adm: np.ndarray, rng: np.random.Generator
) -> list[dict]:
    """Outpatient panels before the window, panels exactly on a bound, the adjacent admission's."""
    b = adm[br.before[adm]]
    tb = plan.admit_s[b] - DAY - uniform_int(rng, 1, 30 * 1440, b.size) * 60
    parts = [_panel_part(b, tb, np.full(b.size, -1), _CODE[name]) for name in ("CBC", "CHEM")]
    side = br.bound_side[adm]
    on = adm[side != 0]
    parts.append(_panel_part(
        on,
        plan.admit_s[on] + side[side != 0] * DAY,
        np.where(side[side != 0] < 0, -1, plan.hadm_id[on]),
        _CODE["CHEM"],
    ))  # fmt: skip
    prev = plan.previous[adm[plan.readmission[adm]]]
    parts.append(_panel_part(
        prev,
        plan.disch_s[prev] - uniform_int(rng, 60, 180, prev.size) * 60,
        plan.hadm_id[prev],
        _CODE["CHEM"],
    ))  # fmt: skip
    return parts


def lab_rows(
    plan: Plan, br: LabBranches, lo: int, hi: int, panel_offset: int
) -> tuple[pl.DataFrame, int]:
    """labevents rows (without ``labevent_id``) of admissions ``lo..hi-1``, and the panel count.

    One random stream per block, drawn in a fixed order: panels, values, value texts, then the
    per-panel attributes.
    """
    cfg = plan.cfg
    rng = np.random.default_rng(
        np.random.SeedSequence([cfg.seed, LAB_STREAM, lo // CHUNK])
    )
    panels = _panels(plan, br, lo, hi, rng)
    n_panels = panels["adm"].size
    order = np.lexsort((panels["code"], panels["time"], plan.subject_of[panels["adm"]]))
    panels = {k: v[order] for k, v in panels.items()}

    counts = _PANEL_SIZE[panels["code"]]
    row_panel = np.repeat(np.arange(n_panels), counts)
    pos = np.arange(row_panel.size) - np.repeat(np.cumsum(counts) - counts, counts)
    item = _PANEL_FLAT[_PANEL_START[panels["code"][row_panel]] + pos]
    adm = panels["adm"][row_panel]
    values = _lab_values(plan, lo, hi, item, adm, panels["mode"][row_panel], rng)
    text = _value_texts(item, values, rng)
    attributes = _panel_attributes(plan, panels, panel_offset, rng)
    rp = pl.Series(row_panel)
    rows = pl.DataFrame(
        [
            pl.Series("subject_id", plan.subject_id[adm]),
            attributes["hadm"].gather(rp),
            pl.Series("specimen_id", attributes["specimen"][row_panel]),
            pl.Series("itemid", _ITEMIDS[item]),
            attributes["provider"].gather(rp),
            attributes["chart"].gather(rp),
            attributes["store"].gather(rp),
            text["value"].alias("value"),
            text["valuenum"].alias("valuenum"),
            _UOM.gather(pl.Series(item)).set(text["no_number"], None),
            _REF_LO_TEXT.gather(pl.Series(item)),
            _REF_HI_TEXT.gather(pl.Series(item)),
            pl.select(pl.when(pl.lit(pl.Series(values["abnormal"]))).then(pl.lit("abnormal")))
            .to_series()
            .alias("flag"),
            _PRIORITY.gather(pl.Series(attributes["priority"][row_panel])).alias("priority"),
            _COMMENTS.gather(pl.Series(values["comment_code"]))
            .set(pl.Series(~values["has_comment"]), None)
            .alias("comments"),
        ]
    )
    return rows, n_panels


def _lab_values(
    plan: Plan,
    lo: int,
    hi: int,
    item: np.ndarray,
    adm: np.ndarray,
    mode: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Per row: the value (persistent per (admission, item) + per-draw noise + latent loadings),
    rounded to the item's decimals, whether it is text, masked or abnormal, and its comment."""
    n_rows = item.size
    numeric = item < N_NUMERIC
    k = np.where(numeric, item, 0)
    base = max(lo - 1, 0)
    persistent = rng.standard_normal((hi - base, N_NUMERIC))
    lat = plan.latents
    u = (0.8 * persistent[adm - base, k] + 0.35 * rng.standard_normal(n_rows)
         + _LOAD_F[k] * lat.f_lab[adm] + _LOAD_B[k] * (2.0 * lat.b_lab[adm] - 1.0)
         + _LOAD_B2[k] * (2.0 * lat.b2_lab[adm] - 1.0))  # fmt: skip
    value = _CENTER[k] + _SPREAD[k] * u
    value = np.clip(
        np.where(_LOG[k], np.exp(np.where(_LOG[k], value, 0.0)), value),
        _LOWEST[k],
        _HIGHEST[k],
    )
    scale = 10.0 ** _DECIMALS[k]
    scaled = np.rint(value * scale).astype(np.int64)
    as_text = numeric & (
        (mode == 2) | ((mode == 1) & ((rng.random(n_rows) < 0.3) | (k == _POTASSIUM)))
    )
    # de-identified value text "___" with the number kept in valuenum, as in MIMIC-IV
    masked = numeric & ~as_text & (rng.random(n_rows) < 0.01)
    value_num = scaled / scale
    abnormal = (
        numeric & ~as_text & ((value_num < _REF_LO[k]) | (value_num > _REF_HI[k]))
    )
    has_comment = (rng.random(n_rows) < plan.cfg.comment_rate) | (item == _EGFR)
    comment_code = np.where(
        item == _EGFR, _EGFR_COMMENT, rng.integers(0, len(COMMENTS), n_rows)
    )
    return {
        "k": k, "numeric": numeric, "scaled": scaled, "as_text": as_text, "masked": masked,
        "abnormal": abnormal, "has_comment": has_comment, "comment_code": comment_code,
    }  # fmt: skip


def _value_texts(
    item: np.ndarray, values: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, pl.Series]:
    """``value`` and ``valuenum`` strings: numbers with the item's decimals, text from small tables."""
    n_rows = item.size
    k, scaled, as_text = values["k"], values["scaled"], values["as_text"]
    power = 10 ** _DECIMALS[k]
    sign = pl.Series(np.where(scaled < 0, 1, 0)).cast(pl.UInt32)
    whole = pl.Series(np.abs(scaled) // power).cast(pl.String)
    frac = (
        pl.Series(np.abs(scaled) % power)
        .cast(pl.String)
        .str.zfill(pl.Series(_DECIMALS[k]))
    )
    number = pl.select(
        pl.when(pl.lit(pl.Series(_DECIMALS[k])) == 0)
        .then(pl.lit(_SIGN).gather(sign) + whole)
        .otherwise(pl.lit(_SIGN).gather(sign) + whole + "." + frac)
    ).to_series()
    no_number = pl.Series(~values["numeric"] | as_text)
    text = pl.select(
        pl.when(pl.lit(pl.Series(as_text)))
        .then(
            pl.lit(_TEXT_RESULTS).gather(
                pl.Series(rng.integers(0, len(TEXT_RESULTS), n_rows))
            )
        )
        .otherwise(
            pl.lit(_ITEM_TEXT).gather(pl.Series(2 * item + (rng.random(n_rows) < 0.3)))
        )
    ).to_series()
    value = pl.select(
        pl.when(pl.lit(pl.Series(values["masked"])))
        .then(pl.lit("___"))
        .when(pl.lit(no_number))
        .then(text)
        .otherwise(number)
    ).to_series()
    return {"value": value, "valuenum": number.set(no_number, None), "no_number": no_number}


def _panel_attributes(
    plan: Plan, panels: dict, panel_offset: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Per panel: specimen id, chart and store times, priority, ordering provider, hadm_id."""
    n_panels = panels["adm"].size
    specimen = scrambled_ids(
        panel_offset + np.arange(n_panels), SPECIMEN, plan.cfg.seed, salt=5
    )
    chart = format_times(panels["time"], "charttime")
    store_s = panels["time"] + uniform_int(rng, 15, 180, n_panels) * 60
    store = format_times(store_s, "storetime").set(
        pl.Series(rng.random(n_panels) < 0.01), None
    )
    priority = rng.choice(3, n_panels, p=[0.53, 0.38, 0.09])
    provider = pl.Series("order_provider_id", provider_ids(rng, n_panels))
    provider = provider.set(pl.Series(rng.random(n_panels) >= 0.15), None)
    hadm = pl.Series("hadm_id", panels["hadm"]).set(pl.Series(panels["hadm"] < 0), None)
    return {"specimen": specimen, "chart": chart, "store": store, "priority": priority,
            "provider": provider, "hadm": hadm}  # fmt: skip


def write_labevents(path: Path, plan: Plan) -> dict[str, int]:
    """Stream ``labevents.csv.gz`` block by block; returns row counts and lab branch counts."""
    branches = draw_lab_branches(plan)
    panels = 0
    null_hadm = text_rows = 0
    with GzipCsvWriter(path, LABEVENTS_COLUMNS) as writer:
        for lo in range(0, plan.n, CHUNK):
            rows, n_panels = lab_rows(
                plan, branches, lo, min(lo + CHUNK, plan.n), panels
            )
            rows = rows.with_columns(
                pl.int_range(
                    writer.rows + 1, writer.rows + 1 + rows.height, dtype=pl.Int64
                ).alias("labevent_id")
            ).select(LABEVENTS_COLUMNS)
            null_hadm += rows["hadm_id"].null_count()
            text_rows += rows.filter(
                pl.col("value").is_not_null() & pl.col("valuenum").is_null()
            ).height
            writer.write(rows)
            panels += n_panels
        total = writer.rows
    return {
        "labevents_rows": total,
        "lab_panels": panels,
        "labs_rows_null_hadm": null_hadm,
        "labs_rows_text_value_no_valuenum": text_rows,
        **branches.counts(plan),
    }


def write_d_labitems(path: Path) -> int:
    """d_labitems covering every itemid the generator writes."""
    frame = pl.DataFrame(
        {
            "itemid": [i.itemid for i in NUMERIC_ITEMS] + [t[0] for t in TEXT_ITEMS],
            "label": [i.label for i in NUMERIC_ITEMS] + [t[1] for t in TEXT_ITEMS],
            "fluid": [i.fluid for i in NUMERIC_ITEMS] + [t[2] for t in TEXT_ITEMS],
            "category": [i.category for i in NUMERIC_ITEMS]
            + [t[3] for t in TEXT_ITEMS],
        }
    ).sort("itemid")
    return write_csv(frame, path)
