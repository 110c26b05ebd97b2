"""Files opened ahead: the descriptor reads the file's bytes, whatever the advice."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import pytest

from gated_symile.records.read_ahead import blocks_read_ahead, close_all, open_advised


@pytest.mark.parametrize("advice", [os.POSIX_FADV_WILLNEED, os.POSIX_FADV_DONTNEED])
def test_an_advised_file_reads_its_bytes(tmp_path, advice):
    path = tmp_path / "record.dat"
    path.write_bytes(bytes(range(256)) * 300)
    fd = open_advised(str(path), advice)
    assert fd is not None
    try:
        assert os.read(fd, 1 << 20) == path.read_bytes()
    finally:
        close_all([fd])


def test_a_path_that_cannot_be_opened_gives_none(tmp_path):
    assert open_advised(str(tmp_path / "missing.dat")) is None


def test_a_folder_is_opened_although_it_takes_no_advice(tmp_path):
    """``posix_fadvise`` refuses some files; the advice is a hint, and the reader decides what
    the file is (a folder where a signal file should be is quarantined by the reader)."""
    fd = open_advised(str(tmp_path))
    assert fd is not None
    close_all([fd])


def test_close_all_closes_each_descriptor_and_skips_none(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    fds = [open_advised(str(tmp_path / "a")), None, open_advised(str(tmp_path / "a"))]
    close_all(fds)
    for fd in fds:
        if fd is not None:
            with pytest.raises(OSError):
                os.fstat(fd)


@pytest.mark.parametrize("n_files", [0, 1, 5, 32, 33, 70])
def test_blocks_read_ahead_hands_over_every_index_once_in_order(tmp_path, n_files):
    """Missing files are read ahead without complaint: the reader reports them."""
    paths = [str(tmp_path / f"{i}.dcm") for i in range(n_files)]
    for path in paths[::2]:
        Path(path).write_bytes(b"x" * 100)
    blocks = [(rows, opened) for rows, opened in blocks_read_ahead([(path,) for path in paths], 32, 8192)]
    assert [i for rows, _ in blocks for i in rows] == list(range(n_files))
    assert all(len(rows) == 32 for rows, _ in blocks[:-1])
    assert [fd is None for _, opened in blocks for (fd,) in opened] == [i % 2 == 1 for i in range(n_files)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_blocks_read_ahead_closes_what_it_opened_however_the_loop_ends(tmp_path):
    """Run to the end, stopped early, or stopped by a path ``os.open`` refuses outright (a NUL
    byte raises ``ValueError``, not ``OSError``) in a block opened ahead: nothing stays open."""
    paths = [str(tmp_path / f"{i}.dat") for i in range(70)]
    for path in paths:
        Path(path).write_bytes(b"x")
    count = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = count()
    for _ in blocks_read_ahead([(path, path) for path in paths], 16):
        assert count() > before
    assert count() == before
    with closing(blocks_read_ahead([(path,) for path in paths], 16)) as blocks:
        next(blocks)
    assert count() == before
    with pytest.raises(ValueError):
        list(blocks_read_ahead([(path,) for path in [*paths[:20], "bad\0path", *paths]], 16))
    assert count() == before
