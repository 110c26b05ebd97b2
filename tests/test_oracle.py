"""Oracle yardsticks: the Monte Carlo oracle against scorers given the true latents, the ordering
chance <= pairwise <= oracle, exact values, the density ratios' normalisation, the stage, and the
check that rejects untestable generator settings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.cli import main
from gated_symile.errors import ConfigError
from gated_symile.run_grid import dataset_ps
from gated_symile.data.misalign.draw import MisalignConfig, draw_manifest
from gated_symile.data.mimic.splits import draw_candidates
from gated_symile.synthetic.mimic.latents import coupling, draw_latents
from gated_symile.synthetic.oracle import (
    MisalignSettings,
    check_testable,
    core,
    oracle_cell,
    untestable_settings,
)
from gated_symile.synthetic.oracle.mimic import MimicDisplayModel, gaussian_log_ratio
from gated_symile.synthetic.oracle.xor import XorDisplayModel, exact_clean
from gated_symile.synthetic.ukb.config import UkbSynthConfig
from gated_symile.synthetic.xnor import (
    XnorConfig,
    generate_xnor,
    split_sizes,
    write_xnor,
)
from gated_symile.synthetic.xor import XorConfig, write_xor
from tests.workflow_helpers import REPO, snakemake

MC_SIGMAS = 4.0  # agreement within this many combined standard errors


def _agree(a: float, se_a: float, b: float, se_b: float) -> bool:
    return abs(a - b) <= MC_SIGMAS * math.hypot(se_a, se_b) + 1e-12


def _ordered(doc: dict) -> bool:
    """chance <= pairwise <= oracle, up to Monte Carlo error (at p = 1 the two oracles differ only
    through the rare self-donor terms, so their estimates may cross by noise)."""
    slack = MC_SIGMAS * max(doc["oracle_top1_se"], doc["pairwise_oracle_top1_se"]) + 1e-12
    return doc["chance"] - 1e-9 <= doc["pairwise_oracle_top1"] <= doc["oracle_top1"] + slack


def _top1(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per-query top-1 with ties shared (the evaluation's random tie-break in expectation)."""
    true = scores[np.arange(len(scores)), positive][:, None]
    return np.where((scores > true).any(axis=1), 0.0, 1.0 / (scores == true).sum(axis=1))


# ---------------------------------------------------------------- MIMIC-style, given the latents
def _mimic_latent_scorer(s: float, p: float, n: int, k: int, reps: int, seed: int) -> tuple[float, float]:
    """Draw test splits with the generator's latent model, candidates with the splits stage's
    ``draw_candidates`` and swaps with the misalign stage's ``draw_manifest``; score each candidate by
    the posterior written out here from docs/synthetic-mimic.md (swapped modality independent)."""
    w = coupling(s)
    rho, q = w * w, (1 - w) / 2
    match = (1 - q) ** 3 + 3 * q * q * (1 - q)
    credit = []
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        lat = draw_latents(rng, n, s)
        cands = draw_candidates(n, k, rng)
        manifest = draw_manifest(
            MisalignConfig(p=p, mode="swap", seed=rep), "test", np.arange(n), ("cxr", "ecg", "labs"), "cxr"
        )
        src = {m: np.where(manifest[f"corr_{m}"], manifest[f"donor_{m}"], np.arange(n)) for m in ("ecg", "labs")}
        h_e, a_e = lat.h_ecg[src["ecg"]], lat.bits("ecg")[src["ecg"]]
        f_l, b_l = lat.f_lab[src["labs"]], lat.bits("labs")[src["labs"]]
        r_h = np.exp(gaussian_log_ratio(h_e[:, None], lat.h_cxr[cands], rho))
        r_f = np.exp(gaussian_log_ratio(f_l[:, None], lat.f_cxr[cands], rho))
        xnor = (a_e == b_l)[:, None, :] == lat.bits("cxr")[cands]
        r_c = np.prod(2 * np.where(xnor, match, 1 - match), axis=2)
        posterior = (1 - p) * r_h * r_f * r_c + p / 2 * (r_h + r_f)
        credit.append(_top1(posterior, np.zeros(n, dtype=int)))
    values = np.concatenate(credit)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_mimic_oracle_matches_a_scorer_given_the_true_latents(p):
    n, k, s = 400, 10, 1.0
    meta = {"splits": {"test": n}, "candidate_n": {"test": k}}
    doc = oracle_cell("mimic", p, [meta], {"signal_strength": s}, MisalignSettings(), n_mc=8000, seed=3)
    mean, se = _mimic_latent_scorer(s, p, n, k, reps=20, seed=11)
    assert _agree(doc["oracle_top1"], doc["oracle_top1_se"], mean, se), (doc["oracle_top1"], mean)
    assert doc["chance"] == pytest.approx(1 / k)
    assert doc["chance"] < doc["pairwise_oracle_top1"] and _ordered(doc)


def test_mimic_higher_order_part_only_the_oracle_sees():
    """At p = 0 the two XNOR findings lift the oracle well above the pairwise oracle; with every
    sample misaligned they are gone and both coincide."""
    meta = {"splits": {"test": 121}, "candidate_n": {"test": 10}}
    clean = oracle_cell("mimic", 0.0, [meta], {"signal_strength": 1.0}, MisalignSettings(), n_mc=4000)
    swapped = oracle_cell("mimic", 1.0, [meta], {"signal_strength": 1.0}, MisalignSettings(), n_mc=4000)
    assert clean["oracle_top1"] - clean["pairwise_oracle_top1"] > 0.1
    assert abs(swapped["oracle_top1"] - swapped["pairwise_oracle_top1"]) < 0.02
    assert clean["chance"] < swapped["oracle_top1"] < clean["pairwise_oracle_top1"]


# ---------------------------------------------------------------- Synthetic-XNOR, given the latents
@pytest.mark.parametrize("embed_mode", ["u_v_uv", "xnor_only"])
def test_xnor_oracle_matches_a_scorer_given_the_true_latents(tmp_path, embed_mode):
    """The real generator's test split, the bits read from the exact signal coordinates, scored
    by the posterior of docs/oracle.md; few bits so that rows collide and the oracle is < 1."""
    cfg = XnorConfig(
        n_samples=20000, n_bits=4, dim=12, p=0.6, embed_mode=embed_mode, eval_batch=32, seed=5
    )
    data = generate_xnor(cfg)
    k, sizes = cfg.n_bits, split_sizes(cfg.n_samples)
    test = data["split"][sizes["train"] + sizes["val"] :]
    test = test[: (test.size // cfg.eval_batch) * cfg.eval_batch].reshape(-1, cfg.eval_batch)
    bits = {m: (data[m][:, : cfg.signal_width] > 0).astype(int) for m in ("a", "b", "c")}
    credit = []
    for block in test:
        if embed_mode == "u_v_uv":
            u_b, v_c = bits["b"][block, :k], bits["c"][block, k : 2 * k]
            u_a, v_a = bits["a"][block, :k], bits["a"][block, k : 2 * k]
            mu = (u_b[:, None] == u_a[None]).all(axis=2)
            mv = (v_c[:, None] == v_a[None]).all(axis=2)
            post = (1 - cfg.p) * mu * mv * 2.0 ** (2 * k) + cfg.p / 2 * (mu + mv) * 2.0**k
        else:
            x = (bits["b"][block] == bits["c"][block]).astype(int)  # rule(b, c) = XNOR
            post = (1 - cfg.p) * (x[:, None] == bits["a"][block][None]).all(axis=2) * 2.0**k + cfg.p
        credit.append(_top1(post, np.arange(cfg.eval_batch)))
    values = np.concatenate(credit)
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(values.size)
    write_xnor(tmp_path, cfg)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    doc = oracle_cell("xnor", cfg.p, [meta], {}, MisalignSettings(), n_mc=8000, seed=1)
    assert _agree(doc["oracle_top1"], doc["oracle_top1_se"], mean, se), (doc["oracle_top1"], mean)
    assert doc["chance"] == pytest.approx(1 / cfg.eval_batch)
    assert _ordered(doc)
    if embed_mode == "xnor_only":  # B and C are each independent of A
        assert doc["pairwise_oracle_top1"] == pytest.approx(doc["chance"])


# ---------------------------------------------------------------- binary XOR: exact values
@pytest.mark.parametrize("p_hat", [1.0, 0.7, 0.0])
def test_xor_oracle_is_exact_and_the_monte_carlo_agrees(p_hat):
    cfg = XorConfig(d=4, p_hat=p_hat, n_test=500)
    oracle, pairwise, chance = exact_clean(cfg)
    assert oracle == pytest.approx(p_hat + (1 - p_hat) / 16) and pairwise == chance == 1 / 16
    model = XorDisplayModel(cfg)
    lay = core.explicit_bank_layout(cfg.n_test, model.bank, model.bank_index)
    est = core.simulate(model, cfg.n_test, lay, core.Corruption(), n_mc=20000, seed=0)
    assert _agree(est.oracle_top1, est.oracle_top1_se, oracle, 0.0)
    assert est.pairwise_oracle_top1 == pytest.approx(chance)  # every candidate ties


def test_xor_misaligned_cell_keeps_the_ordering():
    cfg = XorConfig(d=3, n_test=400)
    model = XorDisplayModel(cfg)
    lay = core.explicit_bank_layout(cfg.n_test, model.bank, model.bank_index)
    swap = core.Corruption(p=0.5, mode="swap", modalities=("a", "c"))
    est = core.simulate(model, cfg.n_test, lay, swap, n_mc=8000, seed=0)
    # half the queries keep both modalities: b = a XOR c; the rest are at chance
    assert _agree(est.oracle_top1, est.oracle_top1_se, 0.5 + 0.5 / 8, 0.0)
    assert est.pairwise_oracle_top1 == pytest.approx(1 / 8)


# ---------------------------------------------------------------- UK-Biobank-style
def test_ukb_union_oracle_ordering_and_zero_signal():
    meta = {"splits": {"test": 300}, "counts": {"present": {"test": {"nmr": 285, "ehr": 300, "olink": 150}}}}
    gen = {"participants": 1500, "seed": 0, "n_proteins": 40, "olink_frac": 0.5}
    docs = {
        (p, s): oracle_cell("ukb_union", p, [meta], {**gen, "signal_strength": s}, MisalignSettings(), n_mc=600)
        for p in (0.0, 1.0)
        for s in (0.0, 1.0)
    }
    for doc in docs.values():
        assert doc["chance"] == pytest.approx(1 / 150) and _ordered(doc)
    clean = docs[(0.0, 1.0)]
    assert clean["chance"] < clean["pairwise_oracle_top1"] < clean["oracle_top1"]
    assert docs[(1.0, 1.0)]["oracle_top1"] < clean["oracle_top1"]
    none = docs[(0.0, 0.0)]
    assert _agree(none["oracle_top1"], none["oracle_top1_se"], none["chance"], 0.0)


# ---------------------------------------------------------------- the math
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=12), st.integers(1, 4))
def test_logsumexp_excluding_self_matches_brute_force(values, rows):
    x = np.tile(np.asarray(values), (rows, 1))
    got = core._logsumexp_excluding_self(x)
    for j in range(x.shape[1]):
        others = np.delete(x, j, axis=1)
        want = np.logaddexp.reduce(others, axis=1) if others.size else np.full(rows, -np.inf)
        np.testing.assert_allclose(got[:, j], want, rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.floats(-3, 3), st.floats(0.0, 0.95))
def test_gaussian_ratio_integrates_to_one(x, rho):
    """E_y[R(x; y)] over the target's marginal is 1 for every query value (Gauss-Hermite)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    mean = float((weights * np.exp(gaussian_log_ratio(np.asarray(x), nodes, rho))).sum() / weights.sum())
    assert mean == pytest.approx(1.0, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_xor_ratio_averages_to_one_over_the_bank(seed, p_hat):
    cfg = XorConfig(d=3, p_hat=p_hat)
    model = XorDisplayModel(cfg)
    rows = model.sample(np.random.default_rng(seed), 5)
    cands = np.broadcast_to(np.arange(8), (5, 8))
    log_r = model.log_ratio(frozenset({"a", "c"}), rows, model.bank, cands)
    np.testing.assert_allclose(np.exp(log_r).mean(axis=1), 1.0, rtol=1e-9)


def test_constant_scorer_gets_exactly_chance():
    scores = np.zeros((7, 5))
    assert core.top1_credit(scores, np.arange(7) % 5) == pytest.approx(np.full(7, 0.2))


def test_mimic_model_uses_the_generator_latents():
    rows = MimicDisplayModel(1.0).sample(np.random.default_rng(0), 4)
    assert rows["ecg"].shape == (4, 3) and rows["labs"].shape == (4, 3) and rows["cxr"].shape == (4, 4)


# ---------------------------------------------------------------- stage and untestable settings
def test_oracle_stage_writes_the_agreed_json(tmp_path):
    write_xor(tmp_path / "xor", XorConfig(d=3, n_train=20, n_val=10, n_test=50))
    out = tmp_path / "oracle" / "xor" / "p0.0.json"
    rc = main(["oracle", "--dataset", "xor", "--p", "0.0", "--tensors", str(tmp_path / "xor"), "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    for key in ("oracle_top1", "oracle_top1_se", "pairwise_oracle_top1", "pairwise_oracle_top1_se",
                "chance", "protocol", "n_mc", "seed"):  # fmt: skip
        assert key in doc
    assert doc["oracle_top1"] == 1.0 and doc["chance"] == 0.125 and doc["method"] == "exact"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--generator", "{not json"], "--generator"),
        (["--generator", "{}"], "signal_strength"),
    ],
)
def test_oracle_stage_bad_input_is_one_line(tmp_path, capsys, argv, message):
    tensors = tmp_path / "t"
    (tensors).mkdir()
    spec = {"kind": "float32", "shape": [2]}
    (tensors / "metadata.json").write_text(json.dumps({
        "format": "gated-symile-tensors/1", "dataset": "mimic", "modalities": ["cxr", "ecg", "labs"],
        "target": "cxr", "protocol": "candidates", "splits": {"test": 20},
        "inputs": {m: spec for m in ("cxr", "ecg", "labs")}, "candidate_n": {"test": 10},
    }))  # fmt: skip
    rc = main(["oracle", "--dataset", "mimic", "--p", "0", "--tensors", str(tensors), *argv,
               "--out", str(tmp_path / "o.json")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err


def _default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_testable():
    assert untestable_settings(_default_config()) == []


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("synth", "mimic", "signal_strength"), 0.0, "synth.mimic.signal_strength"),
        (("synth", "mimic", "admissions"), 4, "synth.mimic.admissions"),
        (("synth", "ukb", "signal_strength"), 0.0, "synth.ukb.signal_strength"),
        (("synth", "ukb", "participants"), 8, "synth.ukb.participants"),
        (("synth", "xor", "p_hat"), 0.0, "synth.xor.p_hat"),
    ],
)
def test_untestable_setting_is_named(path, value, key):
    config = _default_config()
    config["experiment"]["datasets"] = ["mimic", "xor", "ukb_union"]
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_testable(config)


def test_real_data_is_not_checked():
    config = _default_config()
    config["synth"]["mimic"]["signal_strength"] = 0.0
    config["raw"]["mimic"]["source"] = "external"
    assert untestable_settings(config) == []


def test_workflow_stops_at_start_naming_the_setting(tmp_path):
    cfg = tmp_path / "zero.yaml"
    cfg.write_text(yaml.safe_dump({"synth": {"mimic": {"signal_strength": 0.0}}}))
    result = snakemake(
        "-n", "--cores", "1", "--workflow-profile", "none", "--directory", tmp_path, "--configfile", cfg
    )
    assert result.returncode != 0
    assert "synth.mimic.signal_strength is 0" in result.stdout + result.stderr
    assert "rule " not in result.stdout  # nothing planned


def test_dry_run_plans_one_oracle_per_synthetic_cell(tmp_path):
    result = snakemake("-n", "--cores", "1", "--workflow-profile", "none", "--directory", tmp_path)
    assert result.returncode == 0, result.stderr
    config = _default_config()
    expected = {
        f"results/oracle/{d}/p{p}.json"
        for d in config["experiment"]["datasets"]
        for p in dataset_ps(config, d)
    }
    for target in expected:
        assert target in result.stdout
    # per-dataset seeds: two for the claims on raw records, the experiment's one elsewhere
    assert "results/runs/mimic/clip/p0.0/seed1/" in result.stdout
    assert "results/runs/ukb_union/gated_symile/p1.0/fold0/seed1/" in result.stdout
    assert "results/runs/xnor/clip/p1.0/seed0/" in result.stdout
    assert "results/runs/xnor/clip/p1.0/seed1/" not in result.stdout


def test_ukb_config_fields_are_known():
    assert {"participants", "seed", "n_proteins", "olink_frac", "signal_strength"} <= set(
        UkbSynthConfig.__dataclass_fields__
    )


@pytest.mark.parametrize(("name", "dataset"), [("paper-mimic", "mimic"), ("paper-ukb", "ukb_union")])
def test_paper_configs_do_not_inherit_the_cpu_sized_recipe(name, dataset):
    """--configfile deep-merges over config.yaml: every key of the CPU-sized default recipe must be
    given its paper value, or the paper-scale run would train a shrunken network."""
    from snakemake.utils import update_config

    from gated_symile.config import resolve_run_config

    config = _default_config()
    update_config(config, yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))
    for method in ("clip", "symile", "gated_symile"):
        run = resolve_run_config(config, dataset, method, 0)
        assert run.train.weight_decay == 0.0
        assert all(e.pool == 1 for e in run.model.encoders.values())
        if method == "gated_symile":
            assert run.gate.strength_init == 0.0 and run.train.lr_gate_mul == 1.0
    if dataset == "mimic":
        encoders = resolve_run_config(config, dataset, "clip", 0).model.encoders
        assert encoders["cxr"].blocks == (3, 4, 6, 3) and encoders["ecg"].blocks == (2, 2, 2, 2)
        assert encoders["labs"].hidden == (256, 1024)


def test_same_settings_same_document():
    meta = {"splits": {"test": 60}, "candidate_n": {"test": 10}}
    docs = [
        oracle_cell("mimic", 0.5, [meta], {"signal_strength": 1.0}, MisalignSettings(), n_mc=500, seed=4)
        for _ in range(2)
    ]
    assert json.dumps(docs[0], sort_keys=True) == json.dumps(docs[1], sort_keys=True)
