"""`rdm demo`: the page's computation equals `rdm sample`, and the page works in a real browser
(headless Chromium driven by Selenium: set a class and a seed, run, and the image shown is
`rdm sample`'s for that seed). The browser test skips, saying why, where no browser is installed."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from relay_diffusion.cli import main
from relay_diffusion.pipeline import RelayChain, bundled_demo_chain

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def chain():
    return RelayChain.from_pretrained(bundled_demo_chain())


def sampled(tmp_path, seed: int, klass: int) -> np.ndarray:
    assert main(["sample", "--seeds", str(seed), "--class", str(klass), "--npz", str(tmp_path / "s.npz"),
                 "--quiet"]) == 0
    return np.load(tmp_path / "s.npz")["images"][0].squeeze(-1)


def test_render_is_rdm_sample_and_the_download_holds_everything(chain, tmp_path):
    from relay_diffusion.integrations.demo_page import download, render

    r = render(chain, seed=7, class_index=3, batch=3)
    assert np.array_equal(np.asarray(r.final), sampled(tmp_path, 7, 3))
    assert r.base.size == (8, 8) and r.final.size == (32, 32)
    assert len(r.trajectory) == 2 * 7 and r.trajectory[-1][1] == "x̂₀ σ=0.008"   # 7 σ's: x and x̂₀ each
    assert "35 + 13 = 48" in r.report and [c for _, c in r.gallery] == ["seed 7", "seed 8", "seed 9"]
    assert "class 3 (Dress)" in r.report                   # the names recorded in the demo's config.json
    with zipfile.ZipFile(download(r, tmp_path / "d.zip")) as z:
        assert sorted(z.namelist()) == ["base.png", "final.png", "seed-7.png", "seed-8.png", "seed-9.png",
                                        "settings.json"]
        assert json.loads(z.read("settings.json"))["labels"] == 3
    fast = render(chain, seed=7, class_index=3, relay_steps=6, solver="dpmpp-2m-pc", batch=1)
    assert "35 + 6 = 41" in fast.report


def test_the_page_starts_with_the_fast_preset():
    from relay_diffusion.integrations.demo_page import page_chain, render

    chain = page_chain(bundled_demo_chain())
    assert chain.nfe() == [12, 8] and chain.settings[1].solver == "dpmpp-2m-pc"
    assert "12 + 8 = 20" in render(chain, seed=1, base_steps=12, relay_steps=8, solver="dpmpp-2m-pc", batch=1).report


def test_the_page_offers_the_bundled_distilled_chain_first_and_the_fast_one():
    from relay_diffusion.integrations.demo_page import page_chains

    chains = page_chains()
    labels = list(chains)
    assert labels[-1] == "--preset fast: 12 + 8 evaluations per image"
    try:
        distilled = bundled_demo_chain(distilled=True)
    except ValueError:                                       # an installation without it: fast only
        assert len(labels) == 1
        return
    assert labels[0].startswith("distilled: ") and sum(chains[labels[0]].nfe()) <= 4
    assert list(page_chains(distilled)) == labels[:1]


def test_bad_port_is_refused(capsys):
    assert main(["demo", "--port", "0"]) == 2
    assert "--port must be in 1…65535" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="no Chromium/chromedriver here (apt-get install chromium chromium-driver)")
@pytest.mark.slow
def test_the_page_in_a_real_browser(chain, tmp_path):
    pytest.importorskip("gradio", reason="the optional extra relay-diffusion[demo] is not installed")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from relay_diffusion.integrations.demo_page import build_page

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_page(chain)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **page.rdm_launch_options)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1700"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)     # no driver download
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 120)
        seed = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#rdm-seed input"))
        seed.clear()
        seed.send_keys("7")
        klass = driver.find_element(By.CSS_SELECTOR, "#rdm-class input")
        klass.clear()
        klass.send_keys("3")
        driver.find_element(By.CSS_SELECTOR, "#rdm-run").click()
        wait.until(lambda d: "seed 7" in d.find_element(By.CSS_SELECTOR, "#rdm-report").text)
        src = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#rdm-final img")).get_attribute("src")
        shown = np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src).read())))
        assert np.array_equal(shown, sampled(tmp_path, 7, 3))
        assert "35 + 13 = 48" in driver.find_element(By.CSS_SELECTOR, "#rdm-report").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rdm-trajectory img")) == 14
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert Image.open(tmp_path / "page.png").size[0] >= 1000
    finally:
        driver.quit()
        page.close()
