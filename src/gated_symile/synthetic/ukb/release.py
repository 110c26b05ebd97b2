"""Orchestration: draw participants chunk by chunk and write the UK-Biobank-style release.

Layout under ``out`` (docs/data.md §9.2)::

    ukb_main.csv              eid + <field>-<instance>.<array> columns (or the R / RAP spelling)
    olink_data.txt            eid, ins_index, protein_id, result (long, tab-separated)
    coding143.tsv             coding, meaning ("ABBR;Full protein name")
    hesin.txt, hesin_diag.txt hospital episodes and their ICD-9/ICD-10 diagnoses (tab-separated)
    ecg/<eid>_20205_2_0.xml   GE CardioSoft resting ECGs of a subset

Participants are processed in fixed chunks of ``CHUNK`` rows, each with its own random stream, so
memory stays bounded and the bytes depend only on the config (never on ``workers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gated_symile.data.mimic.parallel import ordered_map
from gated_symile.outputs import staged_folder
from gated_symile.synthetic.ukb import model
from gated_symile.synthetic.ukb.catalogue import (
    BIOCHEMISTRY_FIELDS,
    FIELD_ASSESSMENT_DATE,
    FIELD_SEX,
    FIELD_YEAR_OF_BIRTH,
    NMR_FIELDS,
    OLINK_PROTEIN_CODES,
    protein_meaning,
)
from gated_symile.synthetic.ukb.config import UkbSynthConfig
from gated_symile.synthetic.ukb.ecg_xml import ecg_file_name, write_cardiosoft_ecg
from gated_symile.synthetic.ukb.hes import ISO_DATE, date_text, hes_tables

CHUNK = 8192
FILES = ("ukb_main.csv", "olink_data.txt", "coding143.tsv", "hesin.txt", "hesin_diag.txt")
_BASELINE_FIRST = int(np.datetime64("2006-03-13", "D").astype(np.int64))
_BASELINE_LAST = int(np.datetime64("2010-10-01", "D").astype(np.int64))
_REPEAT_FIRST = int(np.datetime64("2012-08-01", "D").astype(np.int64))
_REPEAT_LAST = int(np.datetime64("2013-06-30", "D").astype(np.int64))


def column_name(field: int, instance: int, array: int, style: str) -> str:
    """Spell one main-dataset column the way an exporter does (docs/data.md §9.2)."""
    if style == "r":
        return f"f.{field}.{instance}.{array}"
    if style == "rap":
        return f"p{field}" if field in (FIELD_SEX, FIELD_YEAR_OF_BIRTH) else f"p{field}_i{instance}"
    return f"{field}-{instance}.{array}"


def generate_ukb(out: Path, cfg: UkbSynthConfig) -> dict:
    """Write the release under ``out`` and return a summary.

    Built in a staged folder beside ``out`` that replaces it whole when complete
    (``gated_symile.outputs.staged_folder``; a folder holding one of :data:`FILES` is the
    generator's): a killed run leaves the earlier release or none, never a half one.
    """
    out = Path(out)
    with staged_folder(out, markers=FILES, what="synthetic UK Biobank release folder") as work:
        summary = _generate_ukb(work, cfg)
    return {"out": str(out), **summary}


def _generate_ukb(out: Path, cfg: UkbSynthConfig) -> dict:
    """The release written into the empty folder ``out``; its summary (less ``out``)."""
    params = model.draw_params(cfg)
    eid_rng = np.random.default_rng([cfg.seed, model.EID_STREAM])
    all_eids = 1_000_000 + eid_rng.choice(
        5_000_000, cfg.participants + cfg.olink_orphans, replace=False
    )
    eids = np.sort(all_eids[: cfg.participants]).astype(np.int64)
    orphans = np.sort(all_eids[cfg.participants :]).astype(np.int64)

    counts: dict[str, int] = {}
    ecg_jobs: list[tuple] = []
    handles = {name: (out / name).open("wb") for name in FILES if name != "coding143.tsv"}
    try:
        for index, start in enumerate(range(0, cfg.participants, CHUNK)):
            chunk = _chunk(cfg, params, eids[start : start + CHUNK], index, out, ecg_jobs)
            counts.update({k: counts.get(k, 0) + v for k, v in _chunk_counts(chunk).items()})
            if index == (cfg.participants - 1) // CHUNK and orphans.size:
                rng = np.random.default_rng([cfg.seed, model.ORPHAN_STREAM])
                lat = model.draw_latents(rng, orphans.size, cfg)
                values = model.olink_values(rng, params, lat, cfg.signal_strength)
                chunk["olink_data.txt"] = pl.concat(
                    [chunk["olink_data.txt"], _olink_long(orphans, params.protein_ids, values, 0)]
                )
            for name, frame in chunk.items():
                sep = "," if name.endswith(".csv") else "\t"
                frame.write_csv(
                    handles[name], separator=sep, include_header=index == 0, null_value=""
                )
                counts[name] = counts.get(name, 0) + frame.height
    finally:
        for handle in handles.values():
            handle.close()
    coding = pl.DataFrame(
        {
            "coding": np.arange(1, OLINK_PROTEIN_CODES + 1),
            "meaning": [protein_meaning(i) for i in range(1, OLINK_PROTEIN_CODES + 1)],
        }
    )
    coding.write_csv(out / "coding143.tsv", separator="\t")
    paths = ordered_map(write_cardiosoft_ecg, ecg_jobs, workers=cfg.workers)
    return {
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "rows": {name: counts.get(name, 0) for name in FILES if name != "coding143.tsv"},
        "participants": {k: v for k, v in counts.items() if k not in FILES},
        "ecg_files": len(paths),
        "proteins": int(params.protein_ids.size),
    }


def _chunk_counts(chunk: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Participants per modality in one chunk (for the summary)."""
    olink0 = chunk["olink_data.txt"].filter(pl.col("ins_index") == 0)
    return {
        "with_olink_rows": olink0["eid"].n_unique(),
        "with_hes_episodes": chunk["hesin.txt"]["eid"].n_unique(),
    }


def _chunk(
    cfg: UkbSynthConfig,
    params: model.Params,
    eids: np.ndarray,
    index: int,
    out: Path,
    ecg_jobs: list[tuple],
) -> dict[str, pl.DataFrame]:
    """All rows of one chunk of participants; appends its ECG jobs to ``ecg_jobs``.

    One random stream per chunk, drawn in a fixed order (the order fixes the bytes): latents,
    participants, main-dataset values, HES codes, Olink values, HES tables, Olink gaps.
    """
    rng = np.random.default_rng([cfg.seed, model.CHUNK_STREAM, index])
    s = cfg.signal_strength
    lat = model.draw_latents(rng, eids.size, cfg)
    who = _draw_participants(rng, cfg, eids.size)
    nmr, bio = _main_values(rng, cfg, params, lat, who)
    codes = _hes_codes(rng, params, lat, s, who.has_hes)
    olink0 = model.olink_values(rng, params, lat, s)
    olink0[who.olink_all_nan] = np.nan
    olink2 = model.olink_values(rng, params, lat, s)
    hesin, diag = hes_tables(rng, eids, codes, who.baseline, cfg.hes_date_format)
    olink = _olink_frame(rng, cfg, params, eids, who, olink0, olink2)
    ecg_dir = out / "ecg"
    for i in np.flatnonzero(who.has_ecg):
        ecg_jobs.append(
            (str(ecg_dir / ecg_file_name(int(eids[i]))), cfg.seed, model.ECG_STREAM, int(eids[i]),
             float(lat.z[i, 0]), int(lat.u[i, 0]))
        )  # fmt: skip
    return {
        "ukb_main.csv": _main_frame(cfg.main_style, eids, who, nmr, bio),
        "olink_data.txt": olink,
        "hesin.txt": hesin,
        "hesin_diag.txt": diag,
    }


@dataclass(frozen=True)
class _Participants:
    """One chunk's participants: demographics, assessment days, and which records each has."""

    sex: np.ndarray
    year_of_birth: np.ndarray
    baseline: np.ndarray  # baseline assessment, days since 1970-01-01
    repeat_day: np.ndarray  # repeat assessment (used where ``repeat``)
    empty: np.ndarray  # withdrawn-like rows: eid only
    no_baseline: np.ndarray
    has_nmr: np.ndarray
    has_olink: np.ndarray
    has_hes: np.ndarray
    repeat: np.ndarray
    has_ecg: np.ndarray
    olink_imaging: np.ndarray  # Olink at the imaging visit (instance 2)
    olink_all_nan: np.ndarray  # failed baseline assay: rows kept, every result empty


def _draw_participants(
    rng: np.random.Generator, cfg: UkbSynthConfig, m: int
) -> _Participants:
    """Demographics and dates, then one uniform per participant and branch (9 columns), so a
    branch's share can change without moving the other branches' draws."""
    sex = rng.integers(0, 2, m)
    year_of_birth = rng.integers(1937, 1971, m)
    baseline = rng.integers(_BASELINE_FIRST, _BASELINE_LAST + 1, m)
    repeat_day = rng.integers(_REPEAT_FIRST, _REPEAT_LAST + 1, m)
    u = rng.random((m, 9))
    empty = u[:, 0] < cfg.empty_frac
    no_baseline = ~empty & (u[:, 1] < cfg.no_baseline_frac)
    has_olink = ~empty & (u[:, 3] < cfg.olink_frac)
    return _Participants(
        sex=sex,
        year_of_birth=year_of_birth,
        baseline=baseline,
        repeat_day=repeat_day,
        empty=empty,
        no_baseline=no_baseline,
        has_nmr=~empty & (u[:, 2] < cfg.nmr_frac),
        has_olink=has_olink,
        has_hes=~empty & (u[:, 4] < cfg.hes_frac),
        repeat=~empty & ~no_baseline & (u[:, 5] < cfg.repeat_frac),
        has_ecg=~empty & (u[:, 6] < cfg.ecg_frac),
        olink_imaging=~empty & (u[:, 7] < cfg.olink_imaging_frac),
        olink_all_nan=has_olink & (u[:, 8] < cfg.olink_all_nan_frac),
    )


def _main_values(
    rng: np.random.Generator,
    cfg: UkbSynthConfig,
    params: model.Params,
    lat: model.Latents,
    who: _Participants,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((NMR at instance 0, 1), (biochemistry at instance 0, 1)), NaN where not measured."""
    s, frac = cfg.signal_strength, cfg.value_missing_frac
    nmr0 = _mask(rng, model.nmr_values(rng, params, lat, s), who.has_nmr, frac)
    nmr1 = _mask(rng, model.nmr_values(rng, params, lat, s), who.repeat & who.has_nmr, frac)
    bio0 = _mask(rng, model.biochemistry_values(rng, params, lat, s), ~who.empty, frac)
    bio1 = _mask(rng, model.biochemistry_values(rng, params, lat, s), who.repeat, frac)
    return (nmr0, nmr1), (bio0, bio1)


def _hes_codes(
    rng: np.random.Generator,
    params: model.Params,
    lat: model.Latents,
    s: float,
    has_hes: np.ndarray,
) -> np.ndarray:
    """Lifetime code sets of participants with HES records; one with none drawn gets one of
    the first 40 codes, so that "has HES" always means at least one episode."""
    codes = model.code_sets(rng, params, lat, s) & has_hes[:, None]
    no_codes = has_hes & ~codes.any(axis=1)
    codes[np.flatnonzero(no_codes), rng.integers(0, 40, has_hes.size)[no_codes]] = True
    return codes


def _main_frame(
    style: str,
    eids: np.ndarray,
    who: _Participants,
    nmr: tuple[np.ndarray, np.ndarray],
    bio: tuple[np.ndarray, np.ndarray],
) -> pl.DataFrame:
    """The main dataset's rows, columns spelled in the exporter's ``style``; NaN written empty."""
    columns: dict[str, object] = {
        "eid": eids,
        column_name(FIELD_SEX, 0, 0, style): pl.Series(who.sex).set(pl.Series(who.empty), None),
        column_name(FIELD_YEAR_OF_BIRTH, 0, 0, style): who.year_of_birth,
        column_name(FIELD_ASSESSMENT_DATE, 0, 0, style): date_text(
            who.baseline, who.empty | who.no_baseline, ISO_DATE
        ),
        column_name(FIELD_ASSESSMENT_DATE, 1, 0, style): date_text(
            who.repeat_day, ~who.repeat, ISO_DATE
        ),
    }
    for fields, values in ((NMR_FIELDS, nmr), (BIOCHEMISTRY_FIELDS, bio)):
        for j, field in enumerate(fields):
            columns[column_name(field, 0, 0, style)] = values[0][:, j]
            columns[column_name(field, 1, 0, style)] = values[1][:, j]
    return pl.DataFrame(columns).with_columns(pl.col(pl.Float64).fill_nan(None))


def _olink_frame(
    rng: np.random.Generator,
    cfg: UkbSynthConfig,
    params: model.Params,
    eids: np.ndarray,
    who: _Participants,
    olink0: np.ndarray,
    olink2: np.ndarray,
) -> pl.DataFrame:
    """Long Olink rows of instances 0 and 2, with a share of single values not measured."""
    olink_rows = []
    for instance, values, has in ((0, olink0, who.has_olink), (2, olink2, who.olink_imaging)):
        keep = _mask(rng, values, has, cfg.value_missing_frac)[has]
        olink_rows.append(_olink_long(eids[has], params.protein_ids, keep, instance))
    return pl.concat(olink_rows).sort("eid", "ins_index", "protein_id")


def _mask(rng: np.random.Generator, values: np.ndarray, who: np.ndarray, frac: float) -> np.ndarray:
    """NaN for participants outside ``who`` and for a ``frac`` share of single values."""
    values = values.copy()
    values[~who] = np.nan
    values[rng.random(values.shape) < frac] = np.nan
    return values


def _olink_long(
    eids: np.ndarray, protein_ids: np.ndarray, values: np.ndarray, instance: int
) -> pl.DataFrame:
    """Long rows (eid, ins_index, protein_id, result); NaN values are left out (not measured).

    A participant whose values are all NaN (failed assay) keeps its rows with an empty ``result``.
    """
    n, p = values.shape
    frame = pl.DataFrame(
        {
            "eid": np.repeat(eids, p).astype(np.int64),
            "ins_index": np.full(n * p, instance, dtype=np.int64),
            "protein_id": np.tile(protein_ids, n),
            "result": values.reshape(-1),
        }
    )
    all_nan = np.repeat(np.isnan(values).all(axis=1), p)
    keep = ~np.isnan(values.reshape(-1)) | all_nan
    return frame.filter(pl.Series(keep)).with_columns(pl.col("result").fill_nan(None))
