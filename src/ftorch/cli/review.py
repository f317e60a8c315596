"""`ftorch review PATH`: a data file opens the data review, a run folder (or an evaluation folder) opens its
latest evaluation; `--export` writes the curated and preference files instead of serving."""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path

from ..errors import DataError, Problem
from .argtypes import add_max_line_bytes, port, positive_int


def add_parser(sub) -> None:
    review = sub.add_parser("review", help="a local page to accept, reject and edit examples, or to read and "
                            "check an evaluation's answers", description="A data file: review its examples "
                            "(decisions go to STEM.review.jsonl beside it). A run folder: its latest evaluation.")
    review.add_argument("path", type=Path, metavar="DATA.jsonl|RUN_DIR")
    review.add_argument("--port", type=port, default=0, help="port on 127.0.0.1 (default: a free one)")
    review.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    review.add_argument("--export", action="store_true", help="write STEM.curated.jsonl (accepted + edited) and "
                        "STEM.preference.jsonl (edits and negatives, OpenAI DPO format), then exit")
    review.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    review.add_argument("--model", help="tokenizer to count with (as in `ftorch data check`)")
    review.add_argument("--max-length", type=positive_int, metavar="N", help="flag examples longer than N tokens")
    review.add_argument("--order", choices=("file", "suspects"), default="file", help="suspects: the examples "
                        "`ftorch data suspects RUN` ranks most likely mislabelled first (needs --run)")
    review.add_argument("--run", type=Path, metavar="RUN", help="the run whose suspects order the review")
    add_max_line_bytes(review)


def run(args) -> int:
    from .console import out

    path: Path = args.path
    if not path.exists():
        raise DataError(Problem(str(path), "not found", "give a JSONL data file or a run folder"))
    if path.is_dir():
        if args.order != "file":
            raise DataError(Problem("--order", "orders a data file's review; a run folder opens its evaluation",
                                    f"run: ftorch review DATA.jsonl --order suspects --run {path}"))
        if args.export:
            raise DataError(Problem("--export", "exports a data file's review; a run folder has none",
                                    "run: ftorch review DATA.jsonl --export"))
        from ..review.eval_view import EvalReview

        target = EvalReview.open(path)
        out.print(f"evaluation: {target.folder}", markup=False)
        out.print(f"marks are saved in {target.marks_file}", markup=False)
    else:
        target = _open_data(path, args)
        if args.export:
            return _export(target)
        if args.order == "suspects":
            _order_by_suspects(target, path, args.run)
        if not os.access(target.review_file.parent, os.W_OK) or (
                target.review_file.exists() and not os.access(target.review_file, os.W_OK)):
            raise DataError(Problem(str(target.review_file), "cannot write the review file beside the data",
                                    "copy the data file to a folder you can write to, and review the copy"))
        meta = target.meta()
        counts = meta["decisions"]
        out.print(f"{meta['examples']} examples in {path}; decisions in {target.review_file}: "
                  f"{counts['accept']} accepted, {counts['reject']} rejected, {counts['edit']} edited", markup=False)
        _report_stale(target)
    return _serve(target, args.port, not args.no_browser)


def _open_data(path: Path, args):
    from ..data.checks import detect_format
    from ..data.tokens import counter_for
    from ..review.data_view import DataReview

    fmt = detect_format(path, args.max_line_bytes) if args.format == "auto" else args.format
    return DataReview.open(path, fmt, counter_for(args.model), args.max_length, args.max_line_bytes)


def _order_by_suspects(target, path: Path, run: Path | None) -> None:
    from ..data.suspects import read
    from .console import out

    if run is None:
        raise DataError(Problem("--order suspects", "needs the run that ranked them",
                                f"add --run RUN (after: ftorch data suspects RUN); e.g. ftorch review {path} "
                                "--order suspects --run runs/quickstart/<timestamp>"))
    source, rows = read(run)
    if source.resolve() != path.resolve():
        raise DataError(Problem(str(run / "suspects.jsonl"), f"ranks {source}, not {path}",
                                f"review that file: ftorch review {source} --order suspects --run {run}"))
    placed = target.order_by_suspects(rows)
    changed = len(rows) - placed
    out.print(f"order: {placed} suspects first (from {run}), then the other examples in file order"
              + (f"; {changed} suspects left out: their line no longer holds the ranked example" if changed else ""),
              markup=False)


def _report_stale(target) -> None:
    from .console import err

    decisions = target.decisions
    if decisions.moved:
        err.print(f"the data file changed since the review: {decisions.moved} decisions followed their example "
                  "to a new line (matched by content hash)", markup=False)
    if decisions.stale:
        lines = ", ".join(str(s.line) for s in decisions.stale[:20]) + (" ..." if len(decisions.stale) > 20 else "")
        err.print(f"{len(decisions.stale)} decisions no longer apply (their example changed or is gone): recorded "
                  f"at lines {lines}", markup=False)
    if decisions.repaired:
        err.print(decisions.repaired, markup=False)
    if decisions.unreadable:
        err.print(f"{target.review_file}: unreadable lines {decisions.unreadable} were skipped", markup=False)


def _export(target) -> int:
    from ..review.export import export
    from .console import out

    if not target.review_file.is_file():
        raise DataError(Problem(str(target.index.path), f"no review yet ({target.review_file} does not exist)",
                                f"review it first: ftorch review {target.index.path}"))
    _report_stale(target)
    done = export(target)
    counts = (f"{done.accepted} accepted, {done.edited} edited; {done.rejected} rejected and {done.undecided} "
              "undecided left out")
    if done.curated is not None:
        out.print(f"curated: {done.curated} ({done.accepted + done.edited} examples: {counts})", markup=False)
    else:
        out.print(f"curated: none written, no example was accepted or edited ({counts})", markup=False)
    if done.preference is not None:
        out.print(f"preference: {done.preference} ({done.pairs} pairs, OpenAI DPO format)", markup=False)
    else:
        out.print("preference: none written (no edited answers or negative examples yet)", markup=False)
    return 0


def _serve(target, port: int, browser: bool) -> int:
    from ..review.server import ReviewServer
    from .console import out

    try:
        server = ReviewServer(target, port)
    except OSError as exc:
        raise DataError(Problem("--port", f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                                "choose another port, or leave --port out for a free one")) from None
    from ..secrets import show

    show(server.token)  # a token named `token=` in the printed URL: the user needs it whole
    out.print(f"review at {server.url}", markup=False, soft_wrap=True)
    keys = ("j/k next/previous · a accept · r reject · e edit · u undo" if target.kind == "data" else
            "j/k next/previous · b/p/t base/prompted/tuned · c scoring right · w scoring wrong · g send as negative")
    if getattr(target, "grading", None) is not None:
        keys += (f" · 4 grade blind ({len(target.grading.chosen)} prompts: a/b better, t tie, d both bad, u undo; "
                 f"grades in {target.grading.file})")
    out.print(f"keys: {keys} · ? help; Ctrl-C stops (every decision is already saved)", markup=False)
    sys.stdout.flush()
    if browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("stopped; every decision was saved as it was made", markup=False)
    finally:
        server.server_close()
    return 0
