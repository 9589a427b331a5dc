"""The demo page in a real headless Chromium (the ``browser`` fixture of tests/conftest.py: Selenium + the Debian
``chromium`` and ``chromium-driver`` packages, which ``.ci/run`` installs). Skipped where none is found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.serve.conftest import SPAM_TEXT


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
