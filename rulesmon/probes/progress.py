"""Progress, throughput, ETA and slowdown, derived from a job's `progress:` declaration.

Three estimates as the GPU design document asks (linear over the whole run, the recent
window's throughput, a moving average of throughput); `eta` is the most conservative one and
`confidence` says how far they agree. `progress.job_*` is the same over a whole job: the done
and total of its instances summed (or `job_total:`), with its own tracker.

Also which of the progress bars of a log is the main one, whose draws the logs probe reads
(`BarFollower`, at the end).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import Facts


@dataclass
class Tracker:
    """Progress samples of one instance."""

    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    first: tuple[float, float] | None = None
    last_advance: float | None = None
    peak_rate: float = 0.0
    ema_rate: float | None = None

    def update(self, now: float, done: float, total: float | None, window: float,
               stall_after: float | None, unit: str) -> Facts:
        if self.first is None:
            self.first = (now, done)
            self.last_advance = now
        if self.samples and done > self.samples[-1][1]:
            self.last_advance = now
        elif self.samples and done < self.samples[-1][1]:  # restarted counting
            self.samples.clear()
            self.first = (now, done)
            self.last_advance = now
        self.samples.append((now, done))
        while len(self.samples) > 2 and self.samples[0][0] < now - window:
            self.samples.popleft()
        facts: Facts = {"progress.done": done, "progress.unit": unit}
        t0, d0 = self.first
        elapsed = now - t0
        facts["progress.elapsed"] = elapsed
        facts["progress.age"] = now - (self.last_advance or now)
        if stall_after is not None:
            facts["progress.stalled"] = facts["progress.age"] >= stall_after
        rate = avg_rate = None
        (ts, ds), (te, de) = self.samples[0], self.samples[-1]
        if te > ts:
            rate = (de - ds) / (te - ts)
            facts["progress.rate"] = rate
            self.peak_rate = max(self.peak_rate, rate)
            facts["progress.peak_rate"] = self.peak_rate
            if self.peak_rate > 0:
                facts["progress.slowdown"] = max(0.0, 1 - rate / self.peak_rate)
            self.ema_rate = rate if self.ema_rate is None else 0.8 * self.ema_rate + 0.2 * rate
        if elapsed > 0:
            avg_rate = (done - d0) / elapsed
            facts["progress.avg_rate"] = avg_rate
        if total:
            facts["progress.total"] = total
            facts["progress.pct"] = min(100.0, 100.0 * done / total)
            remaining = max(0.0, total - done)
            estimates = _estimates(remaining, done - d0, elapsed, rate, self.ema_rate)
            facts.update(estimates)
            values = [v for k, v in estimates.items() if k != "progress.eta"]
            if values:
                eta = max(values)
                facts["progress.eta"] = eta
                facts["progress.eta_at"] = now + eta
                spread = max(values) / max(min(values), 1e-9) if min(values) > 0 else 1.0
                facts["progress.confidence"] = ("high" if spread <= 1.2 and len(values) >= 2
                                                else "medium" if spread <= 1.5 else "low")
        return facts


def _estimates(remaining: float, advanced: float, elapsed: float, rate: float | None,
               ema: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if advanced > 0 and elapsed > 0:
        out["progress.eta_linear"] = remaining * elapsed / advanced
    if rate and rate > 0:
        out["progress.eta_recent"] = remaining / rate
    if ema and ema > 0:
        out["progress.eta_avg"] = remaining / ema
    return out


@dataclass
class JobProgress:
    """Progress of a whole job, summed over its instances (workers, array tasks), as the GPU
    design document sums items over workers: each member's last done and total are kept, so
    a member that leaves the snapshot (a purged array task) still counts what it did."""

    members: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    tracker: Tracker = field(default_factory=Tracker)

    def update(self, now: float, current: dict[str, tuple[float, float | None]],
               job_total: float | None, window: float, stall_after: float | None,
               unit: str) -> Facts:
        """`progress.job_*` facts from the members' (done, total) this tick."""
        self.members.update(current)
        done = sum(d for d, _ in self.members.values())
        totals = [t for _, t in self.members.values()]
        total = job_total if job_total is not None else (
            sum(t for t in totals if t is not None) if totals and None not in totals else None)
        facts = self.tracker.update(now, done, total or None, window, stall_after, unit)
        out: Facts = {"progress.job_members": len(self.members)}
        for name in ("done", "total", "pct", "rate", "avg_rate", "eta", "eta_at", "elapsed",
                     "age", "stalled", "slowdown", "confidence"):
            value = facts.get(f"progress.{name}")
            if value is not None:
                out[f"progress.job_{name}"] = value
        return out


def job_progress(trackers: dict[str, JobProgress], instances: Mapping[str, Facts],
                 specs: Mapping[str, Any], now: float) -> None:
    """Adds `progress.job_*` to every instance of each job with a `progress:` declaration,
    from the instances' own `progress.done` and `progress.total`."""
    by_job: dict[str, dict[str, tuple[float, float | None]]] = {}
    members: dict[str, list[Facts]] = {}
    for key, facts in instances.items():
        job_key = facts.get("job.key")
        if not isinstance(job_key, str) or job_key not in specs:
            continue
        members.setdefault(job_key, []).append(facts)
        done = facts.get("progress.done")
        if isinstance(done, int | float) and not isinstance(done, bool):
            total = facts.get("progress.total")
            by_job.setdefault(job_key, {})[key] = (
                float(done), float(total) if isinstance(total, int | float) else None)
    for job_key, current in by_job.items():
        spec = specs[job_key]
        agg = trackers.setdefault(job_key, JobProgress())
        facts = agg.update(now, current, getattr(spec, "job_total", None), spec.window,
                           spec.stall_after, spec.unit)
        for member in members.get(job_key, ()):
            member.update(facts)


# --- progress bars in logs -----------------------------------------------------------------------
#
# A log often holds several progress bars: the Hugging Face Trainer's training bar, its
# evaluation bar and the `Writing model shards` bar of each checkpoint; Lightning's epoch bar,
# its sanity-check, validation and test bars; `datasets`' `Map` bars before training. The
# main bar is followed by its identity, not as "the last bar drawn". A bar's identity (its
# family) is its description with digit runs blanked (`Epoch 3` and `Epoch 4` are one
# family, the next epoch's bar) and its total. A draw of the main bar's family is always
# the main bar; a draw of another family replaces it only once that bar has run at least as
# long as the main bar had at its last draw (by the elapsed times the bars print, to the
# second). So a short bar
# drawn during or after a long one (an evaluation pass, a checkpoint written, the final
# `trainer.validate`) never replaces it, and the bar that runs longest becomes the main one
# (the training bar after a `Map` pass that took 20 s, once training has run 20 s). A bar
# that prints no elapsed time replaces the main bar at once, as does any bar when the main
# bar printed none.

_DIGITS = re.compile(r"\d+")


def duration(text: str | None) -> float | None:
    """Seconds of an elapsed or remaining time as tqdm (`05:07`, `1:02:03`) and Rich
    (`0:00:07`) print it; None for an unknown one (`?`, `-:--:--`)."""
    if not text:
        return None
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds


def bar_family(desc: str | None, total: str | None) -> tuple[str, str]:
    """A bar's identity: its description with digit runs blanked, and its total."""
    return _DIGITS.sub("#", (desc or "").strip().rstrip(":").strip()), total or ""


@dataclass
class BarFollower:
    """Which bar of one file is the main one (see above)."""

    family: tuple[str, str] | None = None
    elapsed: float | None = None  #: the main bar's elapsed time at its last draw

    def is_main(self, family: tuple[str, str]) -> bool:
        return family == self.family

    def offer(self, family: tuple[str, str], elapsed: float | None) -> bool:
        """Whether a draw is of the main bar, which it may become; the draws of a file are
        offered in order."""
        if self.family is not None and family != self.family and not (
                elapsed is None or self.elapsed is None or elapsed >= self.elapsed):
            return False
        self.family, self.elapsed = family, elapsed
        return True
