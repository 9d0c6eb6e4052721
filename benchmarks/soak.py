"""Fault soak: `rulesmon run` on 10,000 SLURM job slots x 50 rules through a fake scheduler that
hangs, fails, prints garbage and recovers on a schedule; a webhook down for a third of the run
then back; SIGKILLs at random moments, each followed by a restart.

The fake `squeue` and `sacct` (scripts on PATH, SLURM 22.05's parseable formats) compute every
job's state from a plan written at the start, so the soak knows every outcome and computes the
notifications owed without asking rulesmon. `--jobs` is the number of job slots, the jobs in
the queue at any moment; the ruleset watches the user's jobs (`user: soak`). Jobs cycle as on
a real cluster: each slot's first job ends within the first `--cycle` (default 2 minutes, at
most a quarter of the duration), and each job that ends (COMPLETED, or FAILED with its own
exit code) is replaced at once by a new job id that pends, runs and ends within 0.5-0.9 of a
cycle; no job is submitted that would end after 85% of the duration. squeue lists an ended job for
`--min-job-age` seconds (slurm.conf MinJobAge, 300), then only sacct knows it. The rules are
one `job-ended` notification per job, one `job-failed` per failed job, and 48 rules that
evaluate every tick and never fire (the evaluation load).

"Flat after warm-up" is judged in the steady state: the queue holds the same number of jobs
throughout, so live data stays the same size. A process's warm-up ends after its first full
cycle (every job it found has ended and been replaced; its facts, alert states and sent
notifications cover a cycle's worth of jobs) and its steady state ends when jobs stop being
replaced (85% of the duration less a cycle). Memory growth is how far the RSS floor rose
within one process's steady state. A process killed before its steady state began is not
judged (NOT EXERCISED says when none was). rulesmon keeps every job it has seen until its run
ends, so what it holds grows with the jobs ended in the run, not with the live ones: see
docs/reliability.md, "Kill trials and the fault soak". `--tracemalloc DIR` runs rulesmon under
tracemalloc (several times slower) and writes each process's top growth sites since its
warm-up to DIR/trace-<pid>.txt.

Measured on each rulesmon process, every couple of seconds: RSS, open fds, threads; the tick
period from the state database's tick count. Reported: memory growth in the steady state
(promise: flat within 20 MB), fd and thread growth (promise: none), tick period vs interval,
overruns, and notifications owed / delivered / sent again, as a receiver deduplicating on the
`X-Rulesmon-Id` header sees them (promise: 0 lost, one payload per id, a message sent again
only for a delivery a kill interrupted). Prints a table, writes JSON (--json), exits 1 when a
promise is broken.

By hand, 30 minutes:   python benchmarks/soak.py --duration 30m
CI (tests/reliability/test_soak.py) runs a short, small one: --duration 60s --jobs 300 (300
slots, about 1,350 jobs; too short for a steady state, so memory is not judged there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from rulesmon.probes import slurm_parse as sp

FAKE = """#!{python}
import json, os, random, sys, time
d = os.environ["SOAK_DIR"]
name = os.path.basename(sys.argv[0])
if "--version" in sys.argv:
    print("slurm 22.05.8")
    sys.exit(0)
with open(os.path.join(d, "plan.json")) as fh:
    plan = json.load(fh)
now = time.time() - plan["t0"]
for start, end, tool, mode in plan["faults"]:
    if start <= now < end and tool in (name, "all"):
        if mode == "hang":
            time.sleep(end - now + 1)
        elif mode == "fail":
            sys.stderr.write("slurm_load_jobs error: Unable to contact slurm controller "
                             "(connect failure)\\n")
            sys.exit(1)
        elif mode == "garbage":
            rng = random.Random()
            for _ in range(50):
                sys.stdout.write("".join(rng.choice("abc|:\\x1f 0123#") for _ in range(40)) + "\\n")
            sys.exit(0)
SEP = "\\x1f"
T0 = plan["t0"]

def clock(s):
    s = max(0, int(s))
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)

jobs = plan["jobs"]
out = []
if name == "squeue":
    for jid, submit, start, end, code in jobs:
        if now >= end + plan["min_job_age"] or now < submit:
            continue
        running = now >= start
        ended = now >= end
        used = min(now, end) - start if running else 0
        rec = [jid, jid, jid, "N/A", "soak-" + jid, "soak", "cpu", "acct", "normal",
               ("COMPLETED" if code == 0 else "FAILED") if ended else
               "RUNNING" if running else "PENDING", "None" if running else "Priority", "1",
               "n001" if running else "", "1", "cpu=1,mem=1G,node=1", "N/A", "1G",
               str(int(T0 + submit)), str(int(T0 + start)) if running else "0",
               str(int(T0 + start + 3600)) if running else "0", clock(used), "1:00:00",
               clock(3600 - used), "0", d, d + "/slurm-%j.out", d + "/slurm-%j.out"]
        out.append(SEP.join(rec) + SEP)
    sys.stdout.write("\\n".join(out) + ("\\n" if out else ""))
elif name == "sacct":
    asked = set()
    for i, arg in enumerate(sys.argv):
        if arg == "-j" and i + 1 < len(sys.argv):
            asked.update(sys.argv[i + 1].split(","))
    fields = plan["sacct_fields"]
    out.append(SEP.join(fields))
    for jid, submit, start, end, code in jobs:
        if jid not in asked or now < end:
            continue
        base = dict.fromkeys(fields, "")
        state = "COMPLETED" if code == 0 else "FAILED"
        job = dict(base, JobID=jid, JobIDRaw=jid, JobName="soak-" + jid, User="soak",
                   Partition="cpu", State=state, ExitCode="%d:0" % code,
                   Submit=str(int(T0 + submit)), Start=str(int(T0 + start)),
                   End=str(int(T0 + end)), ElapsedRaw=str(int(end - start)),
                   TimelimitRaw="60", NNodes="1", NodeList="n001", AllocCPUS="1",
                   ReqMem="1G", AllocTRES="cpu=1,mem=1G,node=1", WorkDir=d)
        out.append(SEP.join(job[f] for f in fields))
        step = dict(base, JobID=jid + ".batch", JobIDRaw=jid + ".batch", State=state,
                    TotalCPU=clock(end - start), UserCPU=clock(end - start), SystemCPU="0:00:00",
                    MaxRSS="10240K")
        out.append(SEP.join(step[f] for f in fields))
    sys.stdout.write("\\n".join(out) + "\\n")
"""

NEVER = [  # evaluated on every instance every tick; none of them ever holds here
    'job.state == "TIMEOUT"', 'job.state == "OUT_OF_MEMORY"', 'job.state == "NODE_FAIL"',
    "job.cpus > {n}", "job.nodes > {n}", "job.restarts > {n}", "job.elapsed > {n}000000",
    'job.state == "RUNNING" and job.cpus > {n}', 'job.name == "never-{n}"',
    'job.partition == "gpu{n}"',
]

RULESET = """\
version: 1
name: soak
every: {every}
notify:
  hook: {{urls: ["${{SOAK_HOOK}}"], retry_max: {retry}, timeout: 10s}}
jobs:
  soak:
    slurm:
      user: soak
      min_interval: {every}
      sacct_retries: 50
rules:
  - name: job-ended
    when: job.terminal
    resolve: false
    notify: hook
    message: >-
      rule=job-ended job={{{{ job.id }}}} state={{{{ job.state }}}}
      code={{{{ job.exit_code }}}}
  - name: job-failed
    when: job.state == "FAILED"
    resolve: false
    notify: hook
    message: "rule=job-failed job={{{{ job.id }}}} code={{{{ job.exit_code }}}}"
{others}"""

_LINE = re.compile(r"rule=(\S+) job=(\S+)(?: state=(\S+))? code=(\S+)")


@dataclass
class Msg:
    msg_id: str
    ids: list[str]
    body: str


@dataclass
class Hook:
    """A JSON webhook on 127.0.0.1 keeping each accepted message; `down` answers 503."""

    messages: list[Msg] = field(default_factory=list)
    refused: int = 0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if outer.down:
                        outer.refused += 1
                        status = 503
                    else:
                        status = 200
                        try:
                            body = json.loads(raw)
                        except ValueError:
                            body = {}
                        mid = self.headers.get("X-Rulesmon-Id", "")
                        ids = [i for i in str(body.get("rulesmon_ids", mid)).split(",") if i]
                        outer.messages.append(Msg(mid, ids, str(body.get("message", ""))))
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _code(rng: random.Random) -> int:
    return 0 if rng.random() < 0.9 else rng.choice([1, 2, 3, 42, 137])


def duration(text: str) -> float:
    """`30m`, `90s`, `1h` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


#: (seconds since the process started, RSS, open fds, threads, ticks done, child processes)
Sample = tuple[float, int, int, int, int, int]


@dataclass
class Life:
    """One rulesmon process: its samples (seconds since start, rss, fds, threads, ticks)."""

    pid: int
    born: float  # seconds after the soak's start
    samples: list[Sample] = field(default_factory=list)


def sample(proc: psutil.Process, t: float, ticks: int) -> Sample:
    with proc.oneshot():
        return (t, proc.memory_info().rss, proc.num_fds(), proc.num_threads(), ticks,
                len(proc.children()))


def latest_run(db: Path) -> tuple[int, int, int]:
    """(run id, ticks, overruns) of the latest run, zeros while there is none."""
    if not db.exists():
        return 0, 0, 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT id, ticks, overruns FROM runs ORDER BY id DESC "
                              "LIMIT 1").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return 0, 0, 0
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def warmed(samples: list[Sample],
           ticks: int) -> list[Sample]:
    """The samples of a process once it has done `ticks` ticks (its imports, first scheduler
    calls and delivery threads are started by then), up to its last one while still ticking
    (a process that has finished is tearing down)."""
    out = [s for s in samples if s[4] >= ticks]
    while len(out) > 1 and out[-1][4] == out[-2][4] and out[-1][3] < out[-2][3]:
        out.pop()
    return out


def growth(values: list[int]) -> int:
    """How far the floor rose: the lowest of the last third minus the lowest of the first
    third. A leak raises the floor; a pipe open while squeue runs, or a thread that lives
    for one delivery, only makes peaks."""
    if len(values) < 6:
        return 0
    third = len(values) // 3
    return min(values[-third:]) - min(values[:third])


def _runs(values: list[int]) -> str:
    """`5x3 6x40`: each value with how many samples in a row had it."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return " ".join(f"{v}x{n}" for v, n in out)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    total = duration(args.duration)
    rng = random.Random(args.seed)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="rulesmon-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    bindir = folder / "bin"
    bindir.mkdir()
    for tool in ("squeue", "sacct"):
        path = bindir / tool
        path.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    cycle = args.cycle if args.cycle is not None else min(total / 4, 120.0)
    last_end = 0.85 * total
    planned: list[tuple[float, float, float, int]] = []  # submit, start, end, exit code
    for _slot in range(args.jobs):
        if cycle <= 0:  # no cycling: every job in the queue from the start
            start = rng.uniform(0.0, 0.4) * total
            end = rng.uniform(max(start, 0.05 * total), last_end)
            planned.append((-60.0, start, end, _code(rng)))
            continue
        # the slot's first job is queued before the start and ends within the first cycle;
        # each next one is submitted as the previous ends and lives half to 0.9 of a cycle
        submit, start = -60.0, rng.uniform(0.0, 0.3) * cycle
        end = rng.uniform(max(start, 0.1 * cycle), cycle)
        while end <= last_end:
            planned.append((submit, start, end, _code(rng)))
            submit = end
            start = submit + rng.uniform(0.0, 0.2) * cycle
            end = submit + rng.uniform(0.5, 0.9) * cycle
    planned.sort()
    jobs = [[str(5_000_000 + n), round(sub, 2), round(st, 2), round(en, 2), code]
            for n, (sub, st, en, code) in enumerate(planned)]
    # the scheduler misbehaves on a schedule: each fault a few ticks long, then recovers
    faults = []
    t = 0.1 * total
    while t < 0.8 * total:
        length = rng.uniform(2, 6) * args.every
        faults.append([round(t, 2), round(t + length, 2), rng.choice(["squeue", "sacct", "all"]),
                       rng.choice(["hang", "fail", "garbage"])])
        t += length + rng.uniform(4, 12) * args.every
    down_from, down_to = total / 3, total / 3 + total / 3  # 10 minutes of 30
    others = "".join(
        f"  - name: never-{i}\n    when: '{NEVER[i % len(NEVER)].format(n=1000 + i)}'\n"
        f"    do: [log]\n" for i in range(max(0, args.rules - 2)))
    hook = Hook()
    url = hook.start()
    ruleset = folder / "soak.yaml"
    ruleset.write_text(RULESET.format(every=f"{args.every:g}s", retry=f"{max(1, args.every):g}s",
                                      others=others),
                       encoding="utf-8")
    db = folder / "soak.db"
    env = dict(os.environ, SOAK_DIR=str(folder), SOAK_HOOK=url,
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
               RULESMON_SLURM_TIMEOUT=str(max(2.0, 2 * args.every)))
    launcher = ["-m", "rulesmon"]
    if args.tracemalloc is not None:
        args.tracemalloc.mkdir(parents=True, exist_ok=True)
        launcher = [str(Path(__file__).with_name("soak_traced.py"))]
        env.update(SOAK_TRACE_DIR=str(args.tracemalloc),
                   SOAK_TRACE_FIRST=str(max(cycle, 10 * args.every)),
                   SOAK_TRACE_EVERY=str(max(10.0, cycle / 4)))
    kills = sorted(rng.uniform(0.05, 0.9) * total for _ in range(args.kills))
    t0 = time.time()
    (folder / "plan.json").write_text(json.dumps({
        "t0": t0, "jobs": jobs, "faults": faults, "sacct_fields": list(sp.SACCT_FIELDS),
        "min_job_age": args.min_job_age}),
        encoding="utf-8")
    lives: list[Life] = []
    killed = 0
    exit_code: int | None = None
    errors = folder / "rulesmon.err"
    deadline = t0 + total * 1.5 + 120
    with errors.open("ab") as err:
        while time.time() < deadline and exit_code is None:
            proc = subprocess.Popen([sys.executable, *launcher, "run", str(ruleset),
                                     "--state", str(db)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=err, cwd=folder)
            before = latest_run(db)[0]  # ticks count once this process's run is recorded
            born = time.time()
            life = Life(proc.pid, born - t0)
            lives.append(life)
            ps = psutil.Process(proc.pid)
            next_sample = born
            while proc.poll() is None and time.time() < deadline:
                now = time.time()
                hook.down = down_from <= now - t0 < down_to
                if kills and now - t0 >= kills[0]:
                    kills.pop(0)
                    proc.send_signal(signal.SIGKILL)
                    killed += 1
                    break
                if now >= next_sample:
                    with contextlib.suppress(psutil.Error):
                        run_id, ticks, _ = latest_run(db)
                        life.samples.append(sample(ps, now - born,
                                                   ticks if run_id > before else 0))
                    next_sample = now + args.sample_every
                time.sleep(0.05)
            if proc.poll() is None and time.time() >= deadline:
                proc.send_signal(signal.SIGKILL)
            code = proc.wait()
            if code >= 0:
                exit_code = code
    hook.down = False
    # leftovers of killed runs: fake scheduler calls still hanging, by their path
    for leftover in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(a.startswith(str(bindir)) for a in leftover.info["cmdline"] or ()):
                leftover.kill()
    hook.stop()
    return report(args, total, cycle, jobs, hook, lives, killed, exit_code, db, errors)


def steady(life: Life, samples: list[Sample], cycle: float, total: float) -> list[Sample]:
    """The samples of a process in the steady state: after its first full cycle (by then every
    job it found has ended and been replaced, so its facts, alert states and sent notifications
    cover a cycle's worth of jobs), and before the last jobs end without successors."""
    end = 0.85 * total - cycle
    return [s for s in samples if s[0] >= cycle and life.born + s[0] <= end]


def report(args: argparse.Namespace, total: float, cycle: float, jobs: list[list[Any]],
           hook: Hook,
           lives: list[Life], killed: int, exit_code: int | None, db: Path,
           errors: Path) -> dict[str, Any]:
    owed: dict[tuple[str, str], int] = {}
    for jid, _submit, _start, _end, code in jobs:
        owed[("job-ended", jid)] = code
        if code:
            owed[("job-failed", jid)] = code
    first: dict[str, tuple[tuple[str, ...], str]] = {}
    conflicts, resent = 0, 0
    delivered: dict[tuple[str, str], set[str]] = {}
    wrong: list[str] = []
    for msg in hook.messages:
        payload = (tuple(msg.ids), msg.body)
        if msg.msg_id in first:
            resent += 1
            conflicts += first[msg.msg_id] != payload
            continue
        first[msg.msg_id] = payload
        lines = [m for m in map(_LINE.search, msg.body.splitlines()) if m]
        for nid, m in zip(msg.ids, lines, strict=False):
            key = (m.group(1), m.group(2))
            delivered.setdefault(key, set()).add(nid)
            code = owed.get(key)
            said = m.group(4)
            if code is not None and said not in (str(code), "unknown"):
                wrong.append(f"{key[1]} code {said}, not {code}")
    lost = sorted(set(owed) - set(delivered))
    repeated = sorted(k for k, v in delivered.items() if len(v) > 1)
    warm = [warmed(life.samples, args.warmup_ticks) for life in lives]
    calm = [steady(life, w, cycle, total) if cycle > 0 else w for life, w in zip(lives, warm,
                                                                                   strict=True)]
    rss_growth = max((growth([s[1] for s in w]) for w in calm), default=0)
    longest = max(calm, key=len, default=[])
    # fds and threads between scheduler calls: a call under way holds pipes, and a hung one
    # a thread, until its timeout ends it
    quiet = [[s for s in w if s[5] == 0] for w in warm]
    fd_growth = max((growth([s[2] for s in q]) for q in quiet), default=0)
    thread_growth = max((growth([s[3] for s in q]) for q in quiet), default=0)
    periods = []
    for life in lives:
        ticked = [s for s in life.samples if s[4] > 0]
        if len(ticked) >= 2 and ticked[-1][4] > ticked[0][4]:
            periods.append((ticked[-1][0] - ticked[0][0]) / (ticked[-1][4] - ticked[0][4]))
    # from a process's start to its first tick recorded (imports, lint, the first squeue)
    startups = [next((s[0] for s in life.samples if s[4] >= 1), None) for life in lives]
    overruns = 0
    with contextlib.suppress(sqlite3.Error):
        con = sqlite3.connect(str(db))
        overruns = int(con.execute("SELECT coalesce(sum(overruns), 0) FROM runs").fetchone()[0])
        con.close()
    result = {
        "duration_s": total, "jobs": len(jobs), "rules": args.rules, "every_s": args.every,
        "kills": killed, "processes": len(lives), "exit_code": exit_code,
        "cycle_s": round(cycle, 1),
        "steady_seconds_longest_life": round(longest[-1][0] - longest[0][0]) if longest else 0,
        "rss_mb_after_warmup": round(longest[0][1] / 2**20, 1) if longest else None,
        "rss_mb_end_of_steady": round(longest[-1][1] / 2**20, 1) if longest else None,
        "rss_mb_peak": round(max((s[1] for w in warm for s in w), default=0) / 2**20, 1),
        "rss_growth_mb": round(rss_growth / 2**20, 1), "fd_growth": fd_growth,
        "thread_growth": thread_growth,
        "first_tick_s_max": max((round(x, 1) for x in startups if x is not None), default=None),
        "lives_without_a_tick": sum(x is None for x in startups),
        "tick_period_s": round(sum(periods) / len(periods), 2) if periods else None,
        "overruns": overruns, "owed": len(owed), "delivered": len(set(owed) & set(delivered)),
        "lost": len(lost), "messages": len(hook.messages), "refused_while_down": hook.refused,
        "sent_again": resent, "payload_conflicts": conflicts,
        "notifications_under_two_ids": len(repeated), "wrong_content": len(wrong),
        "folder": str(db.parent),
        "examples": {"lost": [list(k) for k in lost[:5]], "repeated": [list(k) for k in
                                                                      repeated[:5]],
                     "wrong": wrong[:5]},
        "lives": [{"pid": life.pid, "seconds": round(life.samples[-1][0], 1)
                   if life.samples else 0, "threads": _runs([s[3] for s in life.samples]),
                   "fds": _runs([s[2] for s in life.samples]),
                   "rss_mb_warm_first_last_max": [round(x / 2**20, 1) for x in (
                       (w[0][1], w[-1][1], max(s[1] for s in w)) if w else ())]}
                  for life, w in zip(lives, warm, strict=True)],
        "stderr_tail": errors.read_text(errors="replace")[-1500:],
    }
    broken = []
    if lost:
        broken.append(f"{len(lost)} notifications lost")
    if conflicts:
        broken.append(f"{conflicts} ids re-sent with another payload")
    if resent > killed:
        broken.append(f"{resent} messages sent again, more than the {killed} kills")
    if repeated:
        broken.append(f"{len(repeated)} notifications delivered under two ids")
    if wrong:
        broken.append(f"{len(wrong)} notifications with a wrong exit code")
    if fd_growth > 0:
        broken.append(f"open fds grew by {fd_growth}")
    if thread_growth > 0:
        broken.append(f"threads grew by {thread_growth}")
    if rss_growth > 20 * 2**20:
        broken.append(f"RSS grew by {rss_growth / 2**20:.1f} MB after warm-up")
    if exit_code != (1 if any(j[3] for j in jobs) else 0):
        broken.append(f"exit code {exit_code}")
    result["broken"] = broken
    # not rulesmon's promises: whether this run exercised what it was meant to
    result["not_exercised"] = [note for note, missed in [
        ("no delivery was tried while the receiver was down", hook.refused == 0),
        ("no process was killed", killed == 0),
        ("no process lived through a cycle into the steady state: memory not judged",
         cycle > 0 and not any(len(c) >= 6 for c in calm))] if missed]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="30m", help="30m, 90s, 1h (default 30m)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--every", type=float, default=5.0, help="tick interval, seconds")
    parser.add_argument("--kills", type=int, default=None,
                        help="SIGKILLs at random moments (default: one per 3 minutes, >= 3)")
    parser.add_argument("--cycle", type=float, default=None,
                        help="seconds in which every job ends and another takes its place "
                             "(default: 120, at most a quarter of the duration; 0: none replaced)")
    parser.add_argument("--min-job-age", type=float, default=300.0,
                        help="seconds squeue still lists an ended job (slurm.conf MinJobAge)")
    parser.add_argument("--tracemalloc", type=Path, default=None,
                        help="run rulesmon under tracemalloc; write each process's top growth "
                             "sites since its warm-up to DIR/trace-<pid>.txt")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--sample-every", type=float, default=2.0)
    parser.add_argument("--warmup-ticks", type=int, default=10,
                        help="a process's samples count from its tick N on")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work folder (default: a new temporary one, kept)")
    args = parser.parse_args()
    if args.kills is None:
        args.kills = max(3, int(duration(args.duration) // 180))
    result = soak(args)
    rows = [(k, v) for k, v in result.items()
            if k not in ("examples", "stderr_tail", "broken", "lives", "not_exercised")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for promise in result["broken"]:
        print(f"BROKEN: {promise}")
    for note in result["not_exercised"]:
        print(f"NOT EXERCISED: {note}")
    if result["broken"]:
        print(json.dumps(result["examples"]))
        print(json.dumps(result["lives"]))
        print(result["stderr_tail"])
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 1 if result["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
