"""`ftorch review` on 10,000 examples: opening the review (one pass through `data check`'s own checks plus the
index) against `data check`'s inspect_file on the same file, measured in the same run; then the server-side cost
of what the page asks for (a page of 50 at the start and the end, a text search, a filter, a decision, a live
validation), in milliseconds. Usage: python bench/review_scale.py [--examples N] [--repeat N]"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from ftorch.data.report import inspect_file
from ftorch.data.tokens import counter_for
from ftorch.review.data_view import DataReview


def make(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            user = f"Move my meeting with person {i % 997} to day {i % 7} at {i % 12 + 1}pm about topic {i}."
            answer = json.dumps({"action": "move", "with": f"person {i % 997}", "day": i % 7,
                                 "time": f"{i % 12 + 13}:00"})
            row = {"messages": [{"role": "system", "content": "Reply with JSON only."},
                                {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
            if i % 500 == 7:
                row["messages"][2]["content"] = " "  # an issue now and then
            handle.write(json.dumps(row) + "\n")


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    counter = counter_for(None)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        make(data, args.examples)
        rounds_check, rounds_open = [], []
        for _ in range(args.repeat):  # alternating rounds: the box is shared and noisy
            rounds_check.append(timed(lambda: inspect_file(data, "chat", counter), 1))
            rounds_open.append(timed(lambda: DataReview.open(data, "chat", counter), 1))
        check, opened = statistics.median(rounds_check), statistics.median(rounds_open)
        review = DataReview.open(data, "chat", counter)
        last = review.index.lines[-1]
        messages = review.index.example(last)[0]["messages"]
        ops = {
            "page of 50, first": lambda: review.page(0, 50),
            "page of 50, last": lambda: review.page(args.examples - 50, 50),
            "filter by issue code": lambda: review.page(0, 50, code="missing_content"),
            "filter: undecided": lambda: review.page(0, 50, decision="undecided"),
            "text search (whole file)": lambda: review.page(0, 50, query="topic 9999."),
            "live validation of an edit": lambda: review.index.validate(last, messages),
            "decision (append + fsync)": lambda: review.decide(last, review.index.hashes[last], "accept"),
        }
        print(f"{args.examples:,} examples, {data.stat().st_size / 1e6:.1f} MB\n")
        print("| step | median wall | × data check's pass |")
        print("|---|---|---|")
        print(f"| `inspect_file` (what `ftorch data check` runs; baseline) | {check:.2f} s | 1.00× |")
        print(f"| `DataReview.open` (the same pass + index + decisions) | {opened:.2f} s | {opened / check:.2f}× |")
        print("\n| request (server side) | median ms |")
        print("|---|---|")
        for name, fn in ops.items():
            print(f"| {name} | {1000 * timed(fn, args.repeat):.1f} |")
        small = Path(tmp) / "small.jsonl"
        make(small, 240)
        print("\n| in headless Chromium, median ms | 240 examples (baseline) | "
              f"{args.examples:,} examples | ratio |\n|---|---|---|---|")
        base, big = browser(small, args.repeat), browser(data, args.repeat)
        for name in base:
            print(f"| {name} | {base[name]:.0f} | {big[name]:.0f} | {big[name] / base[name]:.2f}× |")


def browser(data: Path, repeat: int) -> dict[str, float]:
    """In headless Chromium (when installed): the page's first load, and a key press that crosses a page."""
    import shutil
    import subprocess
    import sys

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("(no chromium/chromedriver: browser timings skipped)")
        return {}
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    proc = subprocess.Popen([sys.executable, "-m", "ftorch", "review", str(data), "--no-browser"],
                            stdout=subprocess.PIPE, text=True)
    url = next(line.split()[-1] for line in proc.stdout if line.startswith("review at "))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        loads, crossings = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            driver.get(url)
            WebDriverWait(driver, 30, 0.01).until(lambda d: d.execute_script("return document.body.dataset.ready"))
            loads.append(time.perf_counter() - start)
            driver.execute_script("document.getElementById('list').lastElementChild.click()")
            start = time.perf_counter()
            ActionChains(driver).send_keys("j").perform()
            WebDriverWait(driver, 30, 0.01).until(
                lambda d: d.execute_script("return document.getElementById('title').textContent") == "line 51")
            crossings.append(time.perf_counter() - start)
        return {"first load, to the first example shown": 1000 * statistics.median(loads),
                "`j` on the 50th example to the 51st (fetches the next page)": 1000 * statistics.median(crossings)}
    finally:
        driver.quit()
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
