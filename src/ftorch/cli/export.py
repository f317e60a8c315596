"""`ftorch export RUN_DIR --to merged|gguf|ollama [--out DIR]`: an OpenAI run gets its model id, anything else an
export (into RUN_DIR/export/, recorded in run.json; with --out into DIR, the run's folder left untouched, so a
run on a read-only filesystem can be exported)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..export import GGUF_TYPES, KINDS, MERGED_DTYPES

    export = sub.add_parser("export", help="merged model, GGUF or Ollama Modelfile from a run, verified against "
                            "its adapter (a new RUN_DIR/export/<kind>/ each time)")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--to", choices=KINDS, required=True)
    export.add_argument("--dtype", choices=MERGED_DTYPES, default="float32", help="merged: weights' dtype "
                        "(default float32)")
    export.add_argument("--type", dest="quant", choices=GGUF_TYPES, default="q8_0", help="gguf/ollama: tensor "
                        "type (default q8_0)")
    export.add_argument("--limit", type=int, metavar="N", help="verify on the first N held-out prompts")
    export.add_argument("--no-verify", dest="verify", action="store_false", help="write only; no comparison")
    export.add_argument("--out", type=Path, metavar="DIR", help="write the export under DIR (with its record, "
                        "export.json) and leave the run's folder untouched: for a run you cannot write to, e.g. on "
                        "a read-only filesystem")
    export.add_argument("--min-identical", type=float, metavar="F", help="share of answers identical to the "
                        "adapter's required (default: 1.0 fp32, 0.95 16-bit, unchecked quantized)")
    export.add_argument("--max-metric-delta", type=float, metavar="F", help="largest |export - adapter| on the "
                        "headline metric, 0-1 (default: 0 fp32, 0.02 16-bit)")
    export.add_argument("--max-metric-drop", type=float, metavar="F", help="largest drop of the headline "
                        "metric, 0-1 (default: 0.05 q8_0, 0.15 4-bit)")


def run(args) -> int:
    from ..export.run import Request
    from ..export.run import export as run_export
    from ..export.source import open_run
    from .console import err, out

    source = open_run(args.run_dir, need_adapter=False)
    if source.hosted:
        model = source.record.fine_tuned_model
        out.print(f"this run fine-tuned a model on the provider's platform (provider={source.provider}): its weights "
                  "stay with the provider and cannot be exported.", markup=False)
        out.print(f"call it by its id: {model}" if model else "run.json holds no fine-tuned model id",
                  markup=False)
        return 0 if model else 2
    if args.out is not None:
        from .evaluate import output_folder

        output_folder(args.out)
    request = Request(args.run_dir, args.to, dtype=args.dtype, quant=args.quant, verify=args.verify,
                      limit=args.limit, min_identical=args.min_identical, max_metric_delta=args.max_metric_delta,
                      max_metric_drop=args.max_metric_drop, out=args.out)
    entry = run_export(request, announce=lambda line: err.print(line, markup=False))
    out.print(f"[green]exported[/] {entry['dir']}")
    if "ollama_create" in entry:
        out.print("create the Ollama model with:", markup=False)
        out.print(f"  {entry['ollama_create']}", markup=False)
    return 0
