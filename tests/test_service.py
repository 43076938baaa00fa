"""`lavalamp run`: headless runs, start-up errors, signals and systemd notifications end to end."""

import signal
import socket
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import load_config
from lavalamp.daemon.service import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Daemon

from .daemon_helpers import NotifySocket, Running, write_config
from .fakes import metric, save_fake_lamp, wait_until


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def daemon(tmp_path, lamp_path, sections=None, **kwargs):
    config_path = write_config(tmp_path / "c.yaml", sections)
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config_path), config_path=config_path, model_path=lamp_path,
               headless=True, registry=registry, **kwargs)
    return d, registry


def test_max_frames_shows_exactly_n_frames_then_exits_0(tmp_path, lamp_path):
    d, registry = daemon(tmp_path, lamp_path, max_frames=25)
    assert d.run() == EXIT_OK
    assert metric(registry, "lavalamp_frames_displayed_total") == 25
    assert metric(registry, "lavalamp_frames_generated_total") >= 2
    assert metric(registry, "lavalamp_ring_buffer_capacity_frames") == 64
    assert metric(registry, "lavalamp_up") == 0
    assert metric(registry, "lavalamp_frame_seconds_count") == 24
    assert d.renderer.last_frame.shape == (64, 64, 3) and d.renderer.last_frame.std() > 1


@pytest.mark.parametrize("fps", [30, 120])
def test_the_lamp_runs_at_real_lamp_speed_whatever_the_display_fps(tmp_path, lamp_path, fps):
    d, registry = daemon(tmp_path, lamp_path, {"display": {"fps": fps}}, max_frames=fps)
    started = time.monotonic()
    assert d.run() == EXIT_OK
    elapsed = time.monotonic() - started
    shown = d.ring.first_seq  # frames before the one on screen were released
    assert metric(registry, "lavalamp_ring_buffer_underruns_total") == 0
    assert 0.5 * 5.0 * elapsed <= shown + 1 <= 5.0 * elapsed + 1  # the fake lamp: 5 lamp fps


def test_the_display_is_blanked_and_generation_paused_by_the_schedule(tmp_path, lamp_path,
                                                                     monkeypatch):
    off_now = {"schedule": {"display_off": "* * * * *", "display_on": "0 0 1 1 *"}}
    d, registry = daemon(tmp_path, lamp_path, off_now)
    server = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", server.path)

    def watch():
        blanked = wait_until(lambda: getattr(d, "renderer", None) is not None and d.renderer.blanked)
        watch.generated = metric(registry, "lavalamp_frames_generated_total")
        watch.ok = blanked and metric(registry, "lavalamp_display_on") == 0 and \
            metric(registry, "lavalamp_display_scheduled_on") == 0
        d.request_stop("test")

    thread = threading.Thread(target=watch)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(10)
    assert watch.ok
    assert metric(registry, "lavalamp_frames_displayed_total") == 0
    assert watch.generated == 0  # the producer starts paused in off hours
    messages = server.drain(0.2)
    server.close()
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"  # or systemd would time out


def test_a_new_checkpoint_is_hot_swapped_and_a_broken_one_refused(tmp_path, lamp_path):
    model = tmp_path / "watched.safetensors"
    save_fake_lamp(model, contrast=30)
    d, registry = daemon(tmp_path, str(model), {"schedule": {"watch_model_s": 0.05}})

    def swap():
        assert wait_until(lambda: metric(registry, "lavalamp_frames_displayed_total") > 2)
        save_fake_lamp(model, contrast=30, name="second-lamp", seed=9)
        swap.loaded = wait_until(lambda: d.source.lamp.name == "second-lamp")
        model.write_bytes(b"half-written garbage")
        swap.refused = wait_until(
            lambda: metric(registry, "lavalamp_model_swaps_total", {"result": "refused"}) == 1)
        shown = metric(registry, "lavalamp_frames_displayed_total")
        swap.still_running = wait_until(
            lambda: metric(registry, "lavalamp_frames_displayed_total") > shown + 5)
        d.request_stop("test")

    thread = threading.Thread(target=swap)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(10)
    assert swap.loaded and swap.refused and swap.still_running
    assert metric(registry, "lavalamp_model_swaps_total", {"result": "loaded"}) == 1
    assert d.source.lamp.name == "second-lamp"


def test_a_port_in_use_stops_start_up_with_exit_2(tmp_path, lamp_path, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d, _ = daemon(tmp_path, lamp_path, {"metrics": {"enabled": True, "port": port}}, max_frames=5)
        assert d.run() == EXIT_USAGE
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text


def test_metrics_are_served_while_running(tmp_path, lamp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d, _ = daemon(tmp_path, lamp_path, {"metrics": {"enabled": True, "port": port}})
    import urllib.request

    def scrape():
        assert wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total") > 3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            scrape.text = r.read().decode()
        d.request_stop("test")

    thread = threading.Thread(target=scrape)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(10)
    assert "lavalamp_up 1.0" in scrape.text and 'name="test-lamp"' in scrape.text


@pytest.mark.slow
def test_a_missing_model_is_a_clear_error(tmp_path):
    run = Running(["--headless", "--model", str(tmp_path / "gone.safetensors"),
                   "--config", write_config(tmp_path / "c.yaml")])
    assert run.proc.wait(60) == EXIT_USAGE
    out = run.output()
    assert "gone.safetensors: checkpoint not found" in out and "Traceback" not in out


@pytest.mark.slow
def test_without_a_model_the_shipped_lamp_runs(tmp_path):
    run = Running(["--headless", "--max-frames", "5", "--config", write_config(tmp_path / "c.yaml")])
    assert run.proc.wait(60) == 0, run.output()
    assert "'default-lamp'" in run.output()


@pytest.mark.slow
def test_sd_notify_end_to_end_and_sigterm_within_2_s(tmp_path, lamp_path):
    server = NotifySocket(tmp_path / "notify.sock")
    run = Running(["--headless", "--model", lamp_path, "--config", write_config(tmp_path / "c.yaml")],
                  env={"NOTIFY_SOCKET": server.path, "WATCHDOG_USEC": "200000"})
    try:
        server.receive_until(lambda m: m.startswith("STATUS="))
        server.receive_until(lambda m: m == "WATCHDOG=1")
        code, seconds = run.stop(signal.SIGTERM)
        server.drain(0.2)
    finally:
        run.kill()
        server.close()
    assert code == EXIT_OK and seconds < 2.0
    kinds = [m.split("=")[0] for m in server.messages]
    first = {k: kinds.index(k) for k in ("READY", "WATCHDOG", "STATUS", "STOPPING")}
    assert first["READY"] < first["WATCHDOG"] < first["STOPPING"]
    assert first["READY"] < first["STATUS"] < first["STOPPING"] == len(kinds) - 1
    assert "fps shown" in next(m for m in server.messages if m.startswith("STATUS="))
    assert "SIGTERM received" in run.output()


@pytest.mark.slow
def test_a_hung_producer_withholds_the_watchdog(tmp_path, lamp_path):
    server = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path / "c.yaml", {"buffer": {"depth_frames": 8, "batch_frames": 4},
                                                "producer": {"stall_s": 0.5}})
    run = Running(["--headless", "--model", lamp_path, "--config", config],
                  env={"NOTIFY_SOCKET": server.path, "WATCHDOG_USEC": "200000",
                       "LAVALAMP_FAULT": "hang-producer:1"})
    try:
        server.receive_until(lambda m: m == "WATCHDOG=1")
        server.receive_until(lambda m: "producer hung" in m)
        later = server.drain(0.6)
        code, seconds = run.stop(signal.SIGTERM)
    finally:
        run.kill()
        server.close()
    assert "WATCHDOG=1" not in later
    assert code == EXIT_OK and seconds < 2.0


@pytest.mark.slow
def test_repeated_producer_crashes_exit_non_zero(tmp_path, lamp_path):
    config = write_config(tmp_path / "c.yaml", {"producer": {"max_failures": 3}})
    run = Running(["--headless", "--model", lamp_path, "--config", config],
                  env={"LAVALAMP_FAULT": "crash-producer:0.3"})
    try:
        assert run.proc.wait(60) == EXIT_FAILURE
    finally:
        run.kill()
    out = run.output()
    assert "producer crashed 3 times" in out and "InjectedFault: injected fault" in out


@pytest.mark.slow
def test_sighup_reloads_refuses_a_bad_config_and_sigusr1_dumps_stacks(tmp_path, lamp_path):
    config = tmp_path / "c.yaml"
    write_config(config)
    run = Running(["--headless", "--model", lamp_path, "--config", str(config)])
    try:
        run.wait_for_line("first frame on screen")
        config.write_text("display:\n  fps: fast\n")
        run.proc.send_signal(signal.SIGHUP)
        assert "display.fps: expected a number" in run.wait_for_line("config reload refused")
        write_config(config, {"model": {"crossfade_frames": 5}})
        run.proc.send_signal(signal.SIGHUP)
        assert "model.crossfade_frames = 5 (was 24)" in run.wait_for_line("crossfade_frames")
        run.wait_for_line("config reloaded")
        run.proc.send_signal(signal.SIGUSR1)
        run.wait_for_line("stack of thread producer")
        code, seconds = run.stop(signal.SIGINT)
    finally:
        run.kill()
    assert code == EXIT_OK and seconds < 2.0


@pytest.mark.slow
def test_no_display_is_a_clear_failure_the_supervisor_retries(tmp_path, lamp_path):
    run = Running(["--model", lamp_path, "--config", write_config(tmp_path / "c.yaml")],
                  env={"SDL_VIDEODRIVER": "x11", "DISPLAY": ":987"})
    assert run.proc.wait(60) == EXIT_FAILURE
    out = run.output()
    assert "cannot open the display" in out and "--headless" in out and "Traceback" not in out
