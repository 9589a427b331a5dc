"""The demo page in a real headless Chromium (Selenium + the Debian ``chromium`` and ``chromium-driver``
packages, which ``.ci/run`` installs). Skipped where no Chromium or chromedriver is found."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import SPAM_TEXT

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no Chromium/chromedriver found (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download a browser or driver.
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_demo_page_classifies_a_pasted_message_and_the_examples(browser: Any, server: str, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server + "/")
    assert browser.title.startswith("spam-tune")
    # /info fills in the model line: labels and the saved threshold.
    wait_for(browser, lambda d: "labels ham / spam" in d.find_element(By.ID, "model-line").text)

    expected = httpx.post(server + "/predict", json={"inputs": SPAM_TEXT}).json()
    box = browser.find_element(By.ID, "message")
    box.send_keys(SPAM_TEXT)
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
    assert browser.find_element(By.ID, "label").text.lower() == expected[0]["label"] == "spam"
    spam_score = next(p["score"] for p in expected if p["label"] == "spam")
    assert browser.find_element(By.ID, "spam-probability").text == f"{spam_score * 100:.1f}%"
    assert browser.find_element(By.ID, "bar-threshold").is_displayed()

    # Clicking an example fills the box and classifies it.
    example = browser.find_elements(By.CLASS_NAME, "example")[0]
    example.click()
    wait_for(browser, lambda d: d.find_element(By.ID, "message").get_attribute("value") == example.text)
    answer = httpx.post(server + "/predict", json={"inputs": example.text}).json()
    wait_for(browser, lambda d: d.find_element(By.ID, "label").text.lower() == answer[0]["label"])
    browser.save_screenshot(str(tmp_path / "demo.png"))
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_page_shows_the_servers_error_message(browser: Any, server: str):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "message").send_keys("x" * 501)  # over the test server's --max-input-chars
    browser.find_element(By.ID, "classify").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "more than --max-input-chars 500" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_api_docs_page_renders_offline(browser: Any, server: str):
    from selenium.webdriver.common.by import By

    browser.get(server + "/docs")
    wait_for(browser, lambda d: "/predict" in d.find_element(By.TAG_NAME, "body").text)
    assert "spam-tune classifier" in browser.find_element(By.TAG_NAME, "body").text
