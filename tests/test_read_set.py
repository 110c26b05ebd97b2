"""What a stage read (``ReadSet``) and the digest of a selective folder entry (``tree_digest``)."""

from __future__ import annotations

import hashlib
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.provenance.hashing import sorted_tree_digest, tree_digest
from gated_symile.provenance.read_set import OpenedFile, ReadSet, active, recording


def _file(rel: str) -> OpenedFile:
    return OpenedFile(rel, 1, 2, "0" * 64)


def test_under_keys_files_relative_to_the_folder_whatever_folder_they_were_noted_under(tmp_path):
    """Files are noted under the folder a reader used (a release root, a table's own folder, a
    folder above); ``under`` gives each folder exactly the files below it."""
    release, hosp = tmp_path / "mimic-iv", tmp_path / "mimic-iv" / "hosp"
    reads = ReadSet()
    reads.add_opened(release, [_file("files/a.dat"), _file("hosp/x.csv.gz")])
    reads.add_opened(hosp, [_file("labevents.csv.gz")])  # noted under a folder inside
    reads.add_opened(tmp_path, [_file("mimic-iv/files/b.dat"), _file("other/c.dat")])  # above
    reads.add_checked(release, ["files/img.jpg", "files/gone.jpg"], [True, False])
    below = reads.under(release)
    assert [f.path for f in below.opened()] == ["files/a.dat", "files/b.dat", "hosp/labevents.csv.gz", "hosp/x.csv.gz"]
    assert list(below.checked()) == [("files/gone.jpg", False), ("files/img.jpg", True)]
    assert (below.n_opened, below.n_checked) == (4, 2)
    assert [f.path for f in reads.under(hosp).opened()] == ["labevents.csv.gz", "x.csv.gz"]
    empty = reads.under(tmp_path / "mimic")  # a name prefix is not a folder
    assert (empty.n_opened, empty.n_checked) == (0, 0)
    reads.close()


def test_a_file_noted_twice_keeps_its_last_entry_and_partial_reads_are_named(tmp_path):
    reads = ReadSet()
    reads.add_opened(tmp_path, [_file("a.dcm"), OpenedFile("b.dcm", 9, 2, "1" * 64, nbytes=4)])
    reads.add_opened(tmp_path, [OpenedFile("a.dcm", 5, 3, "2" * 64)])
    reads.add_checked(tmp_path, ["c.jpg"], [False])
    below = reads.under(tmp_path)
    assert list(below.opened()) == [OpenedFile("a.dcm", 5, 3, "2" * 64), OpenedFile("b.dcm", 9, 2, "1" * 64, 4)]
    assert below.partial() == ["b.dcm"]
    reads.close()


def test_noting_many_files_holds_no_python_objects_per_file(tmp_path):
    """The read set lives on disk: noting 100,000 files grows the traced Python memory by far
    less than the ~30 MB their objects took (which grew the stages' peak memory with the cohort)."""
    reads = ReadSet()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for block in range(25):
        reads.add_opened(tmp_path, (_file(f"files/p{block}/r{i:06d}.dat") for i in range(4000)))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert reads.under(tmp_path).n_opened == 100_000
    assert grown < 2 * 2**20, f"{grown / 2**20:.1f} MB held for 100,000 noted files"
    reads.close()


def test_recording_is_active_only_inside_its_block():
    assert active() is None
    with recording() as reads:
        assert active() is reads
    assert active() is None


def _tree_digest_reference(files: dict, checked: dict) -> str:
    """The digest as first written (a dict of every line, then sorted): stored manifests hold it,
    so the leaner implementation must give the same bytes."""
    lines = {rel: f"{rel}\t{size}\t{sha}\n" for rel, (size, sha) in files.items()}
    for rel, present in checked.items():
        lines.setdefault(rel, f"{rel}\t{'present' if present else 'absent'}\n")
    digest = hashlib.sha256()
    for rel in sorted(lines):
        digest.update(lines[rel].encode())
    return digest.hexdigest()


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    files=st.dictionaries(names, st.tuples(st.integers(0, 10**12), st.text("0123456789abcdef", min_size=64, max_size=64))),
    checked=st.dictionaries(names, st.booleans()),
)
def test_tree_digest_is_unchanged_for_stored_manifests(files, checked):
    assert tree_digest(files, checked) == _tree_digest_reference(files, checked)


@settings(max_examples=40, deadline=None)
@given(
    files=st.dictionaries(names, st.tuples(st.integers(0, 10**12), st.text("0123456789abcdef", min_size=64, max_size=64))),
    checked=st.dictionaries(names, st.booleans()),
)
def test_digest_streamed_from_the_read_set_is_the_tree_digest(files, checked):
    """The manifest digests the read set sorted by SQLite; Python's order of the names must give
    the same bytes (stored manifests are audited against :func:`tree_digest`)."""
    reads = ReadSet()
    reads.add_opened("/r", [OpenedFile(rel, size, 0, sha) for rel, (size, sha) in files.items()])
    reads.add_checked("/r", list(checked), list(checked.values()))
    assert sorted_tree_digest(reads.under("/r").digest_entries()) == tree_digest(files, checked)
    reads.close()
