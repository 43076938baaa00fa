"""The schedule: crontab lines checked at load, flags from the last fire times, model-file watch."""

import threading
from datetime import datetime, timezone

import pytest

from lavalamp.daemon.config import ConfigError, ScheduleConfig, parse_config
from lavalamp.daemon.schedule import ModelWatch, Schedule, cron, last_fire, newer_of

from .fakes import save_fake_lamp

NOON = datetime(2026, 6, 10, 12, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("schedule, message", [
    ({"reseed": "61 * * * *"}, "schedule.reseed: invalid crontab line '61 * * * *'"),
    ({"display_on": "0 7 * *", "display_off": "0 23 * * *"}, "schedule.display_on: invalid crontab"),
    ({"display_off": "0 23 * * *"}, "schedule.display_off is set but schedule.display_on is not"),
    ({"dim": "0 20 * * *"}, "schedule.dim is set but schedule.undim is not"),
    ({"timezone": "Mars/Olympus"}, "schedule.timezone: unknown IANA time zone 'Mars/Olympus'"),
])
def test_bad_schedules_are_refused_at_load(schedule, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        parse_config({"schedule": schedule})


def test_last_fire_and_which_came_last():
    on, off = cron("0 7 * * *", "UTC"), cron("0 23 * * *", "UTC")
    assert last_fire(on, NOON) == datetime(2026, 6, 10, 7, 0, tzinfo=timezone.utc)
    assert last_fire(off, NOON) == datetime(2026, 6, 9, 23, 0, tzinfo=timezone.utc)
    assert newer_of(on, off, NOON) is True  # 12:30: on since 07:00
    assert newer_of(on, off, datetime(2026, 6, 10, 23, 30, tzinfo=timezone.utc)) is False
    assert newer_of(None, None, NOON) is True
    assert last_fire(cron("0 0 1 1 *", "UTC"), NOON) == datetime(2026, 1, 1, tzinfo=timezone.utc)


def schedule(**values):
    calls = {"reseed": 0, "model": 0, "state": {}}
    s = Schedule(config=ScheduleConfig(**values), model_path=None,
                 on_state=calls["state"].update,
                 on_reseed=lambda: calls.__setitem__("reseed", calls["reseed"] + 1),
                 on_model_change=lambda: calls.__setitem__("model", calls["model"] + 1))
    return s, calls


def test_the_state_starts_as_the_schedule_says_and_jobs_change_it():
    s, calls = schedule(display_on="0 0 1 1 *", display_off="* * * * *", dim="* * * * *",
                        undim="0 0 1 1 *", dim_level=0.3, reseed="*/5 * * * *", watch_model_s=0)
    assert calls["state"] == {"state.display_on": False, "state.dimmed": True}
    assert set(s.job_ids()) == {"display_on", "display_off", "dim", "undim", "reseed"}
    s._jobs["display_on"][0]()
    s._jobs["undim"][0]()
    s._jobs["reseed"][0]()
    assert calls["state"] == {"state.display_on": True, "state.dimmed": False}
    assert calls["reseed"] == 1
    calls["state"].clear()
    s.configure(ScheduleConfig())
    assert calls["state"] == {"state.display_on": True, "state.dimmed": False}
    assert s.job_ids() == []


def test_apscheduler_waits_for_start_and_then_runs_every_job():
    s, calls = schedule(reseed="0 0 1 1 *", watch_model_s=0)
    assert s._scheduler is None and s.next_run("reseed") is None  # nothing imported or running yet
    s.set_playlist(30.0, None, lambda: None)
    s.start()
    try:
        assert {job.id for job in s._scheduler.get_jobs()} == {"reseed", "next_lamp"} == set(s.job_ids())
        assert (s.next_run("reseed").month, s.next_run("reseed").day) == (1, 1)
        s.configure(ScheduleConfig(dim="0 3 * * *", watch_model_s=0))  # a reload: the jobs follow
        assert {job.id for job in s._scheduler.get_jobs()} == {"dim", "next_lamp"}
    finally:
        s.shutdown()


def test_a_replaced_model_file_is_noticed_once(tmp_path):
    path = tmp_path / "lamp.safetensors"
    save_fake_lamp(path)
    watch = ModelWatch(path)
    assert not watch.changed()
    save_fake_lamp(path, seed=2)  # atomic replace: a new inode
    assert watch.changed() and not watch.changed()
    path.unlink()
    assert not watch.changed()


def test_the_watch_job_runs_on_the_scheduler_thread(tmp_path):
    path = tmp_path / "lamp.safetensors"
    save_fake_lamp(path)
    changed = threading.Event()
    s = Schedule(config=ScheduleConfig(watch_model_s=0.05), model_path=path, on_state=lambda _: None,
                 on_reseed=lambda: None, on_model_change=changed.set)
    s.start()
    try:
        save_fake_lamp(path, seed=3)
        assert changed.wait(10)
    finally:
        s.shutdown()
