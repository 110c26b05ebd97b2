"""Hashing, the hash cache and the stage manifests that ``gated_symile.cli.main`` writes."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import pytest

from gated_symile.provenance import manifests
from gated_symile.errors import GatedSymileError
from gated_symile.cli import build_parser, main
from gated_symile.provenance.hash_cache import CACHE_ENV, HashCache, cache_location
from gated_symile.provenance.hashing import (
    MANIFEST_NAME,
    Hasher,
    file_sha256,
    is_manifest,
    tree_digest,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache.sqlite"))


def _tree(root: Path) -> Path:
    for rel, data in {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)) * 10, "sub/deep/c": b""}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_file_sha256_is_plain_sha256(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_tree_digest_lists_files_and_skips_manifests(tmp_path):
    root = _tree(tmp_path / "t")
    (root / MANIFEST_NAME).write_text("{}")
    (root / "sub" / "b.bin.provenance.json").write_text("{}")
    (root / "provenance.json.inputs-0.files.jsonl.gz").write_bytes(b"")  # list sidecars
    (root / "sub" / "b.bin.provenance.json.outputs-1.files.jsonl.gz").write_bytes(b"")
    (root / "sub" / "data.files.jsonl.gz").write_bytes(b"")  # a data file of that shape
    with Hasher() as hasher:
        digest = hasher.hash(root)
    assert sorted(digest.files) == ["a.txt", "sub/b.bin", "sub/data.files.jsonl.gz", "sub/deep/c"]
    assert digest.files["a.txt"] == (5, hashlib.sha256(b"alpha").hexdigest())
    assert digest.sha256 == tree_digest(digest.files) and digest.size == 5 + 2560
    assert sorted(p.name for p in digest.manifests) == ["b.bin.provenance.json", MANIFEST_NAME]
    assert is_manifest("x/provenance.json") and is_manifest("m.json.provenance.json") and not is_manifest("p.json")


def test_skip_owned_leaves_out_what_other_stages_recorded(tmp_path):
    root = _tree(tmp_path / "run")
    (root / "metrics.json").write_text("{}")
    (root / "metrics.json.provenance.json").write_text("{}")
    (root / "sub" / "deep" / MANIFEST_NAME).write_text("{}")
    with Hasher() as hasher:
        assert sorted(hasher.hash(root, skip_owned=True).files) == ["a.txt", "sub/b.bin"]
        assert sorted(hasher.hash(root).files) == ["a.txt", "metrics.json", "sub/b.bin", "sub/deep/c"]
        assert sorted(hasher.hash(root, exclude=[root / "sub"]).files) == ["a.txt", "metrics.json"]


def test_tree_walk_follows_links_once_and_keys_the_cache_by_real_path(tmp_path):
    """Links to files and folders are followed (raw releases are often linked in), a loop is
    walked once, the listing is in walk order, and a file reached through a link hits the cache
    entry of its target."""
    outside = _tree(tmp_path / "outside")
    root = _tree(tmp_path / "t")
    (root / "linked_dir").symlink_to(outside / "sub", target_is_directory=True)
    (root / "linked_file").symlink_to(outside / "a.txt")
    (root / "sub" / "loop").symlink_to(root / "sub", target_is_directory=True)
    with Hasher() as hasher:
        hasher.hash(outside)  # caches the targets under their real paths
        digest = hasher.hash(root)
    assert list(digest.files) == [
        "a.txt", "linked_file", "linked_dir/b.bin", "linked_dir/deep/c", "sub/b.bin", "sub/deep/c",
    ]  # fmt: skip
    assert digest.files["linked_file"] == digest.files["a.txt"]
    assert digest.read == 3 and digest.cached == 3  # the linked files were hashed via outside/


def test_tree_walk_lists_each_real_folder_once_without_remembering_every_folder(tmp_path):
    """A link into the root's own tree is not followed (its folder is listed where it lies), and
    of two links to nested folders outside, the narrower one's files are listed once; only the
    link targets are remembered, not every folder walked (a folder per record at real scale)."""
    from gated_symile.provenance.hashing import _TreeWalk

    outside = _tree(tmp_path / "outside")
    root = _tree(tmp_path / "t")
    (root / "0_to_sub").symlink_to(root / "sub", target_is_directory=True)  # sorts before sub/
    (root / "1_deep").symlink_to(outside / "sub" / "deep", target_is_directory=True)
    (root / "2_out").symlink_to(outside, target_is_directory=True)
    (root / "3_in_out").symlink_to(outside / "sub", target_is_directory=True)
    with Hasher() as hasher:
        walk = _TreeWalk(hasher, root, set(), False, None, None)
        files = list(walk.run(root).files)
    assert files == [
        "a.txt", "1_deep/c", "2_out/a.txt", "2_out/sub/b.bin", "sub/b.bin", "sub/deep/c",
    ]  # fmt: skip
    assert walk.linked_dirs == {os.path.realpath(outside / "sub" / "deep"), os.path.realpath(outside)}


def test_threaded_batches_give_the_sequential_listing(tmp_path, monkeypatch):
    """Large uncached files are read by a thread pool in batches; the listing (order, sizes,
    digests) and the cache must be exactly what one thread reading in walk order gives."""
    from gated_symile.provenance import hashing as provenance

    root = tmp_path / "t"
    for i in range(23):
        (root / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 4}" / f"f{i:02d}").write_bytes(bytes([i]) * (10 + 7000 * (i % 3)))
    with Hasher() as hasher:
        sequential = hasher.hash(root)
    monkeypatch.setattr(provenance, "READ_BATCH", 3)
    monkeypatch.setattr(provenance, "THREADED_MIN_BYTES", 100)  # two thirds go to the threads
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "other.sqlite"))
    with Hasher() as hasher:
        threaded = hasher.hash(root)
        again = hasher.hash(root)
    assert list(threaded.files.items()) == list(sequential.files.items())
    assert threaded.sha256 == sequential.sha256 and threaded.read == 23
    assert again.cached == 23 and again.sha256 == sequential.sha256
    for rel, (size, sha) in threaded.files.items():
        assert sha == file_sha256(root / rel) and size == (root / rel).stat().st_size


def _denied_for(suffix: str, call):
    """``call`` that fails with EACCES for paths ending in ``suffix`` (a permission problem)."""

    def wrapped(path):
        if str(path).endswith(suffix):
            raise PermissionError(13, "Permission denied")
        return call(path)

    return wrapped


def test_an_unreadable_file_is_an_error_naming_it(tmp_path, monkeypatch):
    from gated_symile.provenance import hashing as provenance

    root = _tree(tmp_path / "t")
    monkeypatch.setattr(provenance, "file_sha256", _denied_for("b.bin", provenance.file_sha256))
    for threaded_min in (1 << 30, 1):  # read by the walking thread, then by the pool
        monkeypatch.setattr(provenance, "THREADED_MIN_BYTES", threaded_min)
        with Hasher() as hasher, pytest.raises(GatedSymileError, match="b.bin: cannot hash"):
            hasher.hash(root)


def test_an_unlistable_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    monkeypatch.setattr(os, "scandir", _denied_for("deep", os.scandir))
    with Hasher() as hasher, pytest.raises(GatedSymileError, match="deep: cannot list"):
        hasher.hash(root)


def test_cache_hits_skip_reading_and_changes_are_reread(tmp_path):
    root = _tree(tmp_path / "t")
    cache_file = tmp_path / "own.sqlite"
    with Hasher(HashCache(cache_file)) as hasher:
        first = hasher.hash(root)
    assert (first.read, first.cached) == (3, 0)
    with Hasher(HashCache(cache_file)) as hasher:  # a new process: the cache is on disk
        second = hasher.hash(root)
        assert (second.read, second.cached) == (0, 3) and second.sha256 == first.sha256
        (root / "a.txt").write_bytes(b"alphA")
        st = (root / "a.txt").stat()
        os.utime(root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        third = hasher.hash(root)
        assert (third.read, third.cached) == (1, 2) and third.sha256 != first.sha256
        single = hasher.hash(root / "a.txt")
        assert (single.kind, single.read, single.cached) == ("file", 0, 1)
    with Hasher(HashCache(cache_file), use_cache=False) as hasher:
        assert hasher.hash(root).read == 3


def test_cache_location_and_a_broken_cache_falls_back_to_reading(tmp_path, monkeypatch):
    assert cache_location("off") is None and cache_location(str(tmp_path / "c.db")) == tmp_path / "c.db"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_location() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_location() == tmp_path / "xdg" / "gated-symile" / "sha256.sqlite"
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    root = _tree(tmp_path / "t")
    with pytest.warns(UserWarning, match="hash cache disabled"), Hasher(HashCache(broken)) as hasher:
        assert hasher.hash(root).read == 3


def test_convention_outputs_inputs_and_declared_strings(tmp_path):
    existing = _tree(tmp_path / "in")
    args = argparse.Namespace(
        func=print, out=tmp_path / "o", out_extra=tmp_path / "o2", data=existing,
        absent=tmp_path / "nope", name="text", config=str(existing / "a.txt"), inline='{"a": 1}',
        _provenance_spec=manifests.ProvenanceSpec(inputs=("config", "inline")),
    )  # fmt: skip
    inputs, outputs = manifests.stage_paths(args)
    assert outputs == [("out", tmp_path / "o"), ("out_extra", tmp_path / "o2")]
    assert inputs == [("config", existing / "a.txt"), ("data", existing)]
    assert "_provenance_spec" not in manifests.stage_config(args)
    for argv in (["inspect", "some.dat"], ["audit", "results"]):
        assert manifests.StageRecorder.start(build_parser().parse_args(argv), argv) is None


def test_file_output_manifest_beside_it_with_producers(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    upstream = _tree(tmp_path / "up")
    manifests.write_manifest({"format": manifests.FORMAT, "outputs": [
        {"path": "up", "abspath": str(upstream), "kind": "dir", "sha256": "0" * 64, "size": 0}]},
        tmp_path / MANIFEST_NAME)  # fmt: skip
    out = tmp_path / "res" / "table.csv"
    args = argparse.Namespace(func=print, out=out, src=upstream / "sub")
    recorder = manifests.StageRecorder.start(args, ["fake", "--out", str(out)])
    out.parent.mkdir()
    out.write_text("x\n")
    written = recorder.finish()
    assert written == out.with_name("table.csv.provenance.json")
    doc = manifests.read_manifest(written)
    assert doc["slurm_job_id"] == "4242" and doc["stage"] == "fake"
    (entry,) = doc["inputs"]
    assert entry["path"] == "../up/sub" and entry["kind"] == "dir" and sorted(entry["files"]) == ["b.bin", "deep/c"]
    assert entry["producers"] == [{"path": "../provenance.json", "sha256": file_sha256(tmp_path / MANIFEST_NAME)}]
    assert doc["outputs"][0]["sha256"] == hashlib.sha256(b"x\n").hexdigest()


def test_stage_manifest_written_by_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    xor = tmp_path / "xor"
    assert main(["synth", "xor", "--out", str(xor), "--d", "2", "--n-train", "40", "--n-val", "8",
                 "--n-test", "8"]) == 0  # fmt: skip
    doc = json.loads((xor / MANIFEST_NAME).read_text())
    assert doc["format"] == manifests.FORMAT and doc["stage"] == "synth xor" and doc["inputs"] == []
    assert doc["config"]["d"] == 2 and doc["config_sha256"] == manifests.config_sha256(doc["config"])
    assert doc["slurm_job_id"] == "777" and doc["host"] and doc["started"] <= doc["finished"]
    assert set(doc["code"]) == {"package", "version", "git_commit", "git_dirty"}
    tools = doc["tools"]
    assert {"python", "snakemake", "torch", "duckdb", "polars", "pydicom", "wfdb", "numpy", "mlflow"} <= set(tools)
    assert tools["numpy"] and tools["torch"] and tools["python"].count(".") == 2
    (out,) = doc["outputs"]
    assert out["path"] == "." and "metadata.json" in out["files"] and MANIFEST_NAME not in out["files"]
    assert out["files"]["metadata.json"][1] == file_sha256(xor / "metadata.json")

    mis = tmp_path / "mis"
    assert main(["misalign", "--tensors", str(xor), "--out", str(mis), "--p", "0.5", "--mode", "drop"]) == 0
    (entry,) = json.loads((mis / MANIFEST_NAME).read_text())["inputs"]
    assert entry["arg"] == "tensors" and entry["path"] == "../xor"
    assert entry["producers"] == [{"path": "../xor/provenance.json", "sha256": file_sha256(xor / MANIFEST_NAME)}]
    digest = manifests.inputs_digest([xor, mis])
    assert digest is not None and digest == manifests.inputs_digest([mis, xor])
    assert manifests.inputs_digest([tmp_path / "nothing", None]) is None
    # a failing stage writes no manifest
    assert main(["misalign", "--tensors", str(xor), "--out", str(tmp_path / "bad"), "--p", "2", "--mode", "drop"]) == 2
    assert not (tmp_path / "bad" / MANIFEST_NAME).exists()


def test_selective_digest_reads_only_the_selection(tmp_path, monkeypatch):
    """Selected files are hashed (a header only by its first bytes), checked files by presence;
    the others are listed by size and mtime and never opened."""
    from gated_symile.provenance import hashing as provenance
    from gated_symile.provenance.hashing import Selection

    root = _tree(tmp_path / "t")
    (root / "big.dat").write_bytes(b"z" * 5000)
    monkeypatch.setattr(provenance, "file_sha256", _denied_for("big.dat", provenance.file_sha256))
    selection = Selection({"a.txt": None, "sub/b.bin": 100}, checked=("sub/deep/c", "gone.jpg"))
    with Hasher() as hasher:
        digest = hasher.hash(root, selection=selection)
        streamed: list[tuple] = []
        hasher.list_files(root, lambda *row: streamed.append(row))
    assert digest.files == {
        "a.txt": (5, hashlib.sha256(b"alpha").hexdigest()),
        "sub/b.bin": (100, hashlib.sha256((bytes(range(256)) * 10)[:100]).hexdigest()),
    }
    assert digest.partial == ["sub/b.bin"] and digest.checked == {"sub/deep/c": True, "gone.jpg": False}
    assert set(digest.unread) == {"big.dat", "sub/b.bin"} and digest.unread["big.dat"][0] == 5000
    assert digest.sha256 == tree_digest(digest.files, digest.checked) and digest.size == 5 + 2560 + 5000
    with pytest.raises(TypeError, match="StageRecorder"):
        digest.record()  # one route writes selective entries: the recorder's stream
    assert [row[0] for row in streamed] == ["a.txt", "big.dat", "sub/b.bin", "sub/deep/c"]
    assert streamed[1][1:] == (5000, (root / "big.dat").stat().st_mtime_ns)


def _list_when_flagged(root: Path, flag: Path, sink) -> object:
    """A listing walk (run in the listing's process) that starts once ``flag`` exists."""
    import time

    for _ in range(1000):
        if flag.exists():
            break
        time.sleep(0.01)
    return Hasher(HashCache(None)).list_files(root, sink)


def _raise_record_error(sink) -> None:
    from gated_symile.errors import RecordError

    sink("first", 1, 1)
    raise RecordError("/release/x.hea", "bad header")  # does not unpickle as itself


def _die(sink) -> None:
    sink("first", 1, 1)
    os._exit(3)  # as if killed (out of memory): no result is ever sent


def _list_forever(sink) -> None:
    i = 0
    while True:
        sink(f"f{i}", i, i)
        i += 1


def test_background_listing_waits_for_its_walk_and_reports_its_error(tmp_path):
    """A selective folder is listed in a process of its own while the stage runs: the unread
    lines and the walk's result are those of the whole walk, and a folder the walk cannot list
    (or any error of the walk) is one line when the listing is used, not a short listing."""
    import threading
    from functools import partial

    from gated_symile.provenance.listings import StreamedListing

    root, flag = _tree(tmp_path / "t"), tmp_path / "go"
    listing = StreamedListing(root)
    listing.start(partial(_list_when_flagged, root, flag))
    threading.Timer(0.2, flag.touch).start()  # the listing is used before the walk is done
    lines = [json.loads(line)[0] for line in listing.lines()]
    assert lines == ["a.txt", "sub/b.bin", "sub/deep/c"] and listing.count == 3 and listing.wait() == ([], False)
    saved, expected = listing.save_as(tmp_path / "listing.jsonl.gz"), _listing_bytes(root, tmp_path / "again.gz")
    assert (tmp_path / "listing.jsonl.gz").read_bytes() == expected
    assert saved == {"path": "listing.jsonl.gz", "sha256": hashlib.sha256(expected).hexdigest()}
    listing.close()

    failing = StreamedListing(tmp_path / "gone")
    failing.start(partial(Hasher(HashCache(None)).list_files, tmp_path / "gone"))
    with pytest.raises(GatedSymileError, match="gone: cannot list"):
        failing.wait()
    failing.close()
    failing = StreamedListing("/release")
    failing.start(_raise_record_error)
    with pytest.raises(GatedSymileError, match=r"^/release/x.hea: bad header$"):
        list(failing.lines())
    failing.close()
    dead = StreamedListing(tmp_path / "release")
    dead.start(_die)
    with pytest.raises(GatedSymileError, match=r"release: its listing process ended without a result \(exit code 3\)$"):
        dead.wait()
    dead.close()


def _niceness(sink) -> int:
    return os.nice(0)


def test_the_listing_process_yields_the_cpu_to_the_stage(tmp_path):
    """The walk is off the stage's critical path (read only once the stage is done), so its
    process runs at a lower CPU priority than the stage's."""
    from gated_symile.provenance.listings import LISTING_NICENESS, StreamedListing

    listing = StreamedListing(tmp_path)
    listing.start(_niceness)
    assert listing.wait() == min(19, os.nice(0) + LISTING_NICENESS)
    listing.close()


def test_closing_a_listing_stops_its_walk(tmp_path):
    """A stage that fails while its inputs are still being listed ends at once: closing the
    listing ends the walk's process instead of walking the rest of the release."""
    import time

    from gated_symile.provenance.listings import ListingStopped, StreamedListing

    listing = StreamedListing(tmp_path)
    listing.start(_list_forever)
    while os.fstat(listing._file.fileno()).st_size == 0:  # the walk has written its first block
        time.sleep(0.01)
    listing.close()
    assert not listing._process.is_alive() and listing._file.closed
    with pytest.raises(ListingStopped):
        listing.wait()


def test_a_listing_whose_reader_is_gone_stops(tmp_path):
    """A walk whose stage process was killed stops at its next block of lines instead of listing
    the rest of a release for nobody."""
    from gated_symile.provenance.listings import BLOCK_LINES, ListingFile, ListingStopped, listed_lines

    mine = ListingFile(open(tmp_path / "mine.gz", "wb"), parent_pid=os.getppid())
    for i in range(BLOCK_LINES + 1):
        mine.add(f"f{i}", i, i)
    orphan = ListingFile(open(tmp_path / "orphan.gz", "wb"), parent_pid=os.getppid() + 1)
    with pytest.raises(ListingStopped):
        orphan.add("f", 1, 1)
    mine.close()
    with open(tmp_path / "mine.gz", "rb") as raw:
        last = [json.loads(line) for line in listed_lines(raw)][-1]
    assert last == [f"f{BLOCK_LINES}", BLOCK_LINES, BLOCK_LINES]


_KILLED_WHILE_LISTING = """
import os, sys, time
from tests.test_provenance import _list_forever
from gated_symile.provenance.listings import StreamedListing
listing = StreamedListing(sys.argv[1])
listing.start(_list_forever)
while os.fstat(listing._file.fileno()).st_size == 0:
    time.sleep(0.01)
print("listing", flush=True)
time.sleep(600)
"""


def test_a_stage_killed_with_its_listing_leaves_no_file_behind(tmp_path):
    """A stage killed together with its listing process (``SIGKILL`` of the process group, as
    a scheduler or Ctrl-C of Snakemake does it) leaves no listing in the temporary folder: the
    listing file has no name, so nobody has to remove it."""
    import signal
    import subprocess
    import sys

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WHILE_LISTING, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == "listing\n"
        assert len(list(temp.iterdir())) == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(temp.iterdir()) == []


def test_real_paths_resolve_like_realpath(tmp_path):
    """The manifest's per-folder resolution (hash-cache keys of the files a stage read) gives what
    ``os.path.realpath`` gives per file: through linked folders, linked files, ``..`` and a
    linked base."""
    from gated_symile.provenance.manifests import _RealPaths

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "real" / "c").mkdir(parents=True)
    (tmp_path / "a" / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "c" / "f").write_bytes(b"")
    (tmp_path / "a" / "b" / "g").write_bytes(b"")
    (tmp_path / "a" / "b" / "h").symlink_to(tmp_path / "a" / "b" / "g")
    (tmp_path / "base").symlink_to(tmp_path / "a")
    (tmp_path / "plain" / "d").mkdir(parents=True)
    (tmp_path / "plain" / "d" / "e").write_bytes(b"")
    (tmp_path / "plain_base").symlink_to(tmp_path / "plain")
    rels = ("link/c/f", "b/g", "b/h", "b/../b/g", "link/../b/g", "missing/x", "d/e", "d/./e")
    for base, linked in [("a", True), ("base", True), ("plain", False), ("plain_base", False)]:
        listed = Hasher(HashCache(None)).list_files(tmp_path / base, lambda *row: None)
        assert listed.has_links is linked, base
        resolve = _RealPaths(str(tmp_path / base), listed.has_links)  # as the manifest uses it
        for rel in rels:
            assert resolve(rel) == os.path.realpath(tmp_path / base / rel), (base, rel)


def _listing_bytes(root: Path, path: Path) -> bytes:
    """What the listing process writes for ``root`` (into ``path``): a listing's JSON lines,
    gzip-compressed."""
    from gated_symile.provenance.listings import ListingFile

    listing = ListingFile(open(path, "wb"))
    Hasher(HashCache(None)).list_files(root, listing.add)
    listing.close()
    return path.read_bytes()


def test_a_manifest_of_an_older_format_says_to_rerun_its_stage(tmp_path):
    """A manifest written by an older version is named with both formats, so the audit's
    "manifest unreadable" line says what to do; another document is simply not a manifest."""
    older, other = tmp_path / "old.json", tmp_path / "other.json"
    older.write_text(json.dumps({"format": "gated-symile-provenance/1"}))
    other.write_text(json.dumps({"format": "something-else/2"}))
    with pytest.raises(ValueError, match=rf"old.json: a gated-symile-provenance/1 manifest, this version reads {manifests.FORMAT} \(rerun its stage\)$"):
        manifests.read_manifest(older)
    with pytest.raises(ValueError, match=rf"other.json: not a {manifests.FORMAT} manifest$"):
        manifests.read_manifest(other)
