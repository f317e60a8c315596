"""`ftorch review` in a real browser: headless Debian Chromium driven by Selenium walks the data page with the
keyboard, edits an example into an invalid one and sees the live error, fixes it, rejects another, has the server
killed (SIGKILL) mid-review, reopens, finds every decision, and exports files that `ftorch data check` passes;
an evaluation's review; and the blind grading view graded from the keyboard, killed mid-grading, reopened with
every grade, its answers shown as text."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal

import pytest

from conftest import run_cli
from support.review import serve_in_process

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not "
                                "installed (apt-get install -y chromium chromium-driver; .ci/run does it)")
SYSTEM = "Reply with JSON only."


def _example(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 45):
    # the page re-renders its list on every decision: an element found just before a re-render is stale, so the
    # condition is asked again rather than failing the test
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(lambda d: condition(d))


def _keys(driver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def _title(driver) -> str:
    return driver.find_element(By.ID, "title").text


def _badge(driver, line: int) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#list li[data-line="{line}"] .badge').text


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def test_review_walk_edit_kill_resume_export(tmp_path, browser):
    data = tmp_path / "train.jsonl"
    rows = [_example(f"Cancel my meeting number {n}.", json.dumps({"action": "cancel", "n": n})) for n in range(1, 6)]
    rows.append(rows[1])  # line 6: an exact duplicate of line 2
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = hashlib.sha256(data.read_bytes()).hexdigest()

    proc, url = serve_in_process(data)
    try:
        assert run_cli_status(url.replace("?token=", "?token=wrong")) == 403
        _open(browser, url)
        assert _title(browser) == "line 1"
        _keys(browser, "j")
        _wait(browser, lambda d: _title(d) == "line 2")
        assert "exact duplicates: lines 2, 6" in browser.find_element(By.ID, "cluster").text
        assert "tokens" in browser.find_element(By.ID, "tokens").text
        _keys(browser, "k")
        _wait(browser, lambda d: _title(d) == "line 1")
        _keys(browser, "a")  # accept line 1, moves on to line 2
        _wait(browser, lambda d: _title(d) == "line 2" and _badge(d, 1) == "accept")

        _keys(browser, "e")  # edit line 2: empty the answer (invalid), then write a better one
        _wait(browser, lambda d: d.find_element(By.ID, "editor").is_displayed())
        answer = browser.find_elements(By.CSS_SELECTOR, "#edit-rows textarea.edit-content")[-1]
        answer.send_keys(Keys.CONTROL, "a")
        answer.send_keys(Keys.BACKSPACE)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#edit-issues li.error[data-code="missing_content"]'))
        assert browser.find_element(By.ID, "edit-state").get_attribute("class") == "invalid"
        ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
        _wait(browser, lambda d: "not saved" in d.find_element(By.ID, "status").text)
        answer.send_keys('{"action": "cancel", "with": "team"}')
        _wait(browser, lambda d: d.find_element(By.ID, "edit-state").get_attribute("class") == "valid")
        assert not browser.find_elements(By.CSS_SELECTOR, "#edit-issues li.error")
        ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
        _wait(browser, lambda d: not d.find_element(By.ID, "editor").is_displayed() and _badge(d, 2) == "edit")
        assert '"with": "team"' in browser.find_element(By.ID, "messages").text

        _keys(browser, "j")
        _wait(browser, lambda d: _title(d) == "line 3")
        browser.find_element(By.ID, "note").send_keys("off-task")
        browser.find_element(By.ID, "note").send_keys(Keys.ESCAPE)
        _keys(browser, "r")  # reject line 3 with its note
        _wait(browser, lambda d: _title(d) == "line 4" and _badge(d, 3) == "reject")
        _keys(browser, "a")
        _wait(browser, lambda d: _title(d) == "line 5" and _badge(d, 4) == "accept")
        _keys(browser, "k", "u")  # back to line 4 and undo its accept
        _wait(browser, lambda d: _title(d) == "line 4" and _badge(d, 4) == "undecided")
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-review: nothing but the review file survives
        proc.wait(timeout=10)

    assert hashlib.sha256(data.read_bytes()).hexdigest() == before  # the data file is never written
    proc, url = serve_in_process(data)
    try:
        _open(browser, url)
        assert _title(browser) == "line 4"  # resumes after the newest standing decision (line 3's reject)
        _wait(browser, lambda d: _badge(d, 1) == "accept")
        assert [_badge(browser, n) for n in range(1, 7)] == ["accept", "edit", "reject", "undecided", "undecided",
                                                               "undecided"]
        assert "1 accepted · 1 rejected · 1 edited · 3 undecided" in browser.find_element(By.ID, "counts").text
        browser.find_element(By.CSS_SELECTOR, '#list li[data-line="3"]').click()
        _wait(browser, lambda d: _title(d) == "line 3")
        assert browser.find_element(By.ID, "note").get_attribute("value") == "off-task"
        browser.find_element(By.CSS_SELECTOR, '#list li[data-line="2"]').click()
        _wait(browser, lambda d: '"with": "team"' in d.find_element(By.ID, "messages").text)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)

    done = run_cli("review", str(data), "--export")
    assert done.returncode == 0, done.stderr
    assert "2 examples: 1 accepted, 1 edited; 1 rejected and 3 undecided left out" in done.stdout
    assert "1 pairs" in done.stdout
    curated = [json.loads(line) for line in (tmp_path / "train.curated.jsonl").read_text().splitlines()]
    edited = {"role": "assistant", "content": '{"action": "cancel", "with": "team"}'}
    assert curated == [rows[0], {"messages": [*rows[1]["messages"][:2], edited]}]
    pair = json.loads((tmp_path / "train.preference.jsonl").read_text())
    assert pair["preferred_output"][0]["content"] == '{"action": "cancel", "with": "team"}'
    assert pair["non_preferred_output"][0]["content"] == rows[1]["messages"][2]["content"]
    for name in ("train.curated.jsonl", "train.preference.jsonl"):
        check = run_cli("data", "check", str(tmp_path / name))
        assert check.returncode == 0, check.stdout + check.stderr


def run_cli_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_review_an_evaluation(tmp_path, browser):
    from selenium.webdriver.support.ui import Select

    from support.review import make_eval

    run, train = make_eval(tmp_path)
    proc, url = serve_in_process(run)
    try:
        _open(browser, url)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#list li")) == 3
        Select(browser.find_element(By.ID, "f-filter")).select_by_value("prompted_right_tuned_wrong")
        _wait(browser, lambda d: [li.get_attribute("data-id") for li in d.find_elements(By.CSS_SELECTOR, "#list li")]
              == ["2"])
        browser.find_element(By.TAG_NAME, "body").click()
        cards = browser.find_elements(By.CSS_SELECTOR, ".system")
        assert [c.get_attribute("data-system") for c in cards] == ["base", "prompted", "tuned"]
        assert browser.find_element(By.CSS_SELECTOR, '.system[data-system="tuned"] del').text == "09"
        assert browser.find_element(By.CSS_SELECTOR, '.system[data-system="tuned"] ins').text == "10"
        _keys(browser, "w", "g")  # the tuned answer's scoring is wrong; send it as a negative example
        _wait(browser, lambda d: "sent as a negative example" in d.find_element(By.ID, "status").text)
        assert "task: 1 checked, 1 marked wrong" in browser.find_element(By.ID, "summary").text
        _keys(browser, "3", "b", "c")  # safety: the base answer's refusal verdict is right
        _wait(browser, lambda d: "safety: 1 checked, 0 marked wrong, agreement 100%"
              in d.find_element(By.ID, "summary").text)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    report = json.loads((run / "eval" / "2026-01-02_00-00-00_000000" / "report.json").read_text())
    assert report["human_check"]["task"] == {"checked": 1, "wrong": 1, "agreement": 0.0}
    negatives = [json.loads(x) for x in (tmp_path / "train.review.jsonl").read_text().splitlines()]
    assert [(r["action"], r["rejected"]) for r in negatives] == [("negative", '{"day": "Monday", "time": "10:00"}')]


def test_grade_blind_from_the_keyboard(tmp_path, browser):
    from ftorch.eval.grades import load_grades, sample, tuned_shown_first

    from support.grading import make_judged_run

    run = make_judged_run(tmp_path)
    predictions = run / "eval" / "2026-01-02_00-00-00_000000" / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    proc, url = serve_in_process(run)
    try:
        _open(browser, url)
        _keys(browser, "4")
        _wait(browser, lambda d: _title(d) == "grading 1 of 20")
        assert "0 of 20 graded" in browser.find_element(By.ID, "grading-stats").text
        items = [(li.get_attribute("data-id"), li.find_element(By.CLASS_NAME, "badge").text)
                 for li in browser.find_elements(By.CSS_SELECTOR, "#list li")]
        assert items == [(str(n), "ungraded") for n in range(1, 21)]
        detail = browser.find_element(By.ID, "detail").text.lower()
        assert "tuned" not in detail and "prompted" not in detail  # blind: nothing says whose answer is whose
        shown = {name: browser.find_element(By.CSS_SELECTOR, f'.answer-card[data-answer="{name}"] pre').text
                 for name in ("A", "B")}
        _keys(browser, "a")  # item 1: A is better
        _wait(browser, lambda d: _title(d) == "grading 2 of 20" and "item 1: A better · saved"
              in d.find_element(By.ID, "status").text)
        _keys(browser, "b", "d")  # item 2: B is better; item 3: both bad
        _wait(browser, lambda d: _title(d) == "grading 4 of 20" and "3 of 20 graded"
              in d.find_element(By.ID, "grading-stats").text)
        _keys(browser, "k", "u")  # back to item 3 and undo its grade
        _wait(browser, lambda d: _title(d) == "grading 3 of 20" and "2 of 20 graded · judge agrees with you"
              in d.find_element(By.ID, "grading-stats").text)
        assert "PPI interval width" in browser.find_element(By.ID, "grading-stats").text
        assert [li.find_element(By.CLASS_NAME, "badge").text for li in
                browser.find_elements(By.CSS_SELECTOR, "#list li")[:4]] == ["A better", "B better", "ungraded",
                                                                             "ungraded"]
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-grading: only grades.jsonl survives
        proc.wait(timeout=10)

    grades = load_grades(run)
    assert len(grades) == 2
    first = rows[sample([r["pairwise"]["judge"] for r in rows], 20, 0)[0]]  # item 1 of the seeded sample
    whose = "tuned" if tuned_shown_first(first["pairwise"]["key"], 0) else "prompted"
    assert shown["A"] == first["systems"][whose]["output"] and grades[first["pairwise"]["key"]] == whose

    proc, url = serve_in_process(run)  # reopened: the grades are where they were
    try:
        _open(browser, url)
        _keys(browser, "4")
        _wait(browser, lambda d: _title(d) == "grading 1 of 20")
        assert [li.find_element(By.CLASS_NAME, "badge").text for li in
                browser.find_elements(By.CSS_SELECTOR, "#list li")[:3]] == ["A better", "B better", "ungraded"]
        _keys(browser, " ")  # the next ungraded item
        _wait(browser, lambda d: _title(d) == "grading 3 of 20")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_grading_shows_answers_as_text(tmp_path, browser):
    from support.grading import make_judged_run

    run = make_judged_run(tmp_path, n=4, grade_sample=4)
    predictions = run / "eval" / "2026-01-02_00-00-00_000000" / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    hostile = '<img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>'
    for row in rows:  # the grade keys stay: the page shows what the evaluation wrote
        for system in ("tuned", "prompted"):
            row["systems"][system]["output"] = f"{system[0]}{row['line']} {hostile}"
        row["input"][0]["content"] += hostile
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc, url = serve_in_process(run)
    try:
        _open(browser, url)
        _keys(browser, "4")
        _wait(browser, lambda d: _title(d) == "grading 1 of 4")
        for name in ("A", "B"):
            assert hostile in browser.find_element(By.CSS_SELECTOR, f'.answer-card[data-answer="{name}"] pre').text
        assert hostile in browser.find_element(By.CSS_SELECTOR, "#body .chat").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#detail img, #detail b, #list img")
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-pwned") is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_review_in_suspect_order_feeds_the_curated_export(tmp_path, browser):
    """`ftorch review FILE --order suspects --run RUN`: the most suspect example first, with the model's answer
    beside the label; a rejection moves on to the next suspect, survives a kill, and leaves the curated export."""
    from ftorch.data.profile import exact_key
    from ftorch.data.suspects import Signals, rank, write

    data = tmp_path / "train.jsonl"
    rows = [_example(f"Cancel my meeting number {n}.", json.dumps({"action": "cancel", "n": n})) for n in range(1, 7)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    run.mkdir()
    # lines 5 and 2 disagree with the model; line 5 also has the highest loss
    signals = [Signals(n, exact_key(rows[n - 1]), f"meeting {n}", rows[n - 1]["messages"][-1]["content"],
                       '{"action": "move"}' if n in (2, 5) else rows[n - 1]["messages"][-1]["content"],
                       {5: 3.0, 2: 2.0}.get(n, 0.1 * n), 0.5 if n in (2, 5) else 1.0) for n in range(1, 7)]
    write(run / "suspects.jsonl", rank(signals), data, "both")

    proc, url = serve_in_process(data, "--order", "suspects", "--run", str(run))
    try:
        _open(browser, url)
        assert _title(browser) == "line 5"
        order = [li.get_attribute("data-line") for li in browser.find_elements(By.CSS_SELECTOR, "#list li")]
        assert order == ["5", "2", "6", "4", "3", "1"]  # the suspects by score, then ties by loss
        suspect = browser.find_element(By.ID, "suspect").text
        assert suspect.startswith("suspect #1 (score ") and '"action": "move"' in suspect
        _keys(browser, "r")  # reject the top suspect: on to the second, not to the next line of the file
        _wait(browser, lambda d: _title(d) == "line 2" and _badge(d, 5) == "reject")
        assert browser.find_element(By.ID, "suspect").text.startswith("suspect #2 ")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    proc, url = serve_in_process(data, "--order", "suspects", "--run", str(run))
    try:
        _open(browser, url)
        assert _title(browser) == "line 2"  # resumes at the next suspect after the newest decision
        _keys(browser, "a")
        _wait(browser, lambda d: _title(d) == "line 6" and _badge(d, 2) == "accept")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    exported = run_cli("review", str(data), "--export")
    assert exported.returncode == 0, exported.stderr
    curated = [json.loads(line) for line in (tmp_path / "train.curated.jsonl").read_text().splitlines()]
    assert curated == [rows[1]]  # the accepted suspect; the rejected one is left out
