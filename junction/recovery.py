"""The monitor's verdict on a service: down, flapping, recovered, and what the averages judge.

Window averages (success rate, health score over 15 minutes) are slow on both ends: a
one-minute outage keeps a service "critical" for the rest of the window after it came
back. :func:`judge_window` separates the *outage* (runs of consecutive failures) from the
*service's usual behaviour* (everything else), with these rules:

* **Outage**: a run of at least ``down_after`` consecutive failures. The service is down
  while its current failure streak is that long.
* **Noise-aware confirmation**: a service that fails now and then is not down because
  two of its random failures came in a row. With ``f`` its failure rate outside outages,
  an outage needs ``k`` failures in a row, the smallest ``k >= down_after`` with
  ``f ** k <= NOISE_FALSE_DOWN`` (at most ``down_after + MAX_EXTRA_CONFIRMATIONS``). A
  service without failures keeps ``down_after``.
  This applies to services failing at most ``noise_ceiling`` of the time outside outages
  (5 %, the default warning line): a service failing more often is not healthy-but-noisy.
* **Recovery**: after an outage the service stays down until ``recover_after``
  observations in a row succeeded; then the outage is over and, if the service is
  otherwise clean (failing at most ``noise_ceiling`` outside outages), its failures leave
  the observations that judge status, score and the threshold alerts. They stay
  everywhere else: the SLA and error budget, uptime, the report, the history. A service
  that is degraded besides its outages keeps them in its averages (forgiving them would
  make its alerts flap across their lines).
* **Usual noise**: on a service that fails now and then (remembered rate ``p`` at most
  ``noise_ceiling``), the window's isolated failures leave the judged observations while
  their count is what ``p`` explains (Poisson tail above :data:`NOISE_SIGNIFICANCE`): four
  random failures of 33 probes are a 2 % service's ordinary day, not "success rate 88 %".
  More failures than its noise explains are judged as usual.
* **Flapping**: ``flap_outages`` or more outages in the window make the service flapping;
  it stays down until ``flap_quiet`` observations in a row succeeded (one incident, not
  one page per flap).

The defaults are the module constants below; ``down_after`` is the
``monitor_down_after`` setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from junction.scoring import Observation

RECOVER_AFTER = 1
"""Successful observations in a row that end an outage."""
FLAP_OUTAGES = 2
"""Outages within the window that make a service flapping."""
FLAP_QUIET = 10
"""Successful observations in a row that end flapping."""
NOISE_FALSE_DOWN = 1e-6
"""Chance, per observation, that random failures alone look like an outage."""
MAX_EXTRA_CONFIRMATIONS = 2
"""Most failures a noisy service's outage needs beyond ``down_after``."""
NOISE_CEILING = 0.05
"""Failure rate outside outages above which a service is degraded, not noisy."""


NOISE_SIGNIFICANCE = 1e-3
"""A window's isolated failures are the service's usual noise while at least this likely."""
NOISE_MEMORY = 2880
"""Observations the noise memory mostly covers (a day of 30-second probes)."""
NOISE_RUN = 2
"""Failure runs up to this long count as noise in the memory (longer ones are outages)."""


@dataclass
class NoiseMemory:
    """A service's failure rate outside outages, exponentially weighted over about
    :data:`NOISE_MEMORY` observations (runs of at most :data:`NOISE_RUN` failures count)."""

    seen: float = 0.0
    failed: float = 0.0

    def add(self, ok: bool, run_before: int) -> None:
        """Count one observation; ``run_before`` = failures in a row just before it."""
        decay = 1.0 - 1.0 / NOISE_MEMORY
        self.seen = self.seen * decay + 1.0
        self.failed *= decay
        if ok and 0 < run_before <= NOISE_RUN:
            self.failed += run_before

    @property
    def rate(self) -> float:
        """The remembered noise rate (0 before anything was seen)."""
        return self.failed / self.seen if self.seen else 0.0


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge_window` concluded.

    Attributes:
        down: The service is down (in an outage, recovering from one, or flapping).
        flapping: Down because of repeated outages in the window.
        streak: Failures in a row, newest first.
        needed: Failures in a row that make an outage for this service now.
        outages: Outages (runs of ``needed`` failures or more) in the window.
        trailing_ok: Successes in a row, newest first.
        judged: The observations status, score and threshold alerts are judged on.
        forgiven: Failures of ended outages left out of ``judged``.
        reason: One line for the health reasons, or ``""``.
    """

    down: bool
    flapping: bool
    streak: int
    needed: int
    outages: int
    trailing_ok: int
    judged: list[Observation]
    forgiven: int
    reason: str


def _runs(items: Sequence[Observation]) -> list[tuple[int, int]]:
    """``(start, end)`` index ranges (end exclusive) of consecutive failures."""
    runs = []
    start = None
    for i, o in enumerate(items):
        if not o.ok and start is None:
            start = i
        elif o.ok and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(items)))
    return runs


def poisson_tail(k: int, mean: float) -> float:
    """``P(X >= k)`` for ``X ~ Poisson(mean)``."""
    if k <= 0:
        return 1.0
    term = math.exp(-mean)
    below = term
    for i in range(1, k):
        term *= mean / i
        below += term
    return max(0.0, 1.0 - below)


def needed_failures(
    noise_rate: float, down_after: int, noise_ceiling: float = NOISE_CEILING
) -> int:
    """Failures in a row that make an outage at failure rate ``noise_rate`` (see module)."""
    if noise_rate <= 0 or noise_rate > noise_ceiling:
        return down_after
    k = math.ceil(math.log(NOISE_FALSE_DOWN) / math.log(noise_rate) - 1e-9)
    return min(max(down_after, k), down_after + MAX_EXTRA_CONFIRMATIONS)


def judge_window(
    items: Sequence[Observation],
    *,
    down_after: int,
    recover_after: int = RECOVER_AFTER,
    flap_outages: int = FLAP_OUTAGES,
    flap_quiet: int = FLAP_QUIET,
    noise_ceiling: float = NOISE_CEILING,
    noise_floor: float = 0.0,
) -> Verdict:
    """The monitor's verdict on a window's observations (rules in the module docstring).

    Args:
        items: The window's observations, oldest first.
        down_after: Failures in a row that make an outage (``monitor_down_after``).
        recover_after: Successes in a row that end one.
        flap_outages: Outages in the window that make the service flapping.
        flap_quiet: Successes in a row that end flapping.
        noise_ceiling: Failure rate outside outages up to which a service is noisy (not
            degraded): noise-aware confirmation and forgiving ended outages apply.
        noise_floor: The service's remembered noise rate (:attr:`NoiseMemory.rate`); the
            window's own rate is used when higher.
    """
    runs = _runs(items)
    streak = runs[-1][1] - runs[-1][0] if runs and runs[-1][1] == len(items) else 0
    trailing_ok = len(items) - runs[-1][1] if runs else len(items)
    # The noise rate comes from failures outside runs of down_after or more: an outage
    # does not make the service look noisy.
    # A run at the window's start may be the tail of an outage cut by the window: it is
    # neither noise nor a new outage (else verdicts flip as an old outage leaves).
    cut = [(s, e) for s, e in runs if s == 0 and e < len(items)]
    whole = [r for r in runs if r not in cut]
    isolated = sum(e - s for s, e in whole if e - s < down_after)
    outage_failures = sum(e - s for s, e in runs if e - s >= down_after or (s, e) in cut)
    rest = len(items) - outage_failures
    noise = isolated / rest if rest else 0.0
    needed = needed_failures(max(noise, noise_floor), down_after, noise_ceiling)
    outages = [(s, e) for s, e in whole if e - s >= needed]
    ongoing = streak >= needed
    ended = len(outages) - (1 if ongoing else 0)
    # Observations since the last outage ended (an isolated blip later does not restart it).
    since = len(items) - outages[-1][1] if outages else len(items)
    flapping = not ongoing and len(outages) >= flap_outages and since < flap_quiet
    recovering = not ongoing and not flapping and ended > 0 and since < recover_after
    down = ongoing or flapping or recovering
    judged = list(items)
    forgiven = 0
    drop: set[int] = set()
    if not down and (outages or cut) and noise <= noise_ceiling:
        drop = {i for s, e in [*cut, *outages] for i in range(s, e)}
    usual = 0 < noise_floor <= noise_ceiling and isolated > 0
    if usual and poisson_tail(isolated, noise_floor * rest) >= NOISE_SIGNIFICANCE:
        drop |= {i for s, e in whole if e - s < down_after for i in range(s, e)}
    if drop:
        judged = [o for i, o in enumerate(items) if i not in drop]
        forgiven = len(drop)
    if ongoing:
        reason = f"down: last {streak} checks failed"
    elif flapping:
        reason = (
            f"flapping: {len(outages)} outages in the window, up for {since} of {flap_quiet} checks"
        )
    elif recovering:
        reason = f"recovering: up for {since} of {recover_after} checks"
    elif forgiven and (outages or cut):
        reason = f"recovered: {forgiven} failures of {len(outages)} ended outage(s) not judged"
    elif forgiven:
        reason = f"usual noise: {forgiven} isolated failures not judged"
    else:
        reason = ""
    return Verdict(
        down=down,
        flapping=flapping,
        streak=streak,
        needed=needed,
        outages=len(outages),
        trailing_ok=trailing_ok,
        judged=judged,
        forgiven=forgiven,
        reason=reason,
    )


__all__ = [
    "FLAP_OUTAGES",
    "FLAP_QUIET",
    "NOISE_FALSE_DOWN",
    "NOISE_MEMORY",
    "RECOVER_AFTER",
    "NoiseMemory",
    "Verdict",
    "judge_window",
    "needed_failures",
]
