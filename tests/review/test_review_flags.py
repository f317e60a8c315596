"""`ftorch review`'s flags: `--max-line-bytes` reaches the data review (as `data check --max-line-bytes` and
data.max_line_bytes), and numbers out of range (`--port 70000`, `--max-length 0`) are usage errors from the shared
argparse types: exit 2 naming the flag, no traceback."""

from __future__ import annotations

import json

import pytest

from ftorch.cli import main
from ftorch.cli import review as review_cli

from conftest import chat

LONG = 5000  # bytes in the long example's answer


@pytest.fixture
def data(chat_jsonl):
    return chat_jsonl([chat("short", "yes"), chat("long", "x" * LONG), chat("short too", "no")], "train.jsonl")


@pytest.fixture
def served(monkeypatch):
    """What `ftorch review` would serve, without serving it."""
    got = {}

    def serve(target, port, browser):
        got.update(target=target, port=port)
        return 0

    monkeypatch.setattr(review_cli, "_serve", serve)
    return got


def test_max_line_bytes_raised_reviews_the_long_line(data, served, capsys):
    assert main(["review", str(data), "--no-browser", "--max-line-bytes", str(LONG + 1000), "--port", "0"]) == 0
    index = served["target"].index
    assert index.lines == [1, 2, 3] and index.max_line_bytes == LONG + 1000
    assert json.loads(index.raw(2))["messages"][1]["content"] == "x" * LONG


def test_max_line_bytes_lowered_refuses_the_long_line_naming_it(data, served, capsys):
    assert main(["review", str(data), "--no-browser", "--max-line-bytes", "1000"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{data}:2: line of" in err and "over the limit of 1,000 bytes per line" in err
    assert "Traceback" not in err and not served


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "argument --port: '70000' is not a port number (0 to 65535): give one from 1024 to 65535, "
                          "or 0 for a free one"),
    (["--port", "-1"], "argument --port: '-1' is not a port number (0 to 65535)"),
    (["--port", "http"], "argument --port: 'http' is not a whole number"),
    (["--max-line-bytes", "0"], "argument --max-line-bytes: '0' is not a positive whole number"),
    (["--max-length", "-3"], "argument --max-length: '-3' is not a positive whole number"),
])
def test_numbers_out_of_range_are_usage_errors(data, served, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["review", str(data), "--no-browser", *argv])
    assert exited.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "usage: ftorch review" in err and "Traceback" not in err and not served


def test_the_printed_url_carries_the_token_whole_and_opens_the_page(data):
    """The console scrubs `token=<high-entropy>` as a credential; the review page's own session token is what the
    printed URL is for, and is printed whole (it was ***REDACTED***, and every request with it got 403)."""
    import http.client
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from conftest import ROOT

    server = subprocess.Popen([sys.executable, "-m", "ftorch", "review", str(data), "--no-browser"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert server.stdout is not None
        line = next(line for line in server.stdout if line.startswith("review at ") or not line)
        url = urlsplit(line.split()[-1])
        assert "REDACTED" not in url.query and len(url.query.removeprefix("token=")) >= 24
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        connection.request("GET", f"/api/meta?{url.query}")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["examples"] == 3
        connection.close()
    finally:
        server.kill()
        server.wait(timeout=30)
