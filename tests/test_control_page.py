"""The control page in a real browser: Debian's headless Chromium steers a running daemon."""

import shutil
import tempfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import load_config
from lavalamp.daemon.service import Daemon

from .daemon_helpers import drive, free_port, write_config
from .deploy_support import require_tool, unavailable
from .fakes import metric, save_fake_lamp, wait_until

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=412,1000")


@pytest.fixture
def browser():
    """Debian's chromium through chromedriver (skipped locally, failed in CI, when missing)."""
    chromium, chromedriver = require_tool("chromium"), require_tool("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[test]')")
    profile = tempfile.mkdtemp(prefix="lavalamp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


@pytest.mark.slow
def test_the_page_steers_the_lamp_in_a_real_browser(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    lamp = save_fake_lamp(tmp_path / "lamp.safetensors", contrast=30, name="browser-lamp")
    port = free_port()
    config = write_config(tmp_path / "c.yaml", {"control": {"enabled": True, "port": port}})
    d = Daemon(config=load_config(config), config_path=config, model_path=lamp, headless=True,
               registry=CollectorRegistry())
    r = d.metrics.registry

    def use_the_page(d):
        assert wait_until(lambda: metric(r, "lavalamp_frames_displayed_total") > 2, timeout=30)
        browser.get(f"http://127.0.0.1:{port}/")
        assert wait_until(lambda: text_of(browser, "lamp-name") == "browser-lamp", timeout=20)
        assert wait_until(lambda: browser.execute_script(
            "const i = document.getElementById('preview'); return i.complete && i.naturalWidth"
        ) == 64, timeout=20)  # the live preview shows the lamp's frame
        browser.find_element(By.ID, "reseed").click()
        assert wait_until(lambda: metric(r, "lavalamp_reseeds_total", {"reason": "remote"}) == 1)
        slider = browser.find_element(By.ID, "brightness")
        slider.click()  # the middle of the track: about half brightness
        slider.send_keys(Keys.END)  # then all the way up, and 30 steps of 0.01 down
        for _ in range(30):
            slider.send_keys(Keys.ARROW_LEFT)
        assert wait_until(lambda: abs(metric(r, "lavalamp_display_brightness_ratio") - 0.7) < 1e-6)
        browser.find_element(By.ID, "display_on").click()
        assert wait_until(lambda: metric(r, "lavalamp_display_on") == 0)
        browser.find_element(By.ID, "display_on").click()
        assert wait_until(lambda: metric(r, "lavalamp_display_on") == 1)
        browser.find_element(By.ID, "pause").click()
        assert wait_until(lambda: d.live.state.paused)
        assert wait_until(lambda: browser.find_element(By.ID, "pause").text == "Resume")
        assert wait_until(lambda: "1" == browser.execute_script(
            "return document.querySelector('dd[data-key=reseeds]').textContent"))
        assert text_of(browser, "message") == ""  # no error shown
        shot = Path(tmp_path / "control-page.png")
        assert browser.save_screenshot(str(shot))
        return shot

    shot = drive(d, use_the_page)
    assert d.config.display.brightness == 0.7
    assert metric(r, "lavalamp_live_changes_total", {"source": "http"}) >= 3
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size[0] >= 300 and image.getextrema()[0][1] > 0
