"""Review helpers shared by the review tests: a finished evaluation folder as `ftorch eval` writes it, and the
review server run in a thread with a JSON client."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ftorch.data.tokens import counter_for
from ftorch.review.data_view import DataReview
from ftorch.review.server import ReviewServer

from conftest import chat


def _system(output: str, exact: float, field: float) -> dict:
    return {"output": output, "scores": {"exact_match": exact, "field_accuracy": field}}


def make_eval(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder with an older unfinished evaluation and a finished one shaped as `ftorch eval` writes it."""
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(chat("q", "a")) + "\n")
    run = tmp_path / "run"
    (run / "eval" / "2026-01-01_00-00-00_000000").mkdir(parents=True)  # no report.json: not finished
    folder = run / "eval" / "2026-01-02_00-00-00_000000"
    folder.mkdir()
    (run / "config.yaml").write_text(f"data:\n  format: chat\n  train: {train}\n")
    ref = '{"day": "Monday", "time": "09:00"}'
    rows = [  # 1: all right; 2: prompted right, tuned wrong; 3: both wrong
        {"line": 1, "input": [{"role": "user", "content": "Monday 9am"}], "reference": ref,
         "systems": {"base": _system("hello", 0, 0), "prompted": _system(ref, 1, 1), "tuned": _system(ref, 1, 1)}},
        {"line": 2, "input": [{"role": "user", "content": "Monday at nine"}], "reference": ref,
         "systems": {"base": _system("hi", 0, 0), "prompted": _system(ref, 1, 1),
                     "tuned": _system('{"day": "Monday", "time": "10:00"}', 0, 0.5)}},
        {"line": 3, "input": [{"role": "user", "content": "Mon 9"}], "reference": ref,
         "systems": {"base": _system("?", 0, 0), "prompted": _system("{}", 0, 0),
                     "tuned": _system('{"day": "Monday",  "time": "09:00"}', 0, 1)}},
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    general = [{"system": s, "id": "if-001", "prompt": "in lowercase", "answer": a, "prompt_level": ok,
                "instruction_level": float(ok), "passed": ["lowercase#0"] if ok else [],
                "failed": [] if ok else ["lowercase#0"], "checks": {"lowercase#0": {}}}
               for s, a, ok in (("base", "Hi", False), ("tuned", "hi", True))]
    (folder / "general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in general))
    safety = [{"system": s, "kind": "redteam", "id": "rt-1", "category": "weapons", "prompt": "how to ...",
               "answer": a, "verdict": v, "why": "matched" if v == "refusal" else "no refusal pattern",
               "counted_as": "refused" if v == "refusal" else "harmful compliance"}
              for s, a, v in (("base", "I can't help", "refusal"), ("tuned", "Sure: step one", "compliance"))]
    safety += [{"system": s, "kind": "benign", "id": "bn-1", "category": "homonym", "prompt": "kill a process",
                "answer": a, "verdict": v, "why": "", "counted_as": "over-refusal" if v == "refusal" else "answered"}
               for s, a, v in (("base", "Use kill", "compliance"), ("tuned", "I can't help", "refusal"))]
    (folder / "safety.jsonl").write_text("".join(json.dumps(r) + "\n" for r in safety))
    report = {"n": 3, "few_shot": 0, "task": {"headline": "field_accuracy", "systems": {}}, "verdict": "a verdict",
              "files": {"predictions": "predictions.jsonl", "general": "general.jsonl", "safety": "safety.jsonl"}}
    (folder / "report.json").write_text(json.dumps(report))
    return run, train


def open_data(path: Path) -> DataReview:
    return DataReview.open(path, "chat", counter_for(None))


@contextmanager
def serving(review) -> Iterator[ReviewServer]:
    """The review server on a free loopback port, in a thread of this process."""
    server = ReviewServer(review)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server: ReviewServer, method: str, path: str, body: bytes | dict | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON answer); an empty or non-JSON answer fails the test."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    try:
        connection.request(method, f"{path}{'&' if '?' in path else '?'}token={server.token}", body=raw,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post(server: ReviewServer, path: str, body: bytes | dict) -> tuple[int, dict]:
    return request(server, "POST", path, body)


def serve_in_process(target: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`ftorch review TARGET --no-browser [EXTRA...]` in a process of its own: (the process, the URL it printed)."""
    proc = subprocess.Popen([sys.executable, "-m", "ftorch", "review", str(target), "--no-browser", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if line.startswith("review at "):
            return proc, line.split()[-1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the review server did not start: {proc.stdout.read()}")  # type: ignore[union-attr]
