"""Synthetic UK-Biobank-style release: determinism, coverage, formats readable by the readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gated_symile.cli import main
from gated_symile.errors import ConfigError
from gated_symile.records import read_cardiosoft_xml
from gated_symile.records.ukb_tables import (
    pivot_olink,
    read_hesin,
    read_hesin_diag,
    read_main_dataset,
    read_olink_coding,
)
from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb
from gated_symile.synthetic.ukb.model import draw_latents, draw_params, olink_values

N = 1500


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ukb") / "raw"
    generate_ukb(out, UkbSynthConfig(participants=N, seed=5, ecg_frac=0.01))
    return out


def test_same_seed_gives_identical_bytes_for_any_worker_count(tmp_path):
    cfg = dict(participants=300, seed=11, ecg_frac=0.02, olink_frac=0.2)
    generate_ukb(tmp_path / "a", UkbSynthConfig(**cfg, workers=1))
    generate_ukb(tmp_path / "b", UkbSynthConfig(**cfg, workers=2))
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b
    assert any(name.startswith("ecg/") for name in a)
    generate_ukb(tmp_path / "c", UkbSynthConfig(**{**cfg, "seed": 12}))
    assert digests(tmp_path / "c")["ukb_main.csv"] != a["ukb_main.csv"]


def test_rerun_replaces_earlier_output(tmp_path):
    generate_ukb(tmp_path, UkbSynthConfig(participants=200, seed=1, ecg_frac=0.05))
    generate_ukb(tmp_path, UkbSynthConfig(participants=200, seed=1, ecg_frac=0.0))
    assert not (tmp_path / "ecg").exists() or not any((tmp_path / "ecg").iterdir())


def test_coverage_rates_are_near_the_targets(release):
    main_table = read_main_dataset(
        release / "ukb_main.csv", fields=[53, 23400, 23401], instances=[0]
    )
    eids = main_table["eid"].to_numpy()
    assert eids.size == N and np.all(np.diff(eids) > 0)
    nmr = main_table.select("23400-0.0", "23401-0.0").to_numpy().astype(float)
    nmr_share = np.mean(~np.isnan(nmr).all(axis=1))
    assert 0.92 <= nmr_share <= 0.97
    olink = pivot_olink(release / "olink_data.txt", 0)
    olink_share = np.isin(eids, olink.eids).mean()
    assert 0.08 <= olink_share <= 0.12
    assert olink.values.shape[1] == 200
    hes_share = np.isin(eids, read_hesin(release / "hesin.txt")["eid"].unique().to_numpy()).mean()
    assert 0.76 <= hes_share <= 0.84
    n_ecg = len(list((release / "ecg").glob("*_20205_2_0.xml")))
    assert 5 <= n_ecg <= 40
    assert main_table["53-0.0"].null_count() > 0  # participants whose EHR cannot be anchored


def test_branches_episodes_after_baseline_no_episodes_and_missing_modalities(release):
    main_table = read_main_dataset(release / "ukb_main.csv", fields=[53], instances=[0])
    hesin = read_hesin(release / "hesin.txt").join(
        main_table.rename({"53-0.0": "baseline"}), on="eid"
    )
    after = hesin.filter(pl.col("episode_date") > pl.col("baseline"))
    before = hesin.filter(pl.col("episode_date") <= pl.col("baseline"))
    assert after.height > 0 and before.height > 0
    assert hesin.filter(pl.col("epistart").is_null() & pl.col("admidate").is_not_null()).height > 0
    assert hesin["eid"].n_unique() < N  # participants without any episode
    diag = read_hesin_diag(release / "hesin_diag.txt")
    assert diag.filter(pl.col("diag_icd10").is_null() & pl.col("diag_icd9").is_not_null()).height
    assert set(diag["level"].unique().to_list()) == {1, 2}
    assert diag["diag_icd10"].drop_nulls().str.len_chars().is_in([3, 4]).all()
    olink = pivot_olink(release / "olink_data.txt", 2)
    assert olink.eids.size > 0  # imaging-visit proteomics, ignored by the baseline pivot
    coding = read_olink_coding(release / "coding143.tsv")
    assert coding.height == 1463 and coding["abbreviation"].n_unique() == 1463


def test_ecg_files_are_readable_cardiosoft_xml(release):
    files = sorted((release / "ecg").glob("*.xml"))
    record = read_cardiosoft_xml(files[0])
    assert record.signal.shape == (5000, 12)
    assert record.subject_id == int(files[0].name.split("_")[0])
    assert record.source_lead_names[3:6] == ("aVR", "aVL", "aVF")
    assert 0.2 < np.abs(record.signal).max() < 5.0
    assert record.details["resolution"] == "5"


def test_proteomics_carry_the_three_way_xnor_signal():
    """Half the proteins load on u XNOR v, which is uncorrelated with u and with v alone."""
    cfg = UkbSynthConfig(participants=10, seed=0)
    params = draw_params(cfg)
    rng = np.random.default_rng(0)
    lat = draw_latents(rng, 20000, cfg)
    x = olink_values(rng, params, lat, 1.0)
    p, k = int(np.flatnonzero(np.abs(params.olink_xnor).sum(axis=1))[0]), None
    k = int(np.flatnonzero(params.olink_xnor[p])[0])
    corr = lambda a, b: abs(np.corrcoef(a, b)[0, 1])  # noqa: E731
    assert corr(x[:, p], lat.xnor[:, k]) > 0.4
    assert corr(x[:, p], lat.u[:, k]) < 0.05 and corr(x[:, p], lat.v[:, k]) < 0.05


@pytest.mark.parametrize(
    "kwargs",
    [{"participants": 0}, {"participants": 5, "olink_frac": 1.5}, {"participants": 5, "n_proteins": 0},
     {"participants": 5, "hes_date_format": "us"}, {"participants": 5, "seed": -1}],
)  # fmt: skip
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        UkbSynthConfig(**kwargs)


def test_cli_synth_ukb(tmp_path, capsys):
    rc = main(["synth", "ukb", "--out", str(tmp_path), "--participants", "50", "--seed", "2",
               "--ecg-frac", "0", "--hes-date-format", "iso", "--main-style", "r"])  # fmt: skip
    assert rc == 0
    assert '"ukb_main.csv": 50' in capsys.readouterr().out
    assert (tmp_path / "ukb_main.csv").read_text().startswith("eid,f.31.0.0,")
