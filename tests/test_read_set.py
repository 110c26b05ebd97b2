"""What a stage read (``ReadSet``) and the digest of a selective folder entry (``tree_digest``)."""

from __future__ import annotations

import hashlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.provenance.hashing import tree_digest
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
    opened, checked = reads.under(release)
    assert sorted(opened) == ["files/a.dat", "files/b.dat", "hosp/labevents.csv.gz", "hosp/x.csv.gz"]
    assert checked == {"files/img.jpg": True, "files/gone.jpg": False}
    assert sorted(reads.under(hosp)[0]) == ["labevents.csv.gz", "x.csv.gz"]
    assert reads.under(tmp_path / "mimic") == ({}, {})  # a name prefix is not a folder


def test_under_a_folder_noted_alone_is_the_stored_map_not_a_copy(tmp_path):
    """The tensors stage notes ~37 000 files under two roots; ``under`` must not copy them."""
    reads = ReadSet()
    reads.add_opened(tmp_path / "ecg", [_file("r.hea")])
    assert reads.under(tmp_path / "ecg")[0] is reads.opened[os.path.abspath(tmp_path / "ecg")]


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
