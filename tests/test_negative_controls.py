"""Negative controls that prove the joins of the raw-record path (issue 9, point 4).

A wrong join (an ECG of the wrong admission, a radiograph of another subject, an off-by-one row
in a tensor file) leaves every stage running and every file well-formed; only the numbers can
show it. So the tests build a release, break one join on purpose, run the real chain
(cohort -> splits -> tensors -> train -> evaluate, through the CLI) and read the retrieval top-1:

- the release as generated: every method well above chance;
- the same release with the target modality reassigned across subjects (MIMIC-style: each
  admission's radiograph replaced by another admission's; UKB-style: each participant's Olink
  panel given to another participant): every method at chance, since no query carries any
  information about which candidate is its own;
- the good tensors with one file rolled by one row: the *join probes* (below) of the affected
  modality fall to chance, so a shifted row in any tensor file fails the check the first item
  relies on. Test-split files are rolled under the run trained on the good tensors (evaluation
  only); one training-side case (UKB ``nmr.npy`` in train and val, retrained) shows that a shift
  the model trains on is caught the same way. ``index.parquet`` holds no model input: its join
  (row i = admission i of the split) is checked against the splits stage's table.

**Join probes.** CLIP scores a candidate by a sum over the query modalities (docs/method.md §5),
so evaluating the CLIP run with every query modality but one marked missing (``<m>_present.npy``
False; a missing modality contributes nothing, docs/method.md §9) ranks the candidates with that
one modality's join alone. The generators put a pairwise signal in each query–target join (MIMIC:
heart size ECG–CXR, fluid labs–CXR; UKB: the shared latent NMR–Olink and EHR–Olink;
docs/synthetic-mimic.md, docs/synthetic-ukb.md), so on good tensors every probe is above chance,
and a broken join shows up in its own probe even where the other join keeps the full retrieval
above chance: with the labs rows of the tensors stage shifted by one (a deliberate bug, tried
once), CLIP still scored 45 of 240 on the full task, while the labs probe fell to 17 of 240.

**Decision rule.** Top-1 is a count of hits among n test queries; its interval is the exact
(Clopper–Pearson) 99.9 % binomial interval (``negative_controls.Top1``, ``LEVEL``). *Above chance*:
the interval's lower end exceeds the chance level ``1 / pool`` reported by the evaluation. *At
chance*: the interval contains it. Under a broken join the positive is exchangeable with the other
candidates, so the hit count is a sum of Bernoulli(1 / pool) draws and chance lies inside the
interval. (The evaluation's bootstrap interval is not used: with a bank of about 300 candidates a
broken join scores 0-3 hits, and a percentile bootstrap of 0 hits is the point [0, 0].)

**Why these do not flake.** Nothing here is random at test time: the generators, the cohort, the
splits, the candidate draws, the permutations (``derangement`` with a fixed seed), the training
(fixed model seed, one thread, CPU) and the evaluation's tie-break are all seeded, so every run on
one machine gives the same counts (same config and seed give byte-identical outputs: the project's
determinism rule, which the resume tests check for training). Another processor type or library
build changes the last digits of training and so draws every count afresh; the interval level
(``LEVEL``) is set for the whole family of decisions so that such a draw almost never puts a null
count outside its interval. Counts (``-s`` prints every one), MIMIC-style, chance 0.10 among 10
candidates: good releases 70-90 hits of 240 (99.9 % lower bounds >= 0.20), join probes 46-47 of
240 (lower bounds >= 0.117), permuted and rolled 12-28 of 240 (the 12: see ``LEVEL``); UKB-style,
chance 0.0034 in a bank of about 296: good 67-107 hits (lower bounds >= 0.15), the weak EHR probe
14 of 295 (lower bound 0.017), broken joins 0-3 hits (upper bounds >= 0.025), measured on an AMD
EPYC and an Intel Xeon. A failure therefore means the code changed (a broken join, or a
generator/recipe change that erased the signal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.negative_controls import (
    Top1,
    cli,
    evaluate,
    keep_only_query,
    mimic_tensors,
    permute_cxr_release,
    permute_olink_release,
    roll_rows,
    run_config,
    tensor_copy,
    train,
    ukb_tensors,
    write_lean_mimic_release,
)

pytestmark = pytest.mark.slow

METHODS = ("clip", "symile", "gated_symile")

# MIMIC-style: 1500 admissions (all enter the cohort), 1000 for training, 150 for validation,
# about 240 test queries among 10 candidates; radiographs rendered at 64 px, tensors at 16 px
# (the findings are global: heart size, haze, effusion, pacemaker).
MIMIC_ADMISSIONS = 1500
MIMIC_SPLIT = {"train_n": 1000, "val_n": 150, "cxr_size": 16}
MIMIC_RECIPE = {
    "model": {
        "embed_dim": 32,
        "encoders": {
            "cxr": {"arch": "resnet18", "width": 8, "blocks": [1, 1, 1, 1]},
            "ecg": {"arch": "ecg_resnet18_1d", "width": 8, "blocks": [1, 1, 1, 1], "pool": 20},
            "labs": {"arch": "mlp_gelu", "hidden": [128], "dropout": 0.2},
        },
    },
    "gate": {"d_k": 32},
    "train": {"epochs": 6, "patience": 0, "batch_size": 32, "lr": 2.0e-3, "weight_decay": 0.05},
}
MIMIC_QUERIES = ("ecg", "labs")

# UKB-style union cohort, fold 0: 3000 participants, half with Olink (about 300 test queries
# against a bank of about 300 Olink panels), no ECG XML files (not a modality of the cohort).
UKB_SYNTH = ("--participants", 3000, "--n-proteins", 40, "--olink-frac", 0.5, "--ecg-frac", 0,
             "--signal-strength", 1.5)  # fmt: skip
UKB_RECIPE = {
    "model": {
        "embed_dim": 32,
        "encoders": {
            "nmr": {"arch": "tabular_mlp", "hidden": [128], "dropout": 0.1},
            "ehr": {"arch": "tabular_mlp", "hidden": [128], "dropout": 0.3},
            "olink": {"arch": "tabular_mlp", "hidden": [128], "dropout": 0.1},
        },
    },
    "gate": {"d_k": 32},
    "train": {"epochs": 15, "patience": 0, "batch_size": 128, "lr": 1.0e-3, "weight_decay": 0.1},
}
UKB_QUERIES = ("nmr", "ehr")


class Chain:
    """One dataset's good and permuted tensors; trains and evaluates each (release, method) once."""

    def __init__(self, root: Path, dataset: str, recipe: dict, good: Path, permuted: Path) -> None:
        self.root, self.dataset, self.recipe = root, dataset, recipe
        self.tensors = {"good": good, "permuted": permuted}
        self._runs: dict[tuple[str, str], Path] = {}
        self._probes: dict[tuple[str, str, str], Top1] = {}

    def run(self, release: str, method: str) -> Path:
        """The run of ``method`` trained on ``release`` (a key of ``tensors``), trained once."""
        key = (release, method)
        if key not in self._runs:
            config = run_config(self.dataset, method, self.recipe)
            self._runs[key] = train(self.tensors[release], self.root / f"run-{release}-{method}", config)
        return self._runs[key]

    def top1(self, release: str, method: str) -> Top1:
        run = self.run(release, method)
        return Top1.of(evaluate(run, self.tensors[release], run / "metrics.json"))

    def probe(self, tensors: str, query: str, queries: tuple[str, ...], trained_on: str = "good") -> Top1:
        """Top-1 of the CLIP run trained on ``trained_on`` over the test split of ``tensors``
        (keys of ``tensors``) with only ``query`` present."""
        key = (tensors, query, trained_on)
        if key not in self._probes:
            name = f"probe-{tensors}-{query}-{trained_on}"
            probe = tensor_copy(self.tensors[tensors], self.root / name)
            keep_only_query(probe, "test", query, queries)
            run = self.run(trained_on, "clip")
            self._probes[key] = Top1.of(evaluate(run, probe, self.root / f"{name}.json"))
        return self._probes[key]

    def rolled(self, file: str, splits: tuple[str, ...]) -> str:
        """Key of the good tensors with ``file`` rolled by one row in ``splits``."""
        key = f"rolled-{file}-{'-'.join(splits)}"
        if key not in self.tensors:
            self.tensors[key] = tensor_copy(self.tensors["good"], self.root / key)
            for split in splits:
                roll_rows(self.tensors[key] / split / file)
        return key


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Chain:
    root = tmp_path_factory.mktemp("negctl_mimic")
    write_lean_mimic_release(root / "raw", MIMIC_ADMISSIONS, signal_strength=1.5)
    good = mimic_tensors(root / "raw", root / "good", **MIMIC_SPLIT)
    permute_cxr_release(root / "raw", root / "good" / "cohort", root / "raw_permuted", seed=0)
    permuted = mimic_tensors(root / "raw_permuted", root / "permuted", **MIMIC_SPLIT)
    return Chain(root, "mimic", MIMIC_RECIPE, good, permuted)


@pytest.fixture(scope="module")
def ukb(tmp_path_factory) -> Chain:
    root = tmp_path_factory.mktemp("negctl_ukb")
    cli("synth", "ukb", "--out", root / "raw", *UKB_SYNTH)
    permute_olink_release(root / "raw", root / "raw_permuted", seed=0)
    good = ukb_tensors(root / "raw", root / "good", "union")
    permuted = ukb_tensors(root / "raw_permuted", root / "permuted", "union")
    return Chain(root, "ukb_union", UKB_RECIPE, good, permuted)


def test_mimic_permuted_release_differs_only_in_the_cxr_join(mimic: Chain) -> None:
    """The permuted release yields the same cohort, splits and candidate sets, row for row; ECG
    and labs tensors are byte-identical and every test radiograph differs: the control changes
    the admission -> CXR join and nothing else."""
    root = mimic.root
    keys = ["subject_id", "hadm_id", "ecg_path", "cxr_path"]
    good, permuted = (pd.read_parquet(root / r / "cohort" / "cohort.parquet", columns=keys)
                      for r in ("good", "permuted"))  # fmt: skip
    pd.testing.assert_frame_equal(good, permuted)
    for split in ("train", "val", "test"):
        g, p = (mimic.tensors[r] / split for r in ("good", "permuted"))
        for name in ("ecg.npy", "labs.npy", "index.parquet") + (("candidates.npy",) if split != "train" else ()):
            assert (g / name).read_bytes() == (p / name).read_bytes(), f"{split}/{name}"
    cxr_good, cxr_permuted = (np.load(mimic.tensors[r] / "test" / "cxr.npy") for r in ("good", "permuted"))
    same = (cxr_good == cxr_permuted).all(axis=(1, 2))
    assert not same.any(), f"{same.sum()} of {same.size} test radiographs kept their admission"


@pytest.mark.parametrize("method", METHODS)
def test_mimic_release_is_above_chance_and_permuted_cxr_at_chance(mimic: Chain, method: str) -> None:
    """MIMIC-style raw path: each method is above chance on the release as generated and at chance
    once every admission's radiograph belongs to another admission (decision rule: module
    docstring)."""
    good, permuted = mimic.top1("good", method), mimic.top1("permuted", method)
    print(f"mimic {method}: good {good}; permuted {permuted}")
    assert good.above_chance, f"{method} on the good release: {good}"
    assert permuted.at_chance, f"{method} on the permuted release: {permuted}"


@pytest.mark.parametrize("method", METHODS)
def test_ukb_union_release_is_above_chance_and_permuted_olink_at_chance(ukb: Chain, method: str) -> None:
    """UKB-style union cohort: each method is above chance on the release as generated and at
    chance once every participant's Olink panel belongs to another participant."""
    good, permuted = ukb.top1("good", method), ukb.top1("permuted", method)
    print(f"ukb_union {method}: good {good}; permuted {permuted}")
    assert good.above_chance, f"{method} on the good release: {good}"
    assert permuted.at_chance, f"{method} on the permuted release: {permuted}"


# Which join probes a rolled file breaks: a query modality's array its own probe, the target's
# array or the candidate sets every probe.
MIMIC_ROLLS = {"ecg.npy": ("ecg",), "labs.npy": ("labs",), "cxr.npy": MIMIC_QUERIES,
               "candidates.npy": MIMIC_QUERIES}  # fmt: skip
UKB_ROLLS = {"nmr.npy": ("nmr",), "ehr.npy": ("ehr",), "olink.npy": UKB_QUERIES}


def check_probes(chain: Chain, queries: tuple[str, ...], tensors: str, broken: tuple[str, ...],
                 trained_on: str = "good", others_above: bool = True) -> None:  # fmt: skip
    """Every join probe is above chance on the good tensors with the good run; on ``tensors``
    with the run trained on ``trained_on`` the probes of the ``broken`` joins are at chance and
    (``others_above``) the others stay above."""
    for query in queries:
        good = chain.probe("good", query, queries)
        after = chain.probe(tensors, query, queries, trained_on)
        print(f"{chain.dataset} {query} probe: good {good}; {tensors} (trained on {trained_on}) {after}")
        assert good.above_chance, f"{query} join on the good tensors: {good}"
        if query in broken:
            assert after.at_chance and not after.above_chance, f"{query} join, {tensors}: {after}"
        elif others_above:
            assert after.above_chance, f"{query} join, {tensors} (not its join): {after}"


@pytest.mark.parametrize("file", sorted(MIMIC_ROLLS))
def test_mimic_rolled_tensor_file_breaks_its_join(mimic: Chain, file: str) -> None:
    """A test-split file rolled by one row, evaluated with the run trained on the good tensors."""
    check_probes(mimic, MIMIC_QUERIES, mimic.rolled(file, ("test",)), MIMIC_ROLLS[file])


@pytest.mark.parametrize("file", sorted(UKB_ROLLS))
def test_ukb_rolled_tensor_file_breaks_its_join(ukb: Chain, file: str) -> None:
    check_probes(ukb, UKB_QUERIES, ukb.rolled(file, ("test",)), UKB_ROLLS[file])


def test_ukb_rolled_training_file_breaks_its_join(ukb: Chain) -> None:
    """The shift on the training side: ``nmr.npy`` rolled in train and val, CLIP retrained on it
    and evaluated on the good test split: the NMR join was never learned. (The weak EHR join is
    not asserted here: training on a scrambled NMR input also costs it, 6 hits of 295 against 14
    with the good run, too close to chance for a margin.)"""
    rolled = ukb.rolled("nmr.npy", ("train", "val"))
    check_probes(ukb, UKB_QUERIES, "good", ("nmr",), trained_on=rolled, others_above=False)


def test_mimic_rolled_index_breaks_the_admission_join(mimic: Chain) -> None:
    """``index.parquet`` carries no model input, so no top-1 can see it shifted; its join is to the
    splits stage's table: row i of the tensors is admission i of that split, which a rolled index
    contradicts."""
    splits = mimic.root / "good" / "splits"
    expected = pd.read_parquet(splits / "test.parquet", columns=["hadm_id"])["hadm_id"].to_numpy()

    def admissions(tensors: str) -> np.ndarray:
        index = mimic.tensors[tensors] / "test" / "index.parquet"
        return pd.read_parquet(index, columns=["sample_id"])["sample_id"].to_numpy()

    np.testing.assert_array_equal(admissions("good"), expected)
    assert (admissions(mimic.rolled("index.parquet", ("test",))) != expected).all()
