"""`rdm demo`: the page's computation equals `rdm sample`, and the page works in a real browser
(headless Chromium driven by Selenium: set a class and a seed, run, and the image shown is
`rdm sample`'s for that seed). The browser test skips, saying why, where no browser is installed."""

from __future__ import annotations

import contextlib
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


def sampled(tmp_path, seed: int, klass: int, preset: str | None = None) -> np.ndarray:
    """`rdm sample`'s image of one seed and class (the demo chain; with a --preset)."""
    assert main(["sample", "--seeds", str(seed), "--class", str(klass), "--npz", str(tmp_path / "s.npz"),
                 "--quiet"] + (["--preset", preset] if preset else [])) == 0
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


needs_browser = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                   reason="no Chromium/chromedriver here (apt-get install chromium chromium-driver)")


@contextlib.contextmanager
def served(page):
    """The page served on a free local port, and a headless Chromium on it: (driver, wait)."""
    pytest.importorskip("gradio", reason="the optional extra relay-diffusion[demo] is not installed")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

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
        yield driver, WebDriverWait(driver, 120)
    finally:
        driver.quit()
        page.close()


def run_page(driver, wait, seed: int, klass: int) -> np.ndarray:
    """Set the seed and class, press Generate; the final image as served."""
    from selenium.webdriver.common.by import By

    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#rdm-seed input"))          # the page has loaded
    before = driver.find_element(By.CSS_SELECTOR, "#rdm-report").text
    for name, value in (("seed", seed), ("class", klass)):
        field = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"#rdm-{name} input"))
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.CSS_SELECTOR, "#rdm-run").click()
    wait.until(lambda d: f"seed {seed}" in (t := d.find_element(By.CSS_SELECTOR, "#rdm-report").text) and t != before)
    src = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#rdm-final img")).get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src).read())))


@needs_browser
@pytest.mark.slow
def test_the_page_in_a_real_browser(chain, tmp_path):
    from selenium.webdriver.common.by import By

    from relay_diffusion.integrations.demo_page import build_page

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with served(build_page(chain)) as (driver, wait):
        assert np.array_equal(run_page(driver, wait, 7, 3), sampled(tmp_path, 7, 3))
        assert "35 + 13 = 48" in driver.find_element(By.CSS_SELECTOR, "#rdm-report").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rdm-trajectory img")) == 14
        assert not any(e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, "#rdm-chain"))  # no choice
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert Image.open(tmp_path / "page.png").size[0] >= 1000


@needs_browser
@pytest.mark.slow
def test_the_page_starts_with_the_distilled_chain_and_switches_to_fast(tmp_path):
    """rdm demo's default page: the bundled distilled chain first (its image is `rdm sample
    --preset distilled`'s), then the fast chain chosen in the page (`--preset fast`'s)."""
    from selenium.webdriver.common.by import By

    from relay_diffusion.integrations.demo_page import build_page, page_chains

    try:
        bundled_demo_chain(distilled=True)
    except ValueError:
        pytest.skip("this installation has no bundled distilled demo chain")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with served(build_page(page_chains())) as (driver, wait):
        assert np.array_equal(run_page(driver, wait, 5, 2), sampled(tmp_path, 5, 2, "distilled"))
        driver.find_element(By.XPATH, "//*[@id='rdm-chain']//label[contains(., '--preset fast')]").click()
        assert np.array_equal(run_page(driver, wait, 6, 4), sampled(tmp_path, 6, 4, "fast"))
        assert "12 + 8 = 20" in driver.find_element(By.CSS_SELECTOR, "#rdm-report").text
