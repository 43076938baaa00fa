"""Cron-style jobs (display on/off, dimming, periodic reseed, model-file watch) that only make requests."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo

from .config import ScheduleConfig, cron

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)

LOOKBACKS = (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=366))


def last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The most recent time at or before `now` the trigger fired (looking back up to a year)."""
    for lookback in LOOKBACKS:
        last, t = None, trigger.get_next_fire_time(None, now - lookback)
        while t is not None and t <= now:
            last, t = t, trigger.get_next_fire_time(t, t + timedelta(seconds=1))
        if last is not None:
            return last
    return None


def newer_of(on: CronTrigger | None, off: CronTrigger | None, now: datetime) -> bool:
    """Whether the `on` trigger fired more recently than the `off` one (no `off` = always on)."""
    if off is None:
        return True
    last_on, last_off = (last_fire(t, now) if t else None for t in (on, off))
    if last_off is None:
        return True
    return last_on is not None and last_on > last_off


class ModelWatch:
    """Notices when a file is replaced or rewritten (inode, size or modification time change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        """True once per change of the file (a vanished file is not a change to load)."""
        now = self._signature()
        if now is None or now == self._seen:
            return False
        self._seen = now
        return True


class Schedule:
    """Runs the jobs on a background thread. Display on/off and dimming go to `on_state` as
    changes of the lamp's state ({"state.display_on": bool} or {"state.dimmed": bool}).

    Until `start()` it only holds the jobs: apscheduler (0.15 s to import) is imported and its
    thread made there, after the daemon's producers have begun the first frames."""

    def __init__(self, *, config: ScheduleConfig, model_path: Path | None,
                 on_state: Callable[[dict], None], on_reseed: Callable[[], None],
                 on_model_change: Callable[[], None]) -> None:
        self._on_state = on_state
        self._on_reseed = on_reseed
        self._on_model_change = on_model_change
        self._model_path = model_path
        self._jobs: dict[str, tuple[Callable[[], Any], Any]] = {}
        """Job id -> (action, a CronTrigger or interval seconds)."""
        self._playlist_job: tuple[Callable[[], None], Any] | None = None
        self._scheduler: Any = None
        self.configure(config)

    def configure(self, config: ScheduleConfig, model_path: Path | None = None) -> None:
        """(Re)build every job from `config` and say what the schedule says now."""
        self.config = config
        self._model_path = model_path or self._model_path
        tz = config.timezone
        triggers = {name: cron(getattr(config, name), tz) if getattr(config, name) else None
                    for name in ("display_on", "display_off", "dim", "undim", "reseed")}
        now = datetime.now(ZoneInfo(tz)) if tz else datetime.now().astimezone()
        display_on = newer_of(triggers["display_on"], triggers["display_off"], now)
        dimmed = triggers["dim"] is not None and not newer_of(triggers["undim"], triggers["dim"], now)
        actions = {"display_on": lambda: self._set("display_on", True),
                   "display_off": lambda: self._set("display_on", False),
                   "dim": lambda: self._set("dimmed", True),
                   "undim": lambda: self._set("dimmed", False),
                   "reseed": self._on_reseed}
        self._jobs = {name: (actions[name], trigger) for name, trigger in triggers.items()
                      if trigger is not None}
        if config.watch_model_s > 0 and self._model_path is not None:
            watch = ModelWatch(self._model_path)
            self._jobs["watch_model"] = (lambda: watch.changed() and self._on_model_change(),
                                         config.watch_model_s)
        self._install()
        log.info("schedule: display %s, %s, %d job(s)", "on" if display_on else "off",
                 "dimmed" if dimmed else "not dimmed", len(self.job_ids()))
        self._on_state({"state.display_on": display_on, "state.dimmed": dimmed})

    def set_playlist(self, every_s: float | None, change: str | None,
                     on_next_lamp: Callable[[], None] | None) -> None:
        """Move on to the next lamp every `every_s` seconds or at the crontab line `change`
        (in the schedule's time zone); both None (or no callback): no playlist job."""
        if on_next_lamp is None or (every_s is None and change is None):
            self._playlist_job = None
        else:
            when = every_s if every_s is not None else cron(change, self.config.timezone)
            self._playlist_job = (on_next_lamp, when)
        self._install()

    def job_ids(self) -> list[str]:
        """The jobs the schedule runs (or will run once started), "next_lamp" for the playlist's."""
        return list(self._all_jobs())

    def _all_jobs(self) -> dict[str, tuple[Callable[[], Any], Any]]:
        return {**self._jobs, **({"next_lamp": self._playlist_job} if self._playlist_job else {})}

    def _install(self) -> None:
        """Put the jobs on the running scheduler (before `start()` they wait for it)."""
        if self._scheduler is None:
            return
        from apscheduler.triggers.interval import IntervalTrigger

        self._scheduler.remove_all_jobs()
        for name, (action, when) in self._all_jobs().items():
            trigger = IntervalTrigger(seconds=when) if isinstance(when, (int, float)) else when
            self._scheduler.add_job(action, trigger, id=name, name=name)

    def _set(self, name: str, value: bool) -> None:
        log.info("schedule: %s %s", name, value)
        self._on_state({f"state.{name}": value})

    def start(self) -> None:
        """Start the scheduler thread with the jobs."""
        from apscheduler.schedulers.background import BackgroundScheduler

        tz = self.config.timezone
        self._scheduler = BackgroundScheduler(timezone=ZoneInfo(tz) if tz else None)
        self._install()
        self._scheduler.start()

    def next_run(self, job_id: str) -> datetime | None:
        """When a job runs next (None: no such job, or not started)."""
        job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
        return job.next_run_time if job is not None else None

    def shutdown(self) -> None:
        """Stop the scheduler thread without waiting for running jobs (they only set flags)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
