"""One export from start to record: check the run, write a new export folder, load it back, verify it, and
append it to run.json's `exports` (the latest also as `export`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..run.rundir import now
from .source import Source, VerificationFailed, new_folder, open_run

INCOMPLETE = "INCOMPLETE"  # in an export folder until its export has finished


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


def export(request: Request, announce=print) -> dict:
    """Run the export; the record added to run.json. Raises VerificationFailed (after recording) when the
    export does not agree with the adapter within the thresholds."""
    source = open_run(request.run_dir)
    with source.run.owned("export"):
        stem = f"merged-{request.dtype}" if request.to == "merged" else f"{request.to}-{request.quant}"
        folder = new_folder(source.run, stem)
        marker = folder / INCOMPLETE
        marker.write_text("this export has not finished (or was interrupted): its files are no result\n")
        if request.to == "merged":
            entry, loaded, precision = _merged(source, folder, request, announce)
        else:
            entry, loaded, precision = _gguf(source, folder, request, announce)
        if request.verify:
            entry["verification"] = _verify(source, loaded, folder, precision, request, announce)
        else:
            entry["verification"] = {"skipped": "--no-verify"}
        marker.unlink()
        entry["created"] = now()
        exports = [*source.run.record().exports, entry]
        source.run.update(exports=exports, export=entry)
    failures = (entry["verification"] or {}).get("failures")
    if failures:
        raise VerificationFailed([_problem(entry["dir"], f) for f in failures],
                                 hint="the files are kept (and recorded as failing) in " + entry["dir"] + "; "
                                      "thresholds can be changed with --min-identical, --max-metric-delta and "
                                      "--max-metric-drop")
    return entry


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
