"""File descriptors: a glob over thousands of logs is followed with a bounded number of open
descriptors, by a real `rulesmon run` under `ulimit -n 1024`, and the tailers still see appends,
rotation by rename and copytruncate after the pool closed their descriptors."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
from pathlib import Path

from rulesmon.probes.handles import HandlePool, default_limit, raise_nofile_limit
from rulesmon.probes.tail import Tailer

from .conftest import Procs, db_rows, wait_for

LOGS = 2000
NOFILE = 1024


def _fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _cap_nofile() -> None:
    """In the child: soft and hard RLIMIT_NOFILE both 1024, so raising it cannot help."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_a_pool_bounds_the_descriptors_of_many_tailers_which_still_read_every_append(
        tmp_path: Path) -> None:
    """Sixty tailers sharing a pool of eight hold at most eight descriptors between reads
    and still read each line appended to each file exactly once."""
    pool = HandlePool(8)
    paths = [tmp_path / f"w{i:02d}.log" for i in range(60)]
    for i, path in enumerate(paths):
        path.write_text(f"first {i}\n")
    tailers = [Tailer(path, pool=pool) for path in paths]
    before = _fds()
    try:
        assert [t.read() for t in tailers] == [[f"first {i}"] for i in range(60)]
        assert len(pool) <= 8 and _fds() - before <= 8
        for round_ in range(3):
            for i, path in enumerate(paths):
                with path.open("a") as f:
                    f.write(f"line {round_} {i}\n")
            assert [t.read() for t in tailers] == [[f"line {round_} {i}"] for i in range(60)]
            assert len(pool) <= 8 and _fds() - before <= 8
            assert all(t.error is None for t in tailers)
        assert pool.evictions > 0
    finally:
        for t in tailers:
            t.close()
    assert len(pool) == 0


def test_a_file_renamed_while_its_descriptor_was_closed_is_drained_from_its_new_name(
        tmp_path: Path) -> None:
    """Rotation by rename while the pool had the descriptor closed: the rest of the old file is
    found beside it by device and inode and read, then the new file from its start."""
    pool = HandlePool(8)
    path = tmp_path / "app.log"
    path.write_text("a\n")
    t = Tailer(path, pool=pool)
    others = [Tailer(tmp_path / f"o{i}.log", pool=pool) for i in range(12)]
    for i, other in enumerate(others):
        other.path.write_text(f"{i}\n")
    try:
        assert t.read() == ["a"]
        for other in others:  # their descriptors push out t's
            other.read()
        assert t._cur is not None and t._cur.fd == -1
        with path.open("a") as f:
            f.write("b\n")
        path.rename(tmp_path / "app.log.1")
        path.write_text("c\n")
        lines: list[str] = []
        for _ in range(4):  # the old file is finished after two quiet reads
            lines += t.read()
        assert lines == ["b", "c"]
        assert t.error is None
    finally:
        for other in (t, *others):
            other.close()


def test_copytruncate_while_the_descriptor_was_closed_reads_the_new_lines_once(
        tmp_path: Path) -> None:
    """Copytruncate while the pool had the descriptor closed: the reopened file is seen to be
    truncated, lines added to the copy after the last read come from the copy, and the new lines
    from the start of the truncated file."""
    pool = HandlePool(8)
    path = tmp_path / "a.log"
    path.write_text("".join(f"old {i}\n" for i in range(5)))
    t = Tailer(path, pool=pool)
    others = [Tailer(tmp_path / f"o{i}.log", pool=pool) for i in range(12)]
    for other in others:
        other.path.write_text("x\n")
    try:
        assert len(t.read()) == 5
        for other in others:
            other.read()
        assert t._cur is not None and t._cur.fd == -1
        with path.open("a") as f:
            f.write("old 5\n")
        shutil.copyfile(path, tmp_path / "a.log.1")
        with path.open("r+b") as f:
            f.truncate(0)
        with path.open("a") as f:
            f.write("new 0\n")
        lines: list[str] = []
        for _ in range(4):
            lines += t.read()
        assert lines == ["old 5", "new 0"]
    finally:
        for other in (t, *others):
            other.close()


def test_the_default_limit_leaves_headroom_below_the_soft_limit() -> None:
    """The pool's default bound is at most half the soft RLIMIT_NOFILE, so sqlite, sockets and
    the other probes keep descriptors; raising the soft limit never lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, new_hard = raise_nofile_limit()
    try:
        assert new_hard == hard and new_soft >= soft
        assert default_limit() <= new_soft // 2
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_run_follows_2000_logs_under_ulimit_1024_without_emfile(tmp_path: Path,
                                                               procs: Procs) -> None:
    """`rulesmon run` with RLIMIT_NOFILE 1024 (soft and hard) and a glob over 2,000 logs reads
    every file, its host, local and logs probes never fail, it keeps its open descriptors
    under the pool's bound plus headroom, and it ends normally (exit 0, no traceback); every:
    4s gives each probe 3.2 s, which a loaded machine needs to first read 2,000 files."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(LOGS):
        (logs / f"w{i:04d}.log").write_text(f"start\nstep {i}\n")
    flag = tmp_path / "done"
    waiter = f"import os,time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)"
    total = sum(range(LOGS))
    (tmp_path / "r.yaml").write_text(f"""\
version: 1
name: fds
every: 4s
jobs:
  work:
    local:
      command: [{sys.executable!r}, "-c", {waiter!r}]
    logs:
      - path: "logs/*.log"
        extract:
          step: 'step (?P<step>\\d+)'
rules:
  - name: every-log-read
    when: log.sum.step == {total}
    do: [log]
""", encoding="utf-8")
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = procs.spawn([sys.executable, "-m", "rulesmon", "run", str(tmp_path / "r.yaml"),
                            "--state", str(tmp_path / "s.db")],
                           stdout=o, stderr=e, cwd=tmp_path, preexec_fn=_cap_nofile)
    peak = 0

    def ticks_done() -> bool:
        nonlocal peak
        with contextlib.suppress(OSError):
            peak = max(peak, _fds(proc.pid))
        if proc.poll() is not None:
            return True
        ticks = db_rows(tmp_path / "s.db", "SELECT max(ticks) FROM runs")
        return bool(ticks) and (ticks[0][0] or 0) >= 3 \
            and "every-log-read" in out.read_text("utf-8", "replace")

    wait_for(ticks_done, timeout=180, what="three ticks with every log read")
    flag.touch()
    assert proc.wait(timeout=120) == 0
    stdout, stderr = out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace")
    assert "ALERT: every-log-read" in stdout
    assert "Query failed" not in stdout
    assert "Traceback" not in stderr and "Too many open files" not in stderr
    assert "log_unreadable" not in stderr and "probe_failed" not in stderr
    assert 0 < peak <= NOFILE // 2 + 64, peak
