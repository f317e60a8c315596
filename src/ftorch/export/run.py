"""One export from start to record: check the run, write a new export folder, load it back, verify it, and
append it to run.json's `exports` (the latest also as `export`).

run.json tells the truth throughout: the export is listed as running while its folder is written (with an
INCOMPLETE marker in it); one that fails or is interrupted has its folder removed and says so; one killed outright
(kill -9) is found by the next export, which removes its folder and records it as died. With `out` (ftorch
export --out DIR) the run is only read, never written (a run on a read-only filesystem can be exported so): the
folder is made under DIR, its record is DIR/STEM/export.json."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..run.rundir import RunDir, now, write_json_atomic
from ..safe_io import write_text
from .source import Source, VerificationFailed, new_folder, open_run

INCOMPLETE = "INCOMPLETE"  # in an export folder until its export has finished
OUT_RECORD = "export.json"  # an --out export's record, in its folder (run.json is left alone)


@dataclass
class Request:
    run_dir: Path
    to: str  # merged | gguf | ollama
    dtype: str = "float32"  # merged
    quant: str = "q8_0"  # gguf / ollama
    verify: bool = True
    limit: int | None = None
    min_identical: float | None = None  # overrides of the default thresholds
    max_metric_delta: float | None = None
    max_metric_drop: float | None = None
    out: Path | None = None  # export under this folder, leaving the run's folder untouched


def export(request: Request, announce=print) -> dict:
    """Run the export; the record added to run.json (with request.out: written beside the export, the run left
    untouched). Raises VerificationFailed (after recording) when the export does not agree with the adapter
    within the thresholds."""
    source = open_run(request.run_dir)
    stem = f"merged-{request.dtype}" if request.to == "merged" else f"{request.to}-{request.quant}"
    if request.out is not None:
        with source.run.read_only("export"):
            entry = _write(source, new_folder(source.run, stem, request.out), request, announce)
    else:
        hint = (f"export it into a folder you can write to: ftorch export {request.run_dir} --to {request.to} "
                "--out DIR")
        with source.run.owned("export", read_only_hint=hint):
            clear_killed(source.run, announce)
            entry = _write(source, new_folder(source.run, stem), request, announce)
    failures = (entry["verification"] or {}).get("failures")
    if failures:
        raise VerificationFailed([_problem(entry["dir"], f) for f in failures],
                                 hint="the files are kept (and recorded as failing) in " + entry["dir"] + "; "
                                      "thresholds can be changed with --min-identical, --max-metric-delta and "
                                      "--max-metric-drop")
    return entry


def _write(source: Source, folder: Path, request: Request, announce) -> dict:
    """Write, load back and verify the export in `folder` (new, empty), recording it from start to end."""
    in_run = request.out is None
    marker = folder / INCOMPLETE
    write_text(marker, "this export has not finished (or was interrupted): its files are no result\n")
    if in_run:
        _put(source.run, {"kind": request.to, "dir": str(folder), "status": "running", "started": now()})
    try:
        if request.to == "merged":
            entry, loaded, precision = _merged(source, folder, request, announce)
        else:
            entry, loaded, precision = _gguf(source, folder, request, announce)
        if request.verify:
            entry["verification"] = _verify(source, loaded, folder, precision, request, announce)
        else:
            entry["verification"] = {"skipped": "--no-verify"}
        marker.unlink()
    except BaseException as exc:
        _abandon(source.run, folder, exc, in_run)
        raise
    entry.update(status="finished", created=now())
    if in_run:
        _put(source.run, entry, latest=True)
    else:
        write_json_atomic(folder / OUT_RECORD, {"run": str(source.run.path), **entry})
    return entry


def _put(run: RunDir, entry: dict[str, Any], *, latest: bool = False) -> None:
    """`entry` into run.json's `exports`, in place of the running one for the same folder (else appended: a
    folder name freed by a removed export is used again); `latest`: it is also `export`, the export chat and
    serve use."""
    exports = run.record().exports
    index = next((i for i, e in enumerate(exports) if _running_in(e, entry["dir"])), len(exports))
    exports = [*exports[:index], entry, *exports[index + 1:]]
    run.update(exports=exports, **({"export": entry} if latest else {}))


def _abandon(run: RunDir, folder: Path, exc: BaseException, in_run: bool) -> None:
    """An export that failed or was interrupted: its unfinished folder goes, and run.json says why."""
    from ..errors import FtorchError, RunInterrupted

    shutil.rmtree(folder, ignore_errors=True)
    if not in_run:
        return
    interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit, RunInterrupted))
    error = exc.render() if isinstance(exc, FtorchError) else f"{type(exc).__name__}: {exc}"
    entry = {**_entry_for(run, folder), "status": "interrupted" if interrupted else "failed",
             "error": "interrupted" if interrupted else error, "removed": True, "ended": now()}
    try:
        _put(run, entry)
    except (OSError, FtorchError):  # a full disk, a damaged run.json: the original error is what to report
        pass


def clear_killed(run: RunDir, announce) -> None:
    """Exports a killed process left unfinished (a folder in RUN/export/ with INCOMPLETE, or a record still
    'running'): we hold the run's lock, so nobody is writing them. Each such folder is removed (only there: a
    path in run.json elsewhere is never deleted), and each is recorded as died."""
    root = run.path / "export"
    leftovers = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                       and (p / INCOMPLETE).is_file()) if root.is_dir() else []
    for folder in leftovers:
        shutil.rmtree(folder, ignore_errors=True)
        announce(f"removed {folder}: an earlier export was killed before it finished")
    running = [Path(e["dir"]) for e in run.record().exports if e.get("status") == "running" and e.get("dir")]
    for folder in [*leftovers, *(p for p in running if not any(_same(p, q) for q in leftovers))]:
        removed = not folder.exists()
        _put(run, {**_entry_for(run, folder), "status": "died", "removed": removed, "ended": now(),
                   "error": "the export was killed before it finished"
                            + ("; its unfinished files were removed" if removed else "")})


def _entry_for(run: RunDir, folder: Path) -> dict[str, Any]:
    """The record run.json holds for the export in `folder`, or a new one naming it."""
    known = next((e for e in run.record().exports if _running_in(e, folder)), None)
    return dict(known) if known else {"kind": folder.name.split("-")[0], "dir": str(folder)}


def _running_in(entry: dict[str, Any], folder: str | Path) -> bool:
    return entry.get("status") == "running" and _same(entry.get("dir"), folder)


def _same(a: str | Path | None, b: str | Path) -> bool:
    return a is not None and Path(a).resolve() == Path(b).resolve()


def _problem(where: str, message: str):
    from ..errors import Problem

    return Problem(where, message)


def _merged(source: Source, folder: Path, request: Request, announce):
    from .merged import load_merged, write_merged

    announce(f"merging the adapter into the base model ({request.dtype}) -> {folder}")
    info = write_merged(source, folder, request.dtype)
    entry = {"kind": "merged", "dir": str(folder), "dtype": request.dtype, "files": info["files"]}
    loaded = load_merged(folder) if request.verify else None
    return entry, loaded, request.dtype


def _gguf(source: Source, folder: Path, request: Request, announce):
    from .gguf import load_gguf, write_gguf
    from .merged import merged_model

    announce(f"merging the adapter and writing a {request.quant} GGUF -> {folder}")
    model, tokenizer = merged_model(source, "float32")
    gguf_path = write_gguf(model, tokenizer, source, folder, request.quant)
    del model
    entry = {"kind": request.to, "dir": str(folder), "type": request.quant, "gguf": str(gguf_path)}
    if request.to == "ollama":
        from .ollama import write_modelfile

        modelfile, command = write_modelfile(source, folder, gguf_path, tokenizer, request.quant)
        entry.update(modelfile=str(modelfile), ollama_create=command)
    loaded = load_gguf(gguf_path) if request.verify else None
    return entry, loaded, request.quant


def _verify(source: Source, loaded, folder: Path, precision: str, request: Request, announce) -> dict:
    from .verify import default_thresholds, summary_line, verify

    limits = default_thresholds(precision)
    for name in ("min_identical", "max_metric_delta", "max_metric_drop"):
        if getattr(request, name) is not None:
            limits = replace(limits, **{name: getattr(request, name)})
    summary = verify(source, loaded, folder, limits, limit=request.limit, progress=announce)
    announce(("verified: " if summary["passed"] else "verification FAILED: ") + summary_line(summary))
    return summary
