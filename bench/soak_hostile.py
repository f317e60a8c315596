"""Probe of issue 25's hostile scenarios, end to end against the CLI (`python -m ftorch`, each command a process
of its own) on the tiny model: symlinks planted at run-folder files, then resume; a one-line file of 1 GB for
`data check` and `review` (peak RSS measured by a small launcher); JSON nested 100,000 deep for `data check`,
`data convert`, `review` and `train`; and, where root can mount a tmpfs, review decisions and a checkpoint save on
a full disk. Prints one row per scenario: what is expected, what was observed, and whether it passed.

    .venv/bin/python bench/soak_hostile.py [--quick] [--keep]

--quick: a 256 MiB line instead of 1 GB (the rest is the same; about a minute on 2 cores). The fast, unit-level
versions of these checks are in make test (tests/run/test_no_symlink_writes.py, tests/data/test_hostile_input.py,
tests/review/test_durable_decisions.py, tests/run/test_disk_full.py); this replays them as a user meets them.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
TINY = ["recipe=quickstart-tiny", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
        "model.tiny.num_heads=2"]
TRAIN = [*TINY, "train.max_steps=4", "train.batch_size=4", "train.save_steps=2", "eval=none"]
PRECIOUS = "precious: not ftorch's file\n"
GOOD = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
DEEP = "[" * 100_000 + "]" * 100_000
RSS_LIMIT = 500 * 10**6
# The launcher reports its child's peak RSS (measured from here, a large parent could count its own pages).
_MEASURE = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
            "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")

rows: list[tuple[str, str, str, bool]] = []


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled", "FTORCH_ROOT": str(ROOT), "COLUMNS": "250",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def ftorch(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftorch", *map(str, argv)], cwd=ROOT, env=env(), text=True,
                          capture_output=True, timeout=timeout)


def peak_rss(*argv: str) -> tuple[int, str, int]:
    """(exit code, stdout and stderr, peak RSS in bytes) of `ftorch ARGV`."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "ftorch", *argv], cwd=ROOT,
                          env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    output, _, peak = done.stdout.rpartition("peak-rss-kib ")
    return done.returncode, output, int(peak.split()[0]) * 1024


def scenario(name: str, expected: str) -> Callable[[Callable[[], tuple[str, bool]]], None]:
    """Run the decorated probe now; it returns (observed, passed). An exception is a failed row, never a stop."""
    def run(probe: Callable[[], tuple[str, bool]]) -> None:
        start = time.time()
        try:
            observed, passed = probe()
        except Exception as exc:  # noqa: BLE001 - the probe's own failure is a result to show
            observed, passed = f"probe failed: {type(exc).__name__}: {str(exc)[:160]}", False
        rows.append((name, expected, f"{observed} ({time.time() - start:.0f} s)", passed))
        print(f"{'pass' if passed else 'FAIL'}  {name}: {observed}", flush=True)
    return run


def clean(done: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in done.stdout + done.stderr and "bug in ftorch" not in done.stdout + done.stderr


def first_line(text: str) -> str:
    return " ".join(text.split())[:140]


# ---- symlinks planted in a run folder -------------------------------------------------------------------------

def symlink_scenarios(work: Path) -> None:
    runs = work / "runs"
    done = ftorch("train", f"paths.runs={runs}", *TRAIN)
    if done.returncode != 0:
        rows.append(("tiny run for the symlink probes", "trains", f"exit {done.returncode}: "
                     f"{first_line(done.stderr[-300:])}", False))
        return
    (template,) = [p.parent for p in runs.rglob("run.json")]

    def copy(name: str) -> tuple[Path, Path, Path]:
        """A copy of the run marked failed (resume publishes the adapter again, rewrites metrics and the plot),
        a victim file and a victim folder outside it."""
        run = work / name / "run"
        shutil.copytree(template, run, symlinks=True)
        record = json.loads((run / "run.json").read_text())
        record.update(status="failed", error="planted by soak_hostile")
        (run / "run.json").write_text(json.dumps(record))
        victim, folder = work / name / "victim.txt", work / name / "victim-folder"
        victim.write_text(PRECIOUS)
        folder.mkdir()
        return run, victim, folder

    def plant(link: Path, target: Path) -> None:
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        link.unlink(missing_ok=True)
        link.symlink_to(target)

    for name in ("run.lock", "train.log"):
        @scenario(f"symlink at {name}, then resume", "exit 2 naming the path; target untouched")
        def refused(name=name) -> tuple[str, bool]:
            run, victim, _ = copy(name.replace(".", "_"))
            plant(run / name, victim)
            done = ftorch("resume", run)
            intact = victim.read_text() == PRECIOUS
            named = str(run / name) in " ".join(done.stderr.split()) and "symlink" in done.stderr
            passed = done.returncode == 2 and named and intact and clean(done)
            return (f"exit {done.returncode}, {'named' if named else 'NOT named'}, target "
                    f"{'untouched' if intact else 'WRITTEN'}"), passed

    @scenario("symlinks at .metrics.jsonl.tmp, loss.png, .loss.partial.png, .adapter.partial/.old, then resume",
              "exit 0, succeeded; no target written")
    def replaced() -> tuple[str, bool]:
        run, victim, folder = copy("replaced")
        for name in (".metrics.jsonl.tmp", ".loss.partial.png", "loss.png"):
            plant(run / name, victim)
        for name in (".adapter.partial", ".adapter.old"):
            plant(run / name, folder)
        done = ftorch("resume", run)
        status = json.loads((run / "run.json").read_text())["status"]
        intact = victim.read_text() == PRECIOUS and not any(folder.iterdir())
        return (f"exit {done.returncode}, {status}, targets {'untouched' if intact else 'WRITTEN'}",
                done.returncode == 0 and status == "succeeded" and intact and clean(done))


# ---- memory on one huge line ----------------------------------------------------------------------------------

def huge_line_scenarios(work: Path, size: int) -> None:
    path = work / "huge.jsonl"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: no disk written, the reads are real
    for argv in (["data", "check", path, "--json"], ["review", path, "--no-browser"]):
        @scenario(f"{'data check' if argv[0] == 'data' else 'review'} on a {size >> 20} MiB one-line file",
                  f"exit 2 naming line 1; peak RSS < {RSS_LIMIT // 10**6} MB")
        def bounded(argv=argv) -> tuple[str, bool]:
            code, output, peak = peak_rss(*map(str, argv))
            flat = " ".join(output.split())
            named = "over the limit of" in flat and ('"line": 1,' in flat or f"{path}:1:" in flat)
            return (f"exit {code}, peak {peak >> 20} MiB, {'line 1 named' if named else 'line NOT named'}",
                    code == 2 and peak < RSS_LIMIT and named and "Traceback" not in output)


# ---- deeply nested JSON ---------------------------------------------------------------------------------------

def deep_json_scenarios(work: Path) -> None:
    chat = work / "deep.jsonl"
    chat.write_text(GOOD + "\n" + '{"messages": ' + DEEP + "}\n")
    alpaca = work / "deep-alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "i", "output": "o"}) + "\n" + '{"instruction": ' + DEEP + "}\n")
    train = work / "deep-train.jsonl"
    train.write_text("\n".join([GOOD] * 12 + ['{"messages": ' + DEEP + "}"]) + "\n")
    cases = [(["data", "check", chat, "--json"], 1, '"line": 2', '"code": "too_deep"'),
             (["data", "convert", alpaca, "--from", "alpaca", "--out", work / "deep.chat.jsonl"], 2, f"{alpaca}:2",
              "nested more than 64 levels"),
             (["train", f"paths.runs={work / 'deep-runs'}", *TRAIN, f"data.train={train}"], 2, f"{train}:13",
              "too_deep")]
    for argv, code, where, what in cases:
        @scenario(f"{argv[0]} {argv[1] if argv[0] == 'data' else ''} on JSON nested 100,000 deep".replace("  ", " "),
                  f"exit {code} naming line {where.rsplit(':', 1)[-1].strip()}, no traceback")
        def deep(argv=argv, code=code, where=where, what=what) -> tuple[str, bool]:
            done = ftorch(*argv)
            text = " ".join((done.stdout + done.stderr).split())
            named = where in text and what in text
            return (f"exit {done.returncode}, {'named' if named else 'NOT named: ' + first_line(text[-200:])}",
                    done.returncode == code and named and clean(done))

    @scenario("review on JSON nested 100,000 deep", "serves; the line shown raw with too_deep, no traceback")
    def deep_review() -> tuple[str, bool]:
        with serving(chat) as (url, _):
            status, page = call(url, "GET", "/api/items?start=0&size=10")
        items = {i["line"]: i for i in page.get("items", [])}
        deep = items.get(2, {})
        shown = deep.get("example") is None and str(deep.get("raw", "")).startswith('{"messages": [[[') and \
            [i["code"] for i in deep.get("issues", [])] == ["too_deep"]
        return f"HTTP {status}, line 2 {'raw, too_deep' if shown else 'NOT shown raw'}", status == 200 and shown


# ---- the review server, driven over HTTP -------------------------------------------------------------------------

class serving:
    """`ftorch review DATA --no-browser` in a process of its own: (URL with token, the process) until Ctrl-C."""

    def __init__(self, data: Path):
        self.data = data

    def __enter__(self) -> tuple[str, subprocess.Popen]:
        self.process = subprocess.Popen([sys.executable, "-m", "ftorch", "review", str(self.data), "--no-browser"],
                                        cwd=ROOT, env=env(), text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        deadline = time.time() + 180
        for line in self.process.stdout:
            found = re.search(r"review at (\S+)", line)
            if found:
                return found.group(1), self.process
            if time.time() > deadline:
                break
        self.process.kill()
        raise RuntimeError(f"no URL printed: {self.process.stderr.read()[-300:] if self.process.stderr else ''}")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def call(url: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        token = parts.query.split("token=")[1]
        connection.request(method, f"{path}{'&' if '?' in path else '?'}token={token}",
                           body=json.dumps(body).encode() if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# ---- a full disk (tmpfs) --------------------------------------------------------------------------------------

class tmpfs:
    """A tmpfs of `size` at `path` (root only); None when it cannot be mounted, with why."""

    def __init__(self, path: Path, size: str):
        self.path, self.size, self.why = path, size, ""

    def __enter__(self) -> Path | None:
        self.path.mkdir(parents=True)
        if os.geteuid() != 0:
            self.why = "not root"
            return None
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            self.why = done.stderr.strip() or f"mount exit {done.returncode}"
            return None
        self.mounted = True
        return self.path

    def __exit__(self, *exc) -> None:
        if getattr(self, "mounted", False):
            subprocess.run(["umount", "-l", str(self.path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def full_disk_scenarios(work: Path) -> None:
    box = tmpfs(work / "review-disk", "64k")
    with box as disk:
        if disk is None:
            print(f"skip  review decisions on a full tmpfs: mounting a tmpfs needs root (CAP_SYS_ADMIN): {box.why}")
        else:
            @scenario("review decisions on a full tmpfs", "long edit refused (507), others kept; all 3 after reopen")
            def decisions() -> tuple[str, bool]:
                data = disk / "train.jsonl"
                data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question {n}"},
                                                                 {"role": "assistant", "content": f"answer {n}"}]})
                                        + "\n" for n in range(1, 5)))
                edit = [{"role": "user", "content": "question 2"},
                        {"role": "assistant", "content": "long answer " + "x" * 20_000}]
                with serving(data) as (url, _):
                    _, page = call(url, "GET", "/api/items?start=0&size=10")
                    hashes = {i["line"]: i["hash"] for i in page["items"]}
                    first = call(url, "POST", "/api/decide", {"line": 1, "hash": hashes[1], "action": "accept"})[0]
                    filler = fill(disk, 4096)  # a page free: a long record fits only in part
                    refused = call(url, "POST", "/api/decide",
                                   {"line": 2, "hash": hashes[2], "action": "edit", "messages": edit})
                    short = call(url, "POST", "/api/decide", {"line": 3, "hash": hashes[3], "action": "reject"})[0]
                    filler.unlink()
                    again = call(url, "POST", "/api/decide",
                                 {"line": 2, "hash": hashes[2], "action": "edit", "messages": edit})[0]
                copy = work / "reopened"  # the export's files do not fit on 64 KiB: read the decisions elsewhere
                copy.mkdir()
                for name in ("train.jsonl", "train.review.jsonl"):
                    shutil.copy(disk / name, copy / name)
                done = ftorch("review", copy / "train.jsonl", "--export")
                kept = "1 accepted, 1 edited; 1 rejected" in done.stdout
                observed = (f"accept {first}, long edit on full disk {refused[0]}, reject {short}, edit after {again}; "
                            f"reopened: {'all 3 kept' if kept else first_line(done.stdout + done.stderr)}")
                return observed, (first, refused[0], short, again) == (200, 507, 200, 200) and kept and clean(done)

    box = tmpfs(work / "run-disk", "1m")
    with box as disk:
        if disk is None:
            print(f"skip  checkpoint on a full tmpfs: mounting a tmpfs needs root (CAP_SYS_ADMIN): {box.why}")
            return

        @scenario("checkpoint save on a full 1 MiB tmpfs", "exit 2 with the resume command; run.json failed")
        def checkpoint() -> tuple[str, bool]:
            done = ftorch("train", f"paths.runs={disk / 'runs'}", *TRAIN)
            text = " ".join(done.stderr.split())
            records = list((disk / "runs").rglob("run.json"))
            status = json.loads(records[0].read_text())["status"] if records else "no run.json"
            resume = "ftorch resume" in text and "disk is full" in text
            return (f"exit {done.returncode}, run.json {status}, "
                    f"{'resume command given' if resume else first_line(text[-200:])}",
                    done.returncode == 2 and status == "failed" and resume and clean(done))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 256 MiB line instead of 1 GB")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ftorch-hostile-"))
    os.environ.setdefault("FTORCH_CACHE", str(work / "cache"))
    start = time.time()
    try:
        symlink_scenarios(work)
        huge_line_scenarios(work, (256 << 20) if args.quick else 10**9)
        deep_json_scenarios(work)
        full_disk_scenarios(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows + [("scenario", "expected", "observed", True)]) for i in range(3)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(("scenario", "expected", "observed"), widths)) + " | pass")
    print("-+-".join("-" * w for w in widths) + "-+-----")
    for name, expected, observed, passed in rows:
        print(" | ".join(c.ljust(w) for c, w in zip((name, expected, observed), widths)) +
              f" | {'yes' if passed else 'NO'}")
    failed = sum(not r[3] for r in rows)
    print(f"\n{len(rows) - failed}/{len(rows)} scenarios passed ({time.time() - start:.0f} s)"
          + (f"; work folder kept: {work}" if args.keep else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
