"""Headless Chromium drives the annotate page as an annotator does: log in through the form, rank
a task with the keyboard alone, write a demonstration that survives a reload, and check the rows
the page wrote. Chromium and chromedriver come from the system (Debian's chromium and
chromium-driver); Selenium never downloads a browser."""

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from labeling import leases, services, submissions
from labeling.models import Adjudication, Assignment, Demonstration, Ranking, Review
from tests.factories import PASSWORD, add_demonstration_task, add_ranking_task, new_client_id, service_missing

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("BROWSER_SCREENSHOTS")  # a folder: save how the page looks, for review
WAIT_SECONDS = 15

ANSWER = "玉山主峰海拔 3,952 公尺，是臺灣第一高峰。\n\n**Yushan** is the highest mountain in Taiwan."


def _executable(path: str) -> bool:
    resolved = shutil.which(path)
    return resolved is not None and os.access(resolved, os.X_OK)


def chromium_session(tmp_path, *, lang: str | None = None):
    """Headless Chromium through the installed chromedriver; with `lang`, its interface in that
    language and it first in the Accept-Language it sends (the intl.accept_languages preference).
    Fails the test on any Content-Security-Policy refusal."""
    if not _executable(CHROMIUM):
        service_missing(f"Chromium not found at {CHROMIUM} (install Debian's chromium, or set CHROMIUM_BINARY)")
    if not _executable(CHROMEDRIVER):
        service_missing(f"chromedriver not found at {CHROMEDRIVER} (install chromium-driver, or set CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *([f"--lang={lang}"] if lang else []),
    ):
        options.add_argument(flag)
    if lang:
        options.add_experimental_option("prefs", {"intl.accept_languages": f"{lang},{lang.split('-')[0]}"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    refused = csp_violations(driver)
    driver.quit()
    assert not refused, f"the Content-Security-Policy refused: {refused}"


@pytest.fixture
def browser(tmp_path):
    yield from chromium_session(tmp_path)


def csp_violations(driver) -> list[str]:
    """What the browser refused under the Content-Security-Policy since the last call: each page
    must work without inline script or style."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def press(driver, *keys):
    """Type into whatever has the focus, as a person at the keyboard would."""
    ActionChains(driver).send_keys(*keys).perform()


def press_with(driver, modifier, key):
    ActionChains(driver).key_down(modifier).send_keys(key).key_up(modifier).perform()


def screenshot(driver, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def visible_order(driver) -> list[tuple[str, str]]:
    """(letter, rank shown) of each card, top to bottom."""
    return [
        (card.get_attribute("data-label"), card.find_element(By.CSS_SELECTOR, ".rank-badge").text)
        for card in driver.find_elements(By.CSS_SELECTOR, "#cards .answer-card")
    ]


def log_in(driver, base_url: str, username: str) -> None:
    driver.get(f"{base_url}/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(driver, WAIT_SECONDS).until(EC.presence_of_element_located((By.LINK_TEXT, "Start labeling")))


def rank_the_first_task_by_keyboard(browser, wait) -> dict[str, str]:
    """The ranking task comes first (lower id): open the shortcut list, then rank and rate with keys
    alone and submit. Returns each card's letter to its answer id."""
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .answer-card")) == 3)
    assert "Taiwan" in browser.find_element(By.ID, "conversation").text
    ids = {
        card.get_attribute("data-label"): card.get_attribute("data-id")
        for card in browser.find_elements(By.CSS_SELECTOR, "#cards .answer-card")
    }
    assert sorted(ids) == ["A", "B", "C"]

    # '?' lists the shortcuts; Esc closes the list.
    help_dialog = browser.find_element(By.ID, "help-dialog")
    press(browser, "?")
    wait.until(lambda d: help_dialog.is_displayed())
    assert "Move the focused answer up" in help_dialog.text
    press(browser, Keys.ESCAPE)
    wait.until(lambda d: not help_dialog.is_displayed())

    # C to the top (k, then Shift+↑), B tied with the answer above it (A), a rating for each.
    press(browser, "c", "k")
    press_with(browser, Keys.SHIFT, Keys.ARROW_UP)
    press(browser, "b", "t", "c", "7", "a", "5", "b", "4")
    assert visible_order(browser) == [("C", "1"), ("A", "2"), ("B", "2")]
    screenshot(browser, "annotate-ranking")
    press(browser, Keys.ENTER)  # the focus is on answer B's card, not a text field
    return ids


def write_the_demonstration_across_a_reload(browser, wait, ranking_task) -> None:
    """Then the demonstration task: half an answer, a reload that restores the server's draft, the
    rest, a look at the preview, and Ctrl+Enter."""
    editor = wait.until(EC.visibility_of_element_located((By.ID, "demo-text")))
    assert browser.switch_to.active_element == editor
    assert "台灣第一高峰" in browser.find_element(By.ID, "conversation").text
    first_half, second_half = ANSWER[:20], ANSWER[20:]
    editor.send_keys(first_half)
    wait.until(EC.text_to_be_present_in_element((By.ID, "save-status"), "Saved"))
    assert Ranking.objects.filter(task=ranking_task).count() == 1

    # Reload mid-draft, without the browser's own copy: the server's autosave brings it back.
    browser.execute_script("window.localStorage.clear()")
    browser.refresh()
    editor = wait.until(EC.visibility_of_element_located((By.ID, "demo-text")))
    wait.until(lambda d: editor.get_attribute("value") == first_half)
    assert "Draft restored" in browser.find_element(By.ID, "save-status").text

    editor.send_keys(Keys.END, second_half)
    wait.until(lambda d: editor.get_attribute("value") == ANSWER)
    browser.find_element(By.ID, "tab-preview").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#demo-preview strong"), "Yushan"))
    screenshot(browser, "annotate-demonstration-preview")
    browser.find_element(By.ID, "tab-write").click()
    wait.until(lambda d: d.switch_to.active_element == editor)
    press_with(browser, Keys.CONTROL, Keys.ENTER)


def skip_the_third_task_with_a_draft(browser, wait) -> None:
    """A third task: skipping it with a draft asks first, in the page; then all is done."""
    wait.until(EC.text_to_be_present_in_element((By.ID, "conversation"), "poem about K2"))
    editor = browser.find_element(By.ID, "demo-text")
    editor.send_keys("Roses are red")
    browser.find_element(By.ID, "skip-open").click()
    dialog = browser.find_element(By.ID, "skip-dialog")
    wait.until(lambda d: dialog.is_displayed())
    assert "You have a draft; skip anyway?" in dialog.text
    press(browser, "not my subject", Keys.ENTER)  # the focus is in the reason field

    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "All done"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-counter"), "2 done today"))


def test_annotator_ranks_by_keyboard_and_writes_a_demonstration(browser, live_server, annotator, project):
    ranking_task = add_ranking_task(
        project,
        text="What is the highest mountain in **Taiwan**?",
        answers=["Yushan (玉山), 3,952 m.", "Mount Everest, also known as K2.", "Xueshan (雪山), 3,886 m."],
    )
    demonstration_task = add_demonstration_task(project, text="台灣第一高峰是那一座？")
    skipped_task = add_demonstration_task(project, text="Write a poem about K2.")
    wait = WebDriverWait(browser, WAIT_SECONDS)

    log_in(browser, live_server.url, "alice")
    browser.find_element(By.LINK_TEXT, "Start labeling").click()
    ids = rank_the_first_task_by_keyboard(browser, wait)
    write_the_demonstration_across_a_reload(browser, wait, ranking_task)
    skip_the_third_task_with_a_draft(browser, wait)

    skipped = Assignment.objects.get(task=skipped_task, annotator=annotator)
    assert (skipped.state, skipped.skip_reason) == (Assignment.State.SKIPPED, "not my subject")
    ranking = Ranking.objects.get(task=ranking_task, annotator=annotator)
    assert ranking.groups == [[ids["C"]], [ids["A"], ids["B"]]]
    assert ranking.ratings == {ids["C"]: 7, ids["A"]: 5, ids["B"]: 4}
    assert ranking.none_acceptable is False
    demonstration = Demonstration.objects.get(task=demonstration_task, annotator=annotator)
    assert demonstration.text == ANSWER


def test_annotator_fixes_recent_submissions_on_the_progress_page(browser, live_server, annotator, project):
    demonstration_task = add_demonstration_task(project)
    ranking_task = add_ranking_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    demonstration, _ = submissions.demonstration_submit(
        annotator=annotator, task_id=demonstration_task.pk, text="玉山", client_id=new_client_id()
    )
    first, second, third = leases.task_next_for(annotator=annotator, project=project).candidate_order
    ranking, _ = submissions.ranking_submit(
        annotator=annotator,
        task_id=ranking_task.pk,
        ranking=[[first], [second, third]],
        ratings={first: 6},
        client_id=new_client_id(),
    )
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in(browser, live_server.url, "alice")
    browser.find_element(By.LINK_TEXT, "My progress").click()

    # The answer in the annotate page's editor: write, then preview it as it will be shown.
    form = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"#demonstration-{demonstration.pk} form")))
    textarea = form.find_element(By.TAG_NAME, "textarea")
    textarea.send_keys(Keys.CONTROL, Keys.END)
    textarea.send_keys("，海拔 **3,952** 公尺。")
    form.find_element(By.CSS_SELECTOR, ".editor-tab-preview").click()
    wait.until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#demonstration-{demonstration.pk} strong"), "3,952")
    )
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#demonstration-{demonstration.pk} .form-status"), "Saved")
    )
    demonstration.refresh_from_db()
    assert demonstration.text == "玉山，海拔 **3,952** 公尺。"

    # On the ranking board, as when labeling: answer C (third shown) is untied from B with t, so it
    # moves from a tie at rank 2 to rank 3 on its own; Ctrl+Enter saves.
    form = browser.find_element(By.CSS_SELECTOR, f"#ranking-{ranking.pk} form")
    assert [card.get_attribute("data-label") for card in form.find_elements(By.CSS_SELECTOR, ".answer-card")] == [
        "A",
        "B",
        "C",
    ]
    form.find_element(By.CSS_SELECTOR, f".answer-card[data-id='{third}'] .letter-badge").click()
    press(browser, "t")
    press_with(browser, Keys.CONTROL, Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#ranking-{ranking.pk} .form-status"), "Saved"))
    ranking.refresh_from_db()
    assert ranking.groups == [[first], [second], [third]]
    assert ranking.ratings == {first: 6}
    assert browser.find_element(By.CSS_SELECTOR, f"#ranking-{ranking.pk} .ranking-summary").text == "A › B › C"


def test_a_paused_project_says_so(browser, live_server, annotator, project):
    add_demonstration_task(project)
    services.project_pause(project=project, paused=True, actor=None)
    log_in(browser, live_server.url, "alice")
    browser.get(f"{live_server.url}/projects/{project.pk}/label/")
    WebDriverWait(browser, WAIT_SECONDS).until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "paused"))
    assert not browser.find_element(By.ID, "task").is_displayed()


def test_the_round_page_shows_every_judge_with_its_interval(
    browser, live_server, admin_user, project, tiny_model_path, model_store
):
    from tests.factories import register_copy
    from training.rounds.models import Round

    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    accuracy = {"accuracy": 0.71, "accuracy_ci": [0.62, 0.79], "pairs": 96, "rankings": 64}
    judge = {"win_rate": 0.58, "win_rate_ci": [0.47, 0.69], "verdict": "no clear difference", "prompts": 64}
    row = {"prompt": [{"role": "user", "content": "台灣第一高峰？"}], "new_answer": "玉山。", "old_answer": "K2"}
    round_ = Round.objects.create(
        project=project,
        number=1,
        status=Round.Status.AWAITING_DECISION,
        base_policy=base,
        evaluation={
            "win_rate": 0.58,
            "win_rate_ci": [0.47, 0.69],
            "judges": {"new_reward_model": judge, "previous_reward_model": {**judge, "verdict": "worse"}},
            "judges_disagree": True,
            "judges_outranked": ["previous_reward_model"],
            "disagreement_blocks_deploy": False,
            "reward_models_compared": {"difference": 0.21, "difference_ci": [0.12, 0.3], "rankings": 64},
            "decided_by": "new_reward_model",
            "kl": 3.2,
            "evaluation_split": "frozen",
            "reward_model_accuracy": accuracy,
            "implicit_reward_accuracy": {**accuracy, "accuracy": 0.55},
            "rows": [{**row, "new_reward": 1.0, "old_reward": -1.0}],
        },
    )
    browser.get(f"{live_server.url}/accounts/login/")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(browser, WAIT_SECONDS).until(EC.url_changes(f"{live_server.url}/accounts/login/"))
    browser.get(f"{live_server.url}/rounds/{round_.pk}/")
    evaluation = (By.ID, "evaluation")
    WebDriverWait(browser, WAIT_SECONDS).until(EC.text_to_be_present_in_element(evaluation, "human rankings"))
    text = browser.find_element(*evaluation).text
    assert "this round's reward model decides" in text  # which judge decided
    # The previous round's model disagrees, but orders the held-out human rankings clearly worse.
    assert "the previous round's reward model orders the held-out human rankings clearly worse" in text
    assert "0.210, 95% interval 0.120 – 0.300" in text and "nothing deploys by itself" not in text
    assert "0.710 (95% interval 0.620 – 0.790, 96 pairs from 64 rankings)" in text
    assert "log-probability ratio to the SFT model" in text and "0.550" in text
    assert "0.470 – 0.690" in text and "frozen evaluation split" in text

    # The admin's other pages, under the same Content-Security-Policy (checked when the browser
    # closes): numbers reach the CSS through data-vars, and the API docs load their own script.
    browser.get(f"{live_server.url}/projects/{project.pk}/admin/")
    bars = browser.find_elements(By.CSS_SELECTOR, ".bar[data-vars]")
    assert bars, "the project page shows the completions chart"
    for bar in bars:
        expected = browser.execute_script("return JSON.parse(arguments[0].dataset.vars).height", bar)
        shown = browser.execute_script("return getComputedStyle(arguments[0]).getPropertyValue('--height')", bar)
        assert float(shown) == float(expected)
    browser.get(f"{live_server.url}/api/docs/")
    WebDriverWait(browser, WAIT_SECONDS).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock-tag"))
    )


@pytest.mark.redis
def test_the_playground_waits_for_the_interactive_worker_then_shows_the_reply(
    browser, live_server, redis_interactive_queue, annotator, project, tiny_model_path, model_store, settings
):
    """Send, see what the page waits for, and the reply appears by itself once the worker wrote it."""
    from celery.contrib.testing.worker import start_worker

    from tests.factories import register_copy
    from worker.celery import app

    settings.PLAYGROUND_MAX_NEW_TOKENS = 8
    register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    log_in(browser, live_server.url, "alice")
    browser.get(f"{live_server.url}/projects/{project.pk}/playground/")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.find_element(By.NAME, "message").send_keys("Hello, **model**")
    browser.find_element(By.CSS_SELECTOR, ".chat-form button.primary").click()
    wait.until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".turn-pending"), "Waiting for the interactive worker")
    )
    assert not browser.find_element(By.CSS_SELECTOR, ".chat-form button.primary").is_enabled()
    with start_worker(
        app, queues=[redis_interactive_queue], pool="solo", perform_ping_check=False, shutdown_timeout=30
    ):
        reply = (By.CSS_SELECTOR, ".turn-assistant:not(.turn-pending)")
        WebDriverWait(browser, 120).until(lambda d: len(d.find_elements(*reply)) == 1)
    assert not browser.find_elements(By.CSS_SELECTOR, ".turn-pending")
    assert browser.find_element(By.CSS_SELECTOR, ".turn-user strong").text == "model"
    assert browser.find_element(By.CSS_SELECTOR, ".chat-form button.primary").is_enabled()


def test_an_admin_deploys_a_policy_through_the_confirmation_with_its_evaluation_in_view(
    browser, live_server, admin_user, project, tiny_model_path, tiny_model_path_b, model_store, monkeypatch
):
    """The round that lost waits for a decision: its deploy button opens a confirmation that shows
    the win rate, its interval, the judge and the missed threshold; confirming deploys it."""
    from tests.factories import register_copy
    from training.registry import generation
    from training.registry import selectors as registry_selectors
    from training.rounds.models import STAGES, Round, RoundStage

    monkeypatch.setattr(generation, "_generation_enqueue", lambda job_id: None)  # no worker here
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    policy = register_copy(project, tiny_model_path_b, name="round 1 policy", store=model_store, parent=base)
    round_ = Round.objects.create(
        project=project,
        number=1,
        status=Round.Status.AWAITING_DECISION,
        config={"deploy": {"auto": True, "threshold": 0.55}},
        base_policy=base,
        policy_version=policy,
        evaluation={
            "win_rate": 0.375,
            "win_rate_ci": [0.2, 0.55],
            "decided_by": "new_reward_model",
            "judges": {"new_reward_model": {"win_rate": 0.375, "win_rate_ci": [0.2, 0.55], "verdict": "worse"}},
            "judges_disagree": False,
            "prompts": 8,
        },
    )
    RoundStage.objects.bulk_create(
        RoundStage(round=round_, name=name, position=i, status="waiting" if name == "deploy" else "succeeded")
        for i, name in enumerate(STAGES)
    )
    browser.get(f"{live_server.url}/accounts/login/")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(browser, WAIT_SECONDS).until(EC.url_changes(f"{live_server.url}/accounts/login/"))
    wait = WebDriverWait(browser, WAIT_SECONDS)

    browser.get(f"{live_server.url}/rounds/{round_.pk}/")
    deploy = browser.find_element(By.ID, "deploy-round")
    wait.until(lambda d: deploy.is_displayed() and deploy.text == f"Deploy v{policy.pk}")
    deploy.click()

    evaluation = (By.ID, "deploy-evaluation")
    wait.until(EC.presence_of_element_located(evaluation))
    screenshot(browser, "deploy-confirmation")
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Deploy v{policy.pk}?"
    text = browser.find_element(*evaluation).text
    assert "0.375 (95% interval 0.200 – 0.550)" in text
    assert "this round's reward model" in text and "the interval's lower end must reach 0.550" in text
    assert browser.find_element(By.CSS_SELECTOR, "#deploy-evaluation .pill-warn").text.lower() == "missed"
    warning = browser.find_element(By.ID, "threshold-warning")
    assert warning.is_displayed() and "missed the deploy threshold" in warning.text
    assert registry_selectors.deployed_policy(project=project) == base  # opening the confirmation deployed nothing

    browser.find_element(By.ID, "confirm-deploy").click()
    wait.until(lambda d: "deployed" in d.find_element(By.ID, "round-status").text.lower())
    assert f"Deployed round 1 policy (v{policy.pk})" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert registry_selectors.deployed_policy(project=project) == policy
    round_.refresh_from_db()
    assert round_.status == Round.Status.SUCCEEDED and round_.deployed

    # The Models page: the way back is labelled as a rollback, and the table fits the window.
    browser.get(f"{live_server.url}/projects/{project.pk}/models/")
    screenshot(browser, "models-after-deploy")
    back = browser.find_element(By.CSS_SELECTOR, f'#versions tr[data-version="{base.pk}"] .deploy-link')
    assert back.text == f"Roll back to v{base.pk} (older)"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def log_in_as(driver, base_url: str, username: str) -> None:
    """Log in through the form as any role (log_in above waits for an annotator's home page)."""
    driver.get(f"{base_url}/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    WebDriverWait(driver, WAIT_SECONDS).until(EC.url_changes(f"{base_url}/accounts/login/"))


def test_a_reviewer_accepts_edits_and_rejects_demonstrations(browser, live_server, reviewer, annotator, project):
    """Accept with a key, edit in place and see the diff, reject with a reason; then nothing is left."""
    project.reviews_required, project.overlap = 1, 1
    project.save()
    texts = ["玉山，海拔 3,952 公尺。", "Yushan is 3,952 m tall.", "K2 is the highest mountain in Taiwan."]
    demonstrations = []
    for prompt, text in zip(("台灣第一高峰？", "How tall is Yushan?", "Highest in Taiwan?"), texts, strict=True):
        task = add_demonstration_task(project, prompt)
        leases.task_next_for(annotator=annotator, project=project)
        record, _ = submissions.demonstration_submit(
            annotator=annotator, task_id=task.pk, text=text, client_id=new_client_id()
        )
        demonstrations.append(record)
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in_as(browser, live_server.url, reviewer.username)
    browser.find_element(By.LINK_TEXT, "Review").click()

    def shown(demonstration):
        wait.until(EC.text_to_be_present_in_element((By.ID, "item-id"), f"#{demonstration.pk}"))
        assert demonstration.text in browser.find_element(By.ID, "answer").text

    shown(demonstrations[0])
    assert "台灣第一高峰" in browser.find_element(By.ID, "conversation").text
    press(browser, "a")  # the focus is on the Accept button, not a text field

    shown(demonstrations[1])
    press(browser, "e")
    editor = wait.until(EC.visibility_of_element_located((By.ID, "edit-text")))
    assert editor.get_attribute("value") == texts[1]
    editor.send_keys(Keys.END, Keys.BACKSPACE, ", the highest peak in Taiwan.")
    press_with(browser, Keys.CONTROL, Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#last-diff ins"), "the highest peak in Taiwan"))
    screenshot(browser, "review-edit-diff")

    shown(demonstrations[2])
    browser.find_element(By.ID, "reject-open").click()
    reason = wait.until(EC.visibility_of_element_located((By.ID, "reject-reason")))
    reason.send_keys("Wrong mountain: Yushan is the highest in Taiwan.", Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "Nothing left to review"))

    states = {}
    for record in demonstrations:
        record.refresh_from_db()
        states[record.pk] = (record.review_state, record.reviewed_text)
    assert states == {
        demonstrations[0].pk: ("accepted", ""),
        demonstrations[1].pk: ("accepted", "Yushan is 3,952 m tall, the highest peak in Taiwan."),
        demonstrations[2].pk: ("rejected", ""),
    }
    rejection = Review.objects.get(demonstration=demonstrations[2])
    assert (rejection.verdict, rejection.reason) == ("reject", "Wrong mountain: Yushan is the highest in Taiwan.")


def test_an_admin_sees_agreement_on_the_project_page(browser, live_server, admin_user, annotator, annotator2, project):
    """Two annotators rank the same two tasks (overlap 2): they agree on one and not on the other."""
    for question, second_order in (("Highest?", [0, 1, 2]), ("Lowest?", [2, 1, 0])):
        task = add_ranking_task(project, question, answers=["Yushan", "Xueshan", "Hehuan"])
        ids = [c.public_id for c in task.candidates.order_by("id")]
        for user, order in ((annotator, [0, 1, 2]), (annotator2, second_order)):
            leases.task_next_for(annotator=user, project=project)
            submissions.ranking_submit(
                annotator=user, task_id=task.pk, ranking=[[ids[i]] for i in order], client_id=new_client_id()
            )
    log_in_as(browser, live_server.url, admin_user.username)
    browser.find_element(By.LINK_TEXT, "Project page").click()
    agreement = WebDriverWait(browser, WAIT_SECONDS).until(EC.visibility_of_element_located((By.ID, "agreement")))
    # 3 of 6 answer pairs agree; the second task (0 of 3) waits for adjudication.
    assert browser.find_element(By.ID, "agreement-pairwise").text == "0.50"
    assert "6 answer pairs on 2 tasks" in agreement.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#agreement-annotators tbody tr")
    assert sorted(row.find_element(By.TAG_NAME, "td").text for row in rows) == ["alice", "bob"]
    assert browser.find_element(By.ID, "adjudication-queue").text == "1"
    screenshot(browser, "project-agreement")

    # The admin decides the disagreement: Hehuan first, the other two tied.
    browser.find_element(By.LINK_TEXT, "Adjudicate rankings").click()
    form = WebDriverWait(browser, WAIT_SECONDS).until(
        EC.visibility_of_element_located((By.CSS_SELECTOR, f"#adjudication-{task.pk} form"))
    )
    assert "A › B › C" in browser.page_source and "C › B › A" in browser.page_source
    for answer_id, rank in zip(ids, ("2", "2", "1"), strict=True):
        Select(form.find_element(By.CSS_SELECTOR, f"tr[data-id='{answer_id}'] select[name=rank]")).select_by_value(rank)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, WAIT_SECONDS).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#adjudication-{task.pk} .form-status"), "Adjudicated")
    )
    screenshot(browser, "adjudicate")
    assert Adjudication.objects.get(task=task).groups == [[ids[2]], [ids[0], ids[1]]]


# --- the annotator's items of issue 14 ------------------------------------------------------------


def test_a_ranking_whose_order_was_never_touched_asks_before_it_goes(browser, live_server, annotator, project):
    """A bare Enter on the order as shown asks first: Esc goes back, a second Enter submits it as
    shown. Shift+Enter submits as shown at once, and Shift+2 flags the focused answer."""
    first_task = add_ranking_task(project, "Highest in Taiwan?", answers=["Yushan", "Xueshan", "Hehuan"])
    second_task = add_ranking_task(project, "Highest in Japan?", answers=["Fuji", "Kita", "Hotaka"])
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in(browser, live_server.url, "alice")
    browser.get(f"{live_server.url}/projects/{project.pk}/label/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "conversation"), "Taiwan"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .answer-card")) == 3)
    shown = [card.get_attribute("data-id") for card in browser.find_elements(By.CSS_SELECTOR, "#cards .answer-card")]
    confirm = browser.find_element(By.ID, "order-confirm")

    press(browser, Keys.ENTER)  # the focus is on the first card
    wait.until(lambda d: confirm.is_displayed())
    assert "You have not changed the order. Submit it as shown?" in confirm.text
    screenshot(browser, "annotate-untouched-order")
    press(browser, "5")  # a rating is not a change of order: the question stays
    press(browser, Keys.ESCAPE)
    wait.until(lambda d: not confirm.is_displayed())
    assert not Ranking.objects.exists()

    press(browser, Keys.ENTER)
    wait.until(lambda d: confirm.is_displayed())
    press(browser, Keys.ENTER)  # the second Enter confirms
    wait.until(EC.text_to_be_present_in_element((By.ID, "conversation"), "Japan"))
    ranking = Ranking.objects.get(task=first_task)
    assert ranking.groups == [[answer] for answer in shown]

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .answer-card")) == 3)
    answer_a = browser.find_element(By.CSS_SELECTOR, "#cards .answer-card[data-label='A']").get_attribute("data-id")
    press(browser, "a")
    press_with(browser, Keys.SHIFT, "2")  # the second flag: factually wrong
    checkbox = browser.find_element(By.CSS_SELECTOR, f".answer-card[data-id='{answer_a}'] input[value=factually_wrong]")
    assert checkbox.is_selected()
    press_with(browser, Keys.SHIFT, Keys.ENTER)  # as shown, without asking
    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "All done"))
    assert not confirm.is_displayed()
    ranking = Ranking.objects.get(task=second_task)
    assert ranking.flags == {answer_a: ["factually_wrong"]}


def test_alt_s_skips_a_demonstration_while_the_editor_has_the_focus(browser, live_server, annotator, project):
    task = add_demonstration_task(project, "Write a poem about K2.")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in(browser, live_server.url, "alice")
    browser.get(f"{live_server.url}/projects/{project.pk}/label/")
    editor = wait.until(EC.visibility_of_element_located((By.ID, "demo-text")))
    assert browser.switch_to.active_element == editor
    skip_button = browser.find_element(By.ID, "skip-open")
    assert "Alt+S" in skip_button.get_attribute("title") and "Alt+S" in skip_button.text

    editor.send_keys("Roses are red, skies are blue")  # a plain s is a letter here
    assert editor.get_attribute("value") == "Roses are red, skies are blue"
    dialog = browser.find_element(By.ID, "skip-dialog")
    assert not dialog.is_displayed()
    press_with(browser, Keys.ALT, "s")
    wait.until(lambda d: dialog.is_displayed())
    assert "You have a draft; skip anyway?" in dialog.text
    assert editor.get_attribute("value") == "Roses are red, skies are blue"  # Alt+S typed nothing
    press(browser, "not my subject", Keys.ENTER)

    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "All done"))
    skipped = Assignment.objects.get(task=task, annotator=annotator)
    assert (skipped.state, skipped.skip_reason) == (Assignment.State.SKIPPED, "not my subject")


def touch_drag(driver, handle, *, onto_top_of) -> None:
    """Drag `handle` with a finger (touch pointer events, as on a tablet) to just inside the top
    edge of another element, in small steps."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
    box = "const b = arguments[0].getBoundingClientRect(); return [b.left + b.width / 2, b.top, b.height];"
    x, y, height = driver.execute_script(box, handle)
    target_y = driver.execute_script(box, onto_top_of)[1] + 5
    start = (int(x), int(y + height / 2))
    finger = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"), duration=100)
    finger.pointer_action.move_to_location(*start).pointer_down()
    for step in range(1, 6):
        finger.pointer_action.move_to_location(start[0], int(start[1] + (target_y - start[1]) * step / 5))
    finger.pointer_action.pointer_up()
    finger.perform()


def test_a_ranking_is_edited_on_the_board_by_touch_controls_and_its_summary_follows(
    browser, live_server, annotator, project
):
    """On the progress page: a move button (a finger's alternative to dragging), a drag by the
    card's handle, "none acceptable"; saving updates the summary above the board, with no reload."""
    task = add_ranking_task(project, answers=["Yushan", "Xueshan", "Hehuan"])
    first, second, third = leases.task_next_for(annotator=annotator, project=project).candidate_order
    ranking, _ = submissions.ranking_submit(
        annotator=annotator, task_id=task.pk, ranking=[[first], [second], [third]], client_id=new_client_id()
    )
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in(browser, live_server.url, "alice")
    browser.find_element(By.LINK_TEXT, "My progress").click()
    article = f"#ranking-{ranking.pk}"
    summary = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"{article} .ranking-summary")))
    assert summary.text == "A › B › C"
    browser.execute_script("window.notReloaded = true")

    def board():
        return [
            card.get_attribute("data-label")
            for card in browser.find_elements(By.CSS_SELECTOR, f"{article} .answer-card")
        ]

    # A down one place with its button; then C dragged to the top by a finger on its handle.
    down = browser.find_element(By.CSS_SELECTOR, f"{article} .answer-card[data-id='{first}'] .move-down")
    assert down.size["height"] >= 28 and down.size["width"] >= 28
    down.click()
    assert board() == ["B", "A", "C"]
    rail = browser.find_element(By.CSS_SELECTOR, f"{article} .answer-card[data-id='{third}'] .card-rail")
    top = browser.find_element(By.CSS_SELECTOR, f"{article} .answer-card[data-id='{second}']")
    touch_drag(browser, rail, onto_top_of=top)
    wait.until(lambda d: board() == ["C", "B", "A"])
    browser.find_element(By.CSS_SELECTOR, f"{article} input[name=none_acceptable]").click()
    screenshot(browser, "progress-ranking-board")
    browser.find_element(By.CSS_SELECTOR, f"{article} button[type=submit]").click()

    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"{article} .form-status"), "Saved"))
    assert summary.text == "C › B › A"
    assert browser.find_element(By.CSS_SELECTOR, f"{article} .none-note").is_displayed()
    assert browser.execute_script("return window.notReloaded") is True
    ranking.refresh_from_db()
    assert (ranking.groups, ranking.none_acceptable) == ([[third], [second], [first]], True)


def test_a_skipped_task_is_taken_back_from_the_progress_page(browser, live_server, annotator, project):
    task = add_demonstration_task(project, "Write a poem about K2.")
    leases.task_next_for(annotator=annotator, project=project)
    leases.task_skip(annotator=annotator, task_id=task.pk, reason="later")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    log_in(browser, live_server.url, "alice")
    browser.find_element(By.LINK_TEXT, "My progress").click()

    row = wait.until(EC.visibility_of_element_located((By.ID, f"skipped-{task.pk}")))
    assert "Write a poem about K2." in row.text and "later" in row.text
    row.find_element(By.CSS_SELECTOR, "button.unskip").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#skipped-{task.pk} .unskip-status"), "yours again"))
    assert not row.find_element(By.CSS_SELECTOR, "button.unskip").is_displayed()
    assert Assignment.objects.get(task=task, annotator=annotator).state == Assignment.State.LEASED

    row.find_element(By.LINK_TEXT, "Label it now").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "conversation"), "poem about K2"))
    assert browser.find_element(By.ID, "task-id").text == f"#{task.pk}"


# --- languages (tests/test_i18n.py checks the rest without a browser) -----------------------------


@pytest.fixture
def chinese_browser(tmp_path):
    """Chromium as a reader in Taiwan starts it: its interface in zh-TW, zh-TW first in Accept-Language."""
    yield from chromium_session(tmp_path, lang="zh-TW")


def test_a_taiwanese_browser_gets_chinese_pages_and_the_switch_to_english_sticks(
    chinese_browser, live_server, reviewer, project
):
    from labeling.models import UserSettings

    browser, wait = chinese_browser, WebDriverWait(chinese_browser, WAIT_SECONDS)
    browser.get(f"{live_server.url}/accounts/login/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-hant"
    assert browser.find_element(By.TAG_NAME, "h1").text == "登入"
    browser.find_element(By.NAME, "username").send_keys(reviewer.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD, Keys.ENTER)
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "專案"))
    assert browser.find_element(By.LINK_TEXT, "審查").is_displayed()

    # The review page's script speaks Chinese too: its strings come from the JavaScript catalogue.
    browser.get(f"{live_server.url}/projects/{project.pk}/review/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "這個專案已經沒有要審查的回答了"))
    screenshot(browser, "review-zh-hant")

    # English, from the switch in the header: the page comes back in English, and stays so.
    browser.find_element(By.CSS_SELECTOR, ".language-switch button[value='en']").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "Nothing left to review in this project"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    browser.refresh()
    wait.until(EC.text_to_be_present_in_element((By.ID, "notice-text"), "Nothing left to review in this project"))
    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith("Review · ")
    assert UserSettings.objects.get(user=reviewer).language == "en"
    screenshot(browser, "review-en")
