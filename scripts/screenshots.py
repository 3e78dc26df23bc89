"""Screenshots of Yushan's main pages in English and Traditional Chinese, for a reviewer who does not
run the site.

    .venv/bin/python scripts/screenshots.py [FOLDER]        # default: docs/screenshots

A throwaway site: its own SQLite database and var folder in a temporary directory, migrated and
loaded with the demo project (`seed_demo`), served by Django's runserver on a free port of
127.0.0.1. Headless Chromium (Debian's chromium and chromium-driver, or CHROMIUM_BINARY and
CHROMEDRIVER) logs in as each demo user, picks each language with the switch in the page header,
and saves a 1280×800 PNG of each page: FOLDER/en/NAME.png and FOLDER/zh-hant/NAME.png. The server
and the folder are removed at the end. The policy it shows as deployed is a database row only
(no weights, so nothing is generated or trained); run `make run` for the full loop.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "zh-hant"]
WAIT_SECONDS = 20
# A deployed policy for the rounds and models pages: rows only, in the throwaway database.
PLACEHOLDER_POLICY = """
from labeling.models import Project
from training.registry.models import DeployedPolicy, Deployment, ModelVersion
project = Project.objects.get(name="Yushan demo")
version, _ = ModelVersion.objects.get_or_create(
    project=project, name="SmolLM2-135M-Instruct", storage_path="screenshots-only", content_hash="0" * 64,
    defaults={"config": {"parameters": 134515008}},
)
deployment = Deployment.objects.create(project=project, model_version=version)
DeployedPolicy.objects.update_or_create(project=project, defaults={"model_version": version, "deployment": deployment})
"""
# (file name, user, password, path): the README's demo logins; the demo project is the first one.
PAGES = [
    ("home-annotator", "alice", "yushan-alice", "/"),
    ("labeling-board", "alice", "yushan-alice", "/projects/{project}/label/"),
    ("progress", "alice", "yushan-alice", "/me/"),
    ("home-admin", "admin", "yushan-admin", "/"),
    ("project-page", "admin", "yushan-admin", "/projects/{project}/admin/"),
    ("rounds", "admin", "yushan-admin", "/projects/{project}/rounds/"),
    ("models", "admin", "yushan-admin", "/projects/{project}/models/"),
    ("arena-leaderboard", "admin", "yushan-admin", "/projects/{project}/arena/leaderboard/"),
    ("datasets", "rita", "yushan-rita", "/datasets/"),
    ("review", "rosa", "yushan-rosa", "/projects/{project}/review/"),
    ("adjudicate", "rosa", "yushan-rosa", "/projects/{project}/adjudicate/"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def server_start(var_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "YUSHAN_VAR_DIR": str(var_dir), "DEBUG": "1"}
    env.pop("DATABASE_URL", None)  # always the throwaway SQLite file under var_dir
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", env=env)
    manage("shell", "-c", PLACEHOLDER_POLICY, env=env)
    manage("compile_translations", env=env)
    port = free_port()
    log = open(var_dir / "server.log", "w")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit(f"the server did not start; see {var_dir / 'server.log'}")


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def log_in(driver, url: str, username: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password, Keys.ENTER)
    WebDriverWait(driver, WAIT_SECONDS).until(EC.url_changes(f"{url}/accounts/login/"))


def page_language(driver) -> str:
    return driver.execute_script("return document.readyState === 'complete' ? document.documentElement.lang : ''")


def language_choose(driver, language: str) -> None:
    """The switch in the header, as a person uses it (it also stores the choice for the user)."""
    if page_language(driver) == language:
        return
    driver.find_element(By.CSS_SELECTOR, f".language-switch button[value='{language}']").click()
    WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: page_language(d) == language
    )


def settle(driver) -> None:
    """Let the page's scripts fetch and draw (the labeling board and review page load over the API)."""
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: d.execute_script("return document.readyState") == "complete")
    time.sleep(1.5)


def screenshots_take(driver, url: str, folder: Path, project: int) -> list[Path]:
    saved = []
    user = None
    for language in LANGUAGES:
        (folder / language).mkdir(parents=True, exist_ok=True)
        # The login page first, before anyone is signed in, in the language a fresh browser would pick.
        driver.delete_all_cookies()
        driver.get(f"{url}/accounts/login/")
        language_choose(driver, language)
        driver.save_screenshot(str(folder / language / "login.png"))
        saved.append(folder / language / "login.png")
        user = None
        for name, username, password, path in PAGES:
            if username != user:
                log_in(driver, url, username, password)
                language_choose(driver, language)
                user = username
            driver.get(url + path.format(project=project))
            settle(driver)
            target = folder / language / f"{name}.png"
            driver.save_screenshot(str(target))
            saved.append(target)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "docs" / "screenshots"))
    folder = Path(parser.parse_args().folder).resolve()
    with tempfile.TemporaryDirectory(prefix="yushan-screenshots-") as temporary:
        server, url = server_start(Path(temporary))
        driver = chromium()
        try:
            saved = screenshots_take(driver, url, folder, project=1)
        finally:
            driver.quit()
            server.terminate()
            server.wait(timeout=30)
    for path in saved:
        print(path.relative_to(folder.parent) if folder.parent in path.parents else path)


if __name__ == "__main__":
    main()
