"""An Ollama Modelfile beside an exported GGUF: FROM the file, the model's chat template translated to Ollama's
Go template syntax, its stop tokens, and the recipe's system prompt as the default SYSTEM.

The template is not parsed; it is recognised. Each family below renders a probe conversation exactly as its Go
template will; the model's own (Jinja) template must render the same probe to the same text, or the export
stops with the families it knows. That check is what makes the translation safe."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem
from ..safe_io import write_text
from .source import ExportError, Source

_LAST = "{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n"


@dataclass(frozen=True)
class Family:
    name: str
    render: Callable[[list[dict], bool], str]  # what the Go template produces for these messages
    template: str  # the Go template
    stops: tuple[str, ...]


FAMILIES = (
    Family("chatml",
           lambda msgs, gen: "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
           + ("<|im_start|>assistant\n" if gen else ""),
           _LAST + "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
           "{{ if and $last (ne .Role \"assistant\") }}<|im_start|>assistant\n{{ end }}\n{{- end }}",
           ("<|im_start|>", "<|im_end|>")),
    Family("llama3",
           lambda msgs, gen: "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
                                     for m in msgs)
           + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if gen else ""),
           _LAST + "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
           "{{- if and $last (ne .Role \"assistant\") }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}\n"
           "{{- end }}",
           ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    # the tiny test model's role tags (src/ftorch/tiny.py)
    Family("ftorch-tiny",
           lambda msgs, gen: "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in msgs)
           + ("<|assistant|>" if gen else ""),
           _LAST + "<|{{ .Role }}|>{{ .Content }}<|end|>\n"
           "{{- if and $last (ne .Role \"assistant\") }}<|assistant|>{{ end }}\n{{- end }}",
           ("<|end|>", "<|user|>", "<|system|>")),
)

PROBE = [{"role": "system", "content": "You are S."}, {"role": "user", "content": "Hello U1"},
         {"role": "assistant", "content": "Reply A1"}, {"role": "user", "content": "Next U2"}]


def recognise(tokenizer) -> Family:
    """The family whose Go template renders the probe conversations exactly as the tokenizer's template does
    (a BOS token the template writes first is left to the tokenizer: see writes_bos)."""
    found = _match(tokenizer)
    if found is None:
        raise ExportError(Problem("export --to ollama", "the model's chat template is not one ftorch can translate "
                                  f"to Ollama's syntax (known: {', '.join(f.name for f in FAMILIES)})",
                                  "the GGUF is written: add a TEMPLATE to the Modelfile by hand "
                                  "(https://github.com/ollama/ollama/blob/main/docs/template.md)"))
    return found[0]


def writes_bos(tokenizer) -> bool | None:
    """Whether the chat template writes a BOS token before what its family's Go template writes (then the GGUF
    must ask llama.cpp/Ollama to add BOS); None when the template is of no known family."""
    found = _match(tokenizer)
    return None if found is None else found[1]


def _match(tokenizer) -> tuple[Family, bool] | None:
    probes = [(PROBE, True), (PROBE[:2], True), (PROBE[:3], False)]
    try:
        rendered = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=g) for m, g in probes]
    except Exception as exc:  # no template, or one that rejects a system message
        raise ExportError(Problem("export --to ollama",
                                  f"the model's chat template cannot be rendered: {exc}")) from None
    bos = tokenizer.bos_token or ""
    for family in FAMILIES:
        expected = [family.render(m, g) for m, g in probes]
        if rendered == expected:
            return family, False
        if bos and rendered == [bos + text for text in expected]:
            return family, True
    return None


def system_prompt(source: Source) -> str | None:
    """The run's system prompt: eval.system_prompt, else the most common one in the training data."""
    from ..data.checks import read_as_chat
    from ..eval.tasks import most_common_system_prompt

    if source.cfg.eval.system_prompt:
        return source.cfg.eval.system_prompt
    data = source.cfg.data  # read as training read it: a preference file as the answers it prefers, the run's limit
    return most_common_system_prompt(read_as_chat(Path(data.train), data.format, data.max_line_bytes).examples)


def modelfile_text(gguf_name: str, family: Family, system: str | None, eos: str | None) -> str:
    stops = list(family.stops) + ([eos] if eos and eos not in family.stops else [])
    for text, what in ((family.template, "template"), (system or "", "system prompt")):
        if '"""' in text:
            raise ExportError(Problem("export --to ollama", f"the {what} contains \"\"\", which a Modelfile "
                                      "cannot quote"))
    lines = [f"# written by ftorch export; template family: {family.name}", f"FROM ./{gguf_name}",
             f'TEMPLATE """{family.template}"""']
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_name(source: Source, quant: str) -> str:
    """An Ollama model name: ftorch-<recipe>:<run>-<type>, in the characters Ollama accepts."""
    recipe = re.sub(r"[^a-z0-9_.-]+", "-", (source.record.recipe or "run").lower()).strip("-.") or "run"
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{source.run.path.name}-{quant}")[:128]
    return f"ftorch-{recipe}:{tag}"


def write_modelfile(source: Source, folder: Path, gguf_path: Path, tokenizer, quant: str) -> tuple[Path, str]:
    """FOLDER/Modelfile beside the GGUF; (its path, the `ollama create` command to run)."""
    import shlex

    family = recognise(tokenizer)
    text = modelfile_text(gguf_path.name, family, system_prompt(source), tokenizer.eos_token)
    path = folder / "Modelfile"
    write_text(path, text)
    command = f"ollama create {model_name(source, quant)} -f {shlex.quote(str(path.resolve()))}"
    write_text(folder / "ollama-create.sh", f"#!/bin/sh\n{command}\n")
    return path, command
