"""`ftorch export` as the CLI runs it: an OpenAI run gets its model id, anything else an export."""

from __future__ import annotations

from .run import Request
from .run import export as run_export
from .source import HF_PROVIDERS, ExportError, open_run


def export(args, out, err) -> int:
    from ..errors import Problem

    source = open_run(args.run_dir, need_adapter=False)
    if source.provider == "openai":
        model = source.record.get("fine_tuned_model")
        out.print("this run fine-tuned a model on OpenAI's platform: its weights stay with OpenAI and cannot be "
                  "exported.", markup=False)
        out.print(f"call it by its id: {model}" if model else "run.json holds no fine-tuned model id",
                  markup=False)
        return 0 if model else 2
    if source.provider not in HF_PROVIDERS:
        raise ExportError(Problem("provider.name", f"export is not available for provider={source.provider}"))
    request = Request(args.run_dir, args.to, dtype=args.dtype, quant=args.quant, verify=args.verify,
                      limit=args.limit, min_identical=args.min_identical, max_metric_delta=args.max_metric_delta,
                      max_metric_drop=args.max_metric_drop)
    entry = run_export(request, announce=lambda line: err.print(line, markup=False))
    out.print(f"[green]exported[/] {entry['dir']}")
    if "ollama_create" in entry:
        out.print("create the Ollama model with:", markup=False)
        out.print(f"  {entry['ollama_create']}", markup=False)
    return 0
