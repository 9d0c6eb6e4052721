"""Twelve kills: a real `rulesmon run` killed with SIGKILL at twelve random points of its work
and restarted each time loses no notification, never changes a message under its id, never
launches a worker twice and ends with the right exit code.

The run watches five `pid_file` jobs (started by the test) and launches four workers that
exit 0, 3, 0 and 7. Every job ends when the test creates its release file: some while
rulesmon runs, some while it is down. The kill points are chosen by a seeded random generator
among moments the test can observe (the run recorded, N ticks done, a launch, a notification
owed, a message held open at the receiver), never by sleeping a fixed time; the test knows
every job's outcome, so it computes the notifications owed without asking rulesmon."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from .conftest import HookReceiver, Procs, Request, db_rows, dedup, wait_for

WATCHED = [f"w{i}" for i in range(5)]
ANCHOR = "w4"  # ends only after the last kill, so the run cannot end before it
CODES = [0, 3, 0, 7]  # exit code of each launched worker
KILLS = 12
SEED = 3

WORKER = """\
import os, sys, time
from pathlib import Path
here = Path(sys.argv[1])
index = int(sys.argv[2])
with open(here / "launches", "a", encoding="utf-8") as fh:
    fh.write(f"{index} {os.getpid()}\\n")
release = here / "release" / f"train-{index}"
while not release.exists():
    time.sleep(0.05)
sys.exit(CODES[index])
""".replace("CODES", repr(CODES))

WATCH = """\
import sys, time
from pathlib import Path
release = Path(sys.argv[1])
while not release.exists():
    time.sleep(0.05)
"""

RULESET = """\
version: 1
name: trials
every: 0.3s
notify:
  hook: {urls: ["${HOOK}"], retry_max: 1s, timeout: 10s}
defaults:
  notify: [hook]
jobs:
WATCHED_JOBS
  train:
    local:
      command: [PYTHON, "worker.py", FOLDER, "{{ worker }}"]
      workers: 4
      launch_timeout: 60s
rules:
  - name: watched-up
    jobs: WATCHED_KEYS
    when: job.state == "RUNNING"
    message: "rule=watched-up job={{ job.key }} state={{ alert.state }}"
  - name: watched-ended
    jobs: WATCHED_KEYS
    when: job.terminal
    resolve: false
    message: "rule=watched-ended job={{ job.key }}"
  - name: worker-running
    jobs: [train]
    when: job.state == "RUNNING"
    message: "rule=worker-running job=train/{{ worker.index }} state={{ alert.state }}"
  - name: worker-ended
    jobs: [train]
    when: job.terminal
    resolve: false
    message: "rule=worker-ended job=train/{{ worker.index }} code={{ job.exit_code }}"
  - name: all-done
    scope: run
    when: run.all_terminal
    resolve: false
    message: "rule=all-done job=run"
"""

_LINE = re.compile(r"rule=(\S+) job=(\S+)(?: state=(\S+))?(?: code=(\S+))?")

Key = tuple[str, str, str]  # (rule, job, fire | resolve)


def _notifications(req: Request) -> list[tuple[str, Key, str | None]]:
    """(notification id, what it says, the exit code it gives) for each notification of a
    message: one line each when several are combined, in the order of their ids."""
    found = [m for m in map(_LINE.search, req.body.splitlines()) if m]
    out = []
    for nid, m in zip(req.ids, found, strict=False):
        kind = "resolve" if m.group(3) == "resolved" else "fire"
        out.append((nid, (m.group(1), m.group(2), kind), m.group(4)))
    return out


def _owed() -> set[Key]:
    owed: set[Key] = {("all-done", "run", "fire")}
    for job in WATCHED:
        owed |= {("watched-up", job, "fire"), ("watched-up", job, "resolve"),
                 ("watched-ended", job, "fire")}
    for i in range(len(CODES)):
        job = f"train/{i}"
        owed |= {("worker-running", job, "fire"), ("worker-running", job, "resolve"),
                 ("worker-ended", job, "fire")}
    return owed


def _delivered(rx: HookReceiver) -> dict[Key, set[str]]:
    """The notification ids under which each notification reached the deduplicating
    receiver."""
    got: dict[Key, set[str]] = defaultdict(set)
    seen: set[str] = set()
    for req in rx.accepted():
        if req.msg_id in seen:
            continue
        seen.add(req.msg_id)
        for nid, key, _code in _notifications(req):
            got[key].add(nid)
    return got


def _fired(rx: HookReceiver, job: str) -> bool:
    rule = "worker-running" if job.startswith("train/") else "watched-up"
    return (rule, job, "fire") in _delivered(rx)


def _runs(db: Path) -> list[tuple[int, int]]:
    return [(int(i), int(t or 0)) for i, t in db_rows(db, "SELECT id, ticks FROM runs "
                                                          "ORDER BY id")]


def _owed_rows(db: Path) -> int:
    rows = db_rows(db, "SELECT count(*) FROM outbox")
    return int(rows[0][0]) if rows else 0


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _launches(folder: Path) -> list[str]:
    path = folder / "launches"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_twelve_kills_lose_nothing_repeat_nothing_launch_once(
        tmp_path: Path, receiver: HookReceiver, procs: Procs) -> None:
    """Twelve SIGKILLs at random observable points, each followed by a restart: every owed
    notification reaches a receiver that deduplicates on the id, no id carries two payloads,
    no notification comes under two ids, each worker is launched once, no process is left
    and the run ends with exit code 1 (two workers failed)."""
    rng = random.Random(SEED)
    folder = tmp_path
    (folder / "release").mkdir()
    (folder / "pids").mkdir()
    (folder / "worker.py").write_text(WORKER, encoding="utf-8")
    (folder / "watch.py").write_text(WATCH, encoding="utf-8")
    jobs = "\n".join(f"  {j}: {{local: {{pid_file: pids/{j}.pid}}}}" for j in WATCHED)
    text = (RULESET.replace("WATCHED_JOBS", jobs)
            .replace("WATCHED_KEYS", "[" + ", ".join(WATCHED) + "]")
            .replace("PYTHON", sys.executable).replace("FOLDER", str(folder)))
    ruleset = folder / "r.yaml"
    ruleset.write_text(text, encoding="utf-8")
    db = folder / "state.db"
    for job in WATCHED:
        proc = procs.spawn([sys.executable, str(folder / "watch.py"),
                            str(folder / "release" / job)], reap=True)
        (folder / "pids" / f"{job}.pid").write_text(str(proc.pid), encoding="utf-8")
    env = dict(os.environ, HOOK=receiver.url())
    pending = [j for j in WATCHED if j != ANCHOR] + [f"train/{i}" for i in range(len(CODES))]
    log: list[str] = []
    held: list[str] = []  # ids of the messages whose delivery a kill interrupted

    def release_one() -> str | None:
        ready = [j for j in pending if _fired(receiver, j)]
        if not ready:
            return None
        job = rng.choice(ready)
        pending.remove(job)
        (folder / "release" / job.replace("/", "-")).write_text("", encoding="utf-8")
        return job

    def start(n: int) -> subprocess.Popen[bytes]:
        err = (folder / f"run{n}.err").open("wb")
        proc = procs.spawn([sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state",
                            str(db)], env=env, cwd=folder, stdout=subprocess.DEVNULL,
                           stderr=err)
        err.close()
        return proc

    def alive_until(proc: subprocess.Popen[bytes], n: int, cond: object) -> None:
        assert callable(cond)
        wait_for(lambda: proc.poll() is not None or bool(cond()), 90, f"kill point of run {n}")
        stderr = (folder / f"run{n}.err").read_text(errors="replace")[-3000:]
        assert proc.poll() is None, f"run {n} ended by itself ({proc.returncode}): {stderr}"

    for n in range(KILLS):
        if n and rng.random() < 0.5:
            log.append(f"down: released {release_one()}")
        if n == KILLS // 2:  # every trial has a failing worker end while rulesmon is down
            for job in [f"train/{i}" for i, c in enumerate(CODES) if c]:
                if job in pending and _fired(receiver, job):
                    pending.remove(job)
                    (folder / "release" / job.replace("/", "-")).write_text("", "utf-8")
                    log.append(f"down: released {job} (exit {CODES[int(job[-1])]})")
                    break
        runs = len(_runs(db))
        # the first kill lands while the workers are being launched; later ones anywhere
        kind = "launch" if n == 0 else rng.choice(["start", "ticks", "ticks", "owed", "deliver"])
        if kind in ("owed", "deliver") and not any(_fired(receiver, j) for j in pending):
            kind = "ticks"  # nothing left to end before the last kill: nothing new owed
        proc = start(n)
        if kind == "start":
            alive_until(proc, n, lambda r=runs: len(_runs(db)) > r)
        elif kind == "ticks":
            want = rng.randint(1, 4)
            alive_until(proc, n, lambda r=runs, w=want: len(_runs(db)) > r
                        and _runs(db)[-1][1] >= w)
            kind += f" {want}"
        elif kind == "launch":
            want = rng.randint(1, len(CODES))
            alive_until(proc, n, lambda w=want: len(_launches(folder)) >= w)
            kind += f" {want}"
        elif kind == "owed":
            before = _owed_rows(db)
            alive_until(proc, n, lambda r=runs: len(_runs(db)) > r)
            kind += f" {release_one()}"
            alive_until(proc, n, lambda b=before: _owed_rows(db) > b)
        else:  # a message held open at the receiver: the kill interrupts its delivery
            receiver.hold_next = True
            alive_until(proc, n, lambda r=runs: len(_runs(db)) > r)
            kind += f" {release_one()}"
            alive_until(proc, n, receiver.held.is_set)
            held.append(receiver.requests[-1].msg_id)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        receiver.hold_next = False
        receiver.release()
        log.append(f"kill {n}: {kind}")

    for job in [*pending, ANCHOR]:
        (folder / "release" / job.replace("/", "-")).write_text("", encoding="utf-8")
    final = start(KILLS)
    try:
        code = final.wait(timeout=120)
    except subprocess.TimeoutExpired:
        code = None
    stderr = (folder / f"run{KILLS}.err").read_text(errors="replace")[-3000:]

    delivered = _delivered(receiver)
    folded = dedup(receiver.accepted())
    lost = sorted(_owed() - set(delivered))
    repeated = sorted(k for k, ids in delivered.items() if len(ids) > 1)
    wrong_codes = sorted(
        (key[1], said) for req in receiver.accepted() for _nid, key, said in _notifications(req)
        if key[0] == "worker-ended"
        and said not in (str(CODES[int(key[1].split("/")[1])]), "unknown"))
    launches = _launches(folder)
    said = sorted({(key[1], code) for req in receiver.accepted()
                   for _nid, key, code in _notifications(req) if key[0] == "worker-ended"})
    log.append("worker-ended says: " + ", ".join(f"{job} code={code}" for job, code in said))
    for mid in held:
        log.append(f"held {mid}: received {sum(r.msg_id == mid for r in receiver.requests)}x")
    print("\n".join(log))
    print(f"owed {len(_owed())}, delivered {len(set(delivered) & _owed())}, lost {len(lost)}; "
          f"{folded.messages} messages accepted, {folded.distinct} distinct ids, "
          f"{folded.resent} sent again after an interrupted delivery; launches {len(launches)}")
    problems = []  # all of them, so one run shows every broken promise
    if lost:
        problems.append(f"lost notifications: {lost}")
    if folded.conflicts:
        problems.append(f"ids with two payloads: {folded.conflicts}")
    if repeated:
        problems.append(f"notifications delivered under two ids: {repeated}")
    if wrong_codes:
        problems.append(f"wrong exit codes in messages: {wrong_codes}")
    if folded.resent > KILLS:
        problems.append(f"{folded.resent} messages sent again, more than the {KILLS} kills")
    if sorted(int(line.split()[0]) for line in launches) != list(range(len(CODES))):
        problems.append(f"launches (index pid): {launches}")
    if code != 1:
        problems.append(f"final run exit {code}, not 1 (workers 1 and 3 failed)")
    assert not problems, "\n".join(problems) + "\n" + stderr
    wait_for(lambda: not procs.marked(), 30, "every process of the trials to end")


ONE_WORKER = """\
version: 1
name: down
every: 0.3s
jobs:
  train:
    local:
      command: [PYTHON, "worker.py", FOLDER, "{{ worker }}"]
      workers: 2
rules:
  - name: worker-ended
    when: job.terminal
    resolve: false
    do: [log]
"""


@pytest.mark.parametrize("when", ["down", "adopted"])
def test_failed_workers_ending_unseen_are_not_counted_a_success(
        tmp_path: Path, procs: Procs, when: str) -> None:
    """Worker 0 exits 0 under rulesmon's eyes; worker 1 exits 3 while rulesmon is killed
    (down), or after a restarted run adopted it (no longer its child): the run cannot know
    that code, so it must not end with exit 0, which says every job succeeded."""
    (tmp_path / "release").mkdir()
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    ruleset = tmp_path / "r.yaml"
    ruleset.write_text(ONE_WORKER.replace("PYTHON", sys.executable)
                       .replace("FOLDER", str(tmp_path)), encoding="utf-8")
    db = tmp_path / "s.db"
    argv = [sys.executable, "-m", "rulesmon", "run", str(ruleset), "--state", str(db)]
    first = procs.spawn(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    wait_for(lambda: len(_launches(tmp_path)) == 2 and bool(_runs(db))
             and _runs(db)[-1][1] >= 2, 60, "both workers up")
    pids = {int(i): int(pid) for i, pid in (line.split() for line in _launches(tmp_path))}
    (tmp_path / "release" / "train-0").write_text("", encoding="utf-8")
    wait_for(lambda: bool(db_rows(db, "SELECT 1 FROM events WHERE kind = 'fire' AND "
                                      "rule = 'worker-ended' AND instance = 'train/0'")),
             60, "worker 0's end seen")
    first.send_signal(signal.SIGKILL)
    first.wait()
    err = (tmp_path / "again.err").open("wb")
    if when == "adopted":
        again = procs.spawn(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: len(_runs(db)) == 2 and _runs(db)[-1][1] >= 2, 60,
                 "the restarted run to tick")
    (tmp_path / "release" / "train-1").write_text("", encoding="utf-8")
    wait_for(lambda: not _alive(pids[1]), 30, "worker 1 to end")
    if when == "down":  # and reaped by its new parent: no zombie's exit status to read
        try:
            wait_for(lambda: not psutil.pid_exists(pids[1]), 60, "worker 1 to be reaped")
        except AssertionError:
            pytest.skip("nothing reaps orphans here (pid 1 does not wait for them)")
    if when == "down":
        again = procs.spawn(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    code = again.wait(timeout=120)
    assert code != 0, (tmp_path / "again.err").read_text(errors="replace")[-2000:]
    assert len(_launches(tmp_path)) == 2
