"""A merged model written as a GGUF file (llama.cpp's format, read by llama.cpp, Ollama, LM Studio and
transformers) with llama.cpp's own `gguf` package: its GGUFWriter, its tensor name map (gguf.TensorNameMap for
MODEL_ARCH.LLAMA) and its numpy quantizers (gguf.quants). What llama.cpp's convert_hf_to_gguf.py does for a
Llama model, done here for the architectures listed in SUPPORTED, with a byte-level BPE tokenizer.

Types: f16; q8_0; q4_0 and q4_1 (4-bit, with the token embeddings and output layer kept at q8_0, as llama.cpp's
quantizer keeps the output layer at a higher precision). Norms stay float32; a matrix whose rows are not a
multiple of the 32-value block falls back to f16."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from ..errors import Problem
from .source import ExportError, Source, VerificationFailed, safe_stem

# transformers class -> GGUF architecture. Only Llama-shaped models (SmolLM, Llama 2/3, TinyLlama, the tiny test
# model) for now: their rope and tensor layout are what this writer handles.
SUPPORTED = {"LlamaForCausalLM": "llama"}
FILE_TYPES = {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1"}


def check_supported(model) -> str:
    """The GGUF architecture name, or an ExportError naming what is supported."""
    name = type(model).__name__
    if name not in SUPPORTED:
        raise ExportError(Problem("export --to gguf", f"cannot write a GGUF for a {name} model",
                                  f"supported architectures: {', '.join(SUPPORTED)}; export --to merged works "
                                  "for any model (then llama.cpp's convert_hf_to_gguf.py can convert it)"))
    rope = _rope(model.config)
    if rope.get("rope_type", "default") not in ("default", None):
        raise ExportError(Problem("export --to gguf", f"rope scaling '{rope.get('rope_type')}' is not supported "
                                  "by this GGUF writer", "export --to merged instead"))
    return SUPPORTED[name]


def _rope(config) -> dict:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return {**params, "rope_theta": theta}


def write_gguf(model, tokenizer, source: Source, folder: Path, qtype: str) -> Path:
    """Write FOLDER/<model>-<qtype>.gguf from a merged float32 model and its tokenizer."""
    import gguf

    arch = check_supported(model)
    config = model.config
    stem = safe_stem(Path(source.cfg.model.name).stem if source.cfg.model.tiny is None else "tiny-llama")
    stem = re.sub(r"[.-](q\d\w*|f16|f32|bf16)$", "", stem, flags=re.IGNORECASE)  # the base's own type, if named
    path = folder / f"{stem}-{source.run.path.name}-{qtype}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(f"{stem} + {source.run.path.parent.name}/{source.run.path.name} (ftorch)")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(_rope(config)["rope_theta"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[qtype]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, source, config.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses token_embd for the output when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(Problem("export --to gguf", f"no GGUF name for the tensor '{hf_name}'",
                                      f"supported architectures: {', '.join(SUPPORTED)}"))
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, heads, kv_heads)
        data, raw = _encode(gguf, name, data, qtype)
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _permute(weights, n_head: int, n_head_kv: int):
    """The row order llama.cpp's rope expects for q/k (convert_hf_to_gguf.py LlamaModel.permute); transformers'
    GGUF loader reverses it."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(gguf, name: str, data, qtype: str):
    """(array, raw GGML type) for one tensor in the export's type."""
    import numpy as np

    Q = gguf.GGMLQuantizationType
    if data.ndim < 2:
        return data.astype(np.float32), Q.F32
    target = {"f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1}[qtype]
    if target in (Q.Q4_0, Q.Q4_1) and name in ("token_embd.weight", "output.weight"):
        target = Q.Q8_0
    if target == Q.F16 or data.shape[-1] % gguf.GGML_QUANT_SIZES[target][0]:
        return data.astype(np.float16), Q.F16
    return gguf.quants.quantize(data, target), target


def _add_tokenizer(writer, tokenizer, source: Source, vocab_size: int) -> None:
    """Vocabulary, token types, merges, special token ids and the chat template, as llama.cpp's converter
    writes them for a byte-level BPE ('gpt2') tokenizer."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str()) if getattr(tokenizer, "backend_tokenizer", None) \
        else {}
    if (backend.get("model") or {}).get("type") != "BPE" or (backend.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError(Problem("export --to gguf", "only byte-level BPE tokenizers (GPT-2 style, as SmolLM2, "
                                  "Llama 3 and Qwen use) can be written to GGUF here",
                                  "export --to merged instead"))
    reverse = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        elif index in reverse:
            tokens.append(reverse[index])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(backend, source))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="ftorch-gguf-tok-") as saved:
        tokenizer.save_pretrained(saved)
        if getattr(tokenizer, "chat_template", None) and not (Path(saved) / "chat_template.jinja").is_file():
            (Path(saved) / "chat_template.jinja").write_text(tokenizer.chat_template)
        special = gguf.SpecialVocab(saved, load_merges=True, n_vocab=len(tokens))
    # llama.cpp and Ollama render the chat template as text, then add BOS if the file says so: say so exactly
    # when the model's template starts with the BOS token
    special.add_special_token["bos"] = _template_starts_with_bos(tokenizer)
    special.add_to_gguf(writer, quiet=True)


def _template_starts_with_bos(tokenizer) -> bool:
    """add_bos_token for llama.cpp: true when the chat template writes a BOS its Go translation leaves out
    (ollama.writes_bos); for a template of no known family, whether the tokenizer adds BOS to plain text."""
    from .ollama import writes_bos

    if getattr(tokenizer, "chat_template", None):
        try:
            known = writes_bos(tokenizer)
        except ExportError:
            known = None
        if known is not None:
            return known
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def _pre_tokenizer(backend: dict, source: Source) -> str:
    """llama.cpp's name for how text is split before BPE: the source GGUF's own when the base came from one,
    'gpt-2' for a plain byte-level split."""
    from ..models import gguf_file, is_gguf

    if source.cfg.model.tiny is None and is_gguf(source.cfg.model.name):
        from gguf import GGUFReader

        field = GGUFReader(str(gguf_file(source.cfg.model.name))).fields.get("tokenizer.ggml.pre")
        if field is not None:
            return field.contents()
    pre = backend.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    raise ExportError(Problem("export --to gguf", f"this tokenizer's pre-tokenizer ({pre.get('type')}) has no "
                              "llama.cpp name known to ftorch", "export --to merged instead"))


def load_gguf(path: Path):
    """(model, tokenizer) read back from the GGUF with transformers' GGUF loader (dequantised to float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:
        raise VerificationFailed(Problem(str(path), "the GGUF written does not load back with transformers: "
                                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")) from None
    return model.eval(), tokenizer
