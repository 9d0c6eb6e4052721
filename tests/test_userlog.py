"""HTCondor user logs: every event a job's life writes, read incrementally across appends,
partial writes, truncation and replacement, with garbage skipped."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rulesmon.probes.userlog import UserLogFollower, parse_event, parse_time

FIXTURES = Path(__file__).parent / "fixtures" / "dagman"
RUN1 = (FIXTURES / "pipe" / "run1.nodes.log").read_text(encoding="utf-8")

EVENTS = """\
000 (042.000.000) 2026-11-22 08:22:31 Job submitted from host: <127.0.0.1:9618?addrs=x>
    DAG Node: train
...
001 (042.000.000) 2026-11-22 08:22:39 Job executing on host: <10.0.0.5:9618?addrs=y>
\tSlotName: slot1_1@gpu01
\tCpus = 1
\tGPUs = 1
...
006 (042.000.000) 2026-11-22 08:22:44 Image size of job updated: 7176
\t210  -  MemoryUsage of job (MB)
\t214520  -  ResidentSetSize of job (KB)
...
010 (042.000.000) 2026-11-22 08:22:45 Job was suspended.
\tNumber of processes actually suspended: 1
...
011 (042.000.000) 2026-11-22 08:22:46 Job was unsuspended.
...
004 (042.000.000) 2026-11-22 08:22:50 Job was evicted.
\t(0) CPU times
\t\tUsr 0 00:01:05, Sys 0 00:00:03  -  Run Remote Usage
\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
...
012 (042.000.000) 2026-11-22 08:22:51 Job was held.
\tError from slot1@gpu01: Failed to open '/data/in.txt' as standard input: No such file \
or directory (errno 2)
\tCode 14 Subcode 2
...
013 (042.000.000) 2026-11-22 08:22:55 Job was released.
\tvia condor_release (by user alice)
...
021 (042.000.000) 2026-11-22 08:22:56 Error from starter on slot1@gpu01: disk full
...
040 (042.000.000) 2026-11-22 08:22:57 Started transferring input files
\tTransferring to host: <10.0.0.5:9618>
...
028 (042.000.000) 2026-11-22 08:22:58 Job ad information event triggered.
RunUUID = "abc-123"
Epoch = 4
Healthy = true
...
005 (042.000.000) 2026-11-22 08:23:41 Job terminated.
\t(0) Abnormal termination (signal 9)
\t(0) No core file
\t\tUsr 0 02:00:00, Sys 0 00:00:30  -  Run Remote Usage
\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
\t\tUsr 0 02:01:05, Sys 0 00:00:33  -  Total Remote Usage
\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage
\tPartitionable Resources :    Usage  Request Allocated
\t   Cpus                 :     1.50        2         2
\t   Disk (KB)            :       15     1024      2048
\t   GPUs                 :                 1         1
\t   Memory (MB)          :      900     1024      1024
...
009 (043.000.000) 2026-11-22 08:23:50 Job was aborted.
\tvia condor_rm (by user alice)
...
016 (044.000.000) 2026-11-22 08:24:00 POST Script terminated.
\t(1) Normal termination (return value 2)
    DAG Node: eval
...
"""


def _events(text: str) -> list:  # type: ignore[type-arg]
    return [parse_event(b) for b in text.split("\n...\n") if b.strip()]


def test_recorded_node_log_reads_every_event_with_node_names() -> None:
    """A node log recorded from a real DAG gives submits with their DAG node, executions on a
    slot, and terminations with return values and resources."""
    follower = UserLogFollower(FIXTURES / "pipe" / "run1.nodes.log")
    result = follower.read()
    assert result.error is None and result.garbage == 0 and not result.reset
    codes = [(e.code, e.job_id) for e in result.events]
    assert codes[:3] == [(0, "9.0"), (0, "10.0"), (1, "9.0")]
    assert [e.fields["node"] for e in result.events if e.code == 0] == ["A", "C", "B", "C",
                                                                       "B"]
    ends = [e.fields["return_value"] for e in result.events if e.code == 5]
    assert ends == [0, 3, 1, 3, 0]
    first_end = next(e for e in result.events if e.code == 5)
    assert first_end.fields["memory_usage"] == 5 and first_end.fields["memory_request"] == 64
    assert first_end.fields["disk_request"] == 1024
    execute = next(e for e in result.events if e.code == 1)
    assert execute.fields["slot"] == "slot1_1@vm"
    assert result.bytes_read == len(RUN1.encode())


def test_each_event_kind_carries_its_fields() -> None:
    """Submit, execute, image size, suspend, evict, hold, release, remote error, transfer,
    job ad, abnormal termination, abort and POST script events are all understood."""
    ev = _events(EVENTS)
    assert [e.code for e in ev] == [0, 1, 6, 10, 11, 4, 12, 13, 21, 40, 28, 5, 9, 16]
    submit, execute, image, _susp, _unsusp, evicted, held, released, remote, transfer, ad, \
        term, aborted, post = ev
    assert submit.fields == {"node": "train"} and submit.cluster == 42
    assert execute.fields["host"] == "10.0.0.5:9618" and execute.fields["slot"] == \
        "slot1_1@gpu01"
    assert execute.fields["slot_ad"] == {"Cpus": 1, "GPUs": 1}
    assert (image.fields["memory_mb"], image.fields["rss_kb"]) == (210, 214520)
    assert (evicted.fields["cpu_user"], evicted.fields["cpu_sys"]) == (65, 3)
    assert held.fields["hold_code"] == 14 and held.fields["hold_subcode"] == 2
    assert held.fields["reason"].startswith("Error from slot1@gpu01: Failed to open")
    assert released.fields["by"] == "alice"
    assert remote.fields["reason"] == "Error from starter on slot1@gpu01: disk full"
    assert "Started transferring" in transfer.text
    assert ad.fields["attrs"] == {"RunUUID": "abc-123", "Epoch": 4, "Healthy": True}
    assert term.fields["normal"] is False and term.fields["signal"] == 9
    assert (term.fields["cpu_user"], term.fields["total_cpu_user"]) == (7200, 7265)
    assert (term.fields["cpus_usage"], term.fields["gpus_request"]) == (1.5, 1)
    assert term.fields["memory_usage"] == 900
    assert aborted.fields["by"] == "alice" and aborted.cluster == 43
    assert post.fields["return_value"] == 2 and post.fields["node"] == "eval"


def test_time_formats() -> None:
    """ISO stamps, UTC stamps and the old month/day stamps without a year are read."""
    iso = parse_time("2026-11-22", "08:22:31")
    assert iso == time.mktime((2026, 11, 22, 8, 22, 31, 0, 0, -1))
    assert parse_time("2026-11-22", "08:22:31Z") == 1795335751.0
    now = time.mktime((2026, 11, 30, 0, 0, 0, 0, 0, -1))
    assert parse_time("11/22", "08:22:31", now) == iso
    assert parse_time("12/31", "23:00:00", now) == time.mktime((2025, 12, 31, 23, 0, 0, 0,
                                                               0, -1))
    assert parse_time("13/45", "99:00:00") is None


def test_second_read_returns_only_appended_events(tmp_path: Path) -> None:
    """Appending events makes the next read return only them, reading only the new bytes."""
    path = tmp_path / "nodes.log"
    blocks = RUN1.split("...\n")
    first = "...\n".join(blocks[:4]) + "...\n"
    path.write_text(first, encoding="utf-8")
    follower = UserLogFollower(path)
    r1 = follower.read()
    assert len(r1.events) == 4
    rest = RUN1[len(first):]
    with path.open("a", encoding="utf-8") as fh:
        fh.write(rest)
    r2 = follower.read()
    assert not r2.reset and len(r2.events) == 11
    assert r2.bytes_read == len(rest.encode())
    assert follower.read().events == []


def test_a_partly_written_event_waits_for_its_end(tmp_path: Path) -> None:
    """An event without its closing `...` line is not returned until it is complete, and is
    returned once."""
    path = tmp_path / "nodes.log"
    event = "005 (009.000.000) 2026-11-22 08:22:41 Job terminated.\n" \
            "\t(1) Normal termination (return value 0)\n"
    path.write_text(event, encoding="utf-8")
    follower = UserLogFollower(path)
    assert follower.read().events == []
    with path.open("a", encoding="utf-8") as fh:
        fh.write("...\n")
    got = follower.read().events
    assert [(e.code, e.fields["return_value"]) for e in got] == [(5, 0)]
    assert follower.read().events == []


def test_truncated_log_is_read_again_from_the_start_with_reset(tmp_path: Path) -> None:
    """A log truncated and written again (DAGMan starting a rescue run) sets `reset` and
    returns the new events only, so the caller can rebuild without double counting."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    follower = UserLogFollower(path)
    assert len(follower.read().events) == 15
    run2 = (FIXTURES / "pipe" / "run2.nodes.log").read_text(encoding="utf-8")
    with path.open("r+", encoding="utf-8") as fh:  # same inode, shorter content
        fh.truncate(0)
        fh.write(run2)
    again = follower.read()
    assert again.reset
    assert [e.job_id for e in again.events if e.code == 0] == ["17.0", "21.0"]


def test_rewritten_log_of_the_same_size_is_noticed(tmp_path: Path) -> None:
    """A log rewritten with different first bytes but no smaller is re-read from 0."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    follower = UserLogFollower(path)
    follower.read()
    path.write_text(RUN1.replace("000 (009.000.000)", "000 (099.000.000)", 1),
                    encoding="utf-8")
    again = follower.read()
    assert again.reset and again.events[0].cluster == 99 and len(again.events) == 15


def test_replaced_log_new_inode_is_read_from_the_start(tmp_path: Path) -> None:
    """A log replaced by a new file (rename over it) is read from offset 0."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    follower = UserLogFollower(path)
    follower.read()
    tmp = tmp_path / "new.log"
    tmp.write_text(RUN1 + RUN1, encoding="utf-8")
    os.replace(tmp, path)
    again = follower.read()
    assert again.reset and len(again.events) == 30


def test_garbage_blocks_are_counted_and_skipped(tmp_path: Path) -> None:
    """Lines that are not events are counted with a sample, and real events around them are
    still read."""
    path = tmp_path / "nodes.log"
    blocks = RUN1.split("...\n")
    text = blocks[0] + "...\n" + "\x00\x01 this is not an event\nnor this\n...\n" + \
        "...\n".join(blocks[1:])
    path.write_text(text, encoding="utf-8")
    result = UserLogFollower(path).read()
    assert result.garbage == 1 and "this is not an event" in result.garbage_sample
    assert len(result.events) == 15


def test_missing_and_unreadable_logs_are_an_error_not_an_exception(tmp_path: Path) -> None:
    """A missing file or a folder in its place gives `error`, and reading later works."""
    path = tmp_path / "nodes.log"
    follower = UserLogFollower(path)
    result = follower.read()
    assert result.error is not None and "No such file" in result.error
    path.mkdir()
    assert follower.read().error is not None
    path.rmdir()
    path.write_text(RUN1, encoding="utf-8")
    assert len(follower.read().events) == 15


def test_reads_in_small_chunks_give_the_same_events(tmp_path: Path) -> None:
    """Chunk boundaries inside events do not lose or split any event."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1 * 3, encoding="utf-8")
    events = UserLogFollower(path, chunk=97).read().events
    assert len(events) == 45
    assert [e.code for e in events] == [e.code for e in UserLogFollower(path).read().events]


def test_max_bytes_bounds_one_read_and_the_rest_comes_next(tmp_path: Path) -> None:
    """A read limited to some bytes returns the events within them; the next read goes on."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    follower = UserLogFollower(path, chunk=1024)
    first = follower.read(max_bytes=2048)
    second = follower.read()
    assert len(first.events) + len(second.events) == 15 and first.events


def _key(events: list[Any]) -> list[tuple[int, str, str]]:
    return [(e.code, e.job_id, e.text) for e in events]


def test_a_deadline_already_past_reads_one_chunk_and_the_rest_comes_next(
        tmp_path: Path) -> None:
    """A read whose deadline has passed reads exactly one chunk (events fit in it) and says
    `more`; reading on the same way gives the same events as one whole read."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    whole = UserLogFollower(path).read()
    follower = UserLogFollower(path, chunk=1024)
    first = follower.read(deadline=time.monotonic() - 1)
    assert (first.bytes_read, first.more) == (1024, True) and first.events
    events = list(first.events)
    for _ in range(len(RUN1)):
        got = follower.read(deadline=time.monotonic() - 1)
        events += got.events
        if not got.more:
            break
    assert _key(events) == _key(whole.events) and len(events) == 15
    assert follower.read(deadline=time.monotonic() - 1).bytes_read == 0


def test_a_past_deadline_still_reads_a_whole_event_when_chunks_are_smaller(
        tmp_path: Path) -> None:
    """With chunks smaller than an event, a read past its deadline goes on to the end of one
    complete event, so repeated reads catch up instead of starting over each time."""
    path = tmp_path / "nodes.log"
    path.write_text(RUN1, encoding="utf-8")
    follower = UserLogFollower(path, chunk=97)
    events = []
    for _ in range(len(RUN1)):
        got = follower.read(deadline=time.monotonic() - 1)
        assert got.events or not got.more
        events += got.events
        if not got.more:
            break
    assert _key(events) == _key(UserLogFollower(path).read().events) and len(events) == 15
