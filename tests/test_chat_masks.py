"""Assistant-token masks (ftorch.chat_masks) on every original chat template TRL ships, plus SmolLM2-135M-Instruct's
and Mistral-7B-Instruct-v0.3's (tests/fixtures/templates), token by token, on three conversations.

Two oracles. Where TRL ships a marked training version of a template (`X_training.jinja` beside `X.jinja`), the
mask transformers derives from its {% generation %} blocks must equal ours on the original wherever both render the
same ids; the few places where TRL draws a turn's edge elsewhere are listed in TRL_EDGES with the reason. And for
every template, independently: the masked tokens decode to exactly each assistant reply framed by what that template
writes around it (EXPECT: the text its generation prompt leaves to the model, then its end-of-turn text), and hold
nothing of the system, user or tool turns. Templates that are not prefix-preserving for a conversation get a
MaskError that says so (NOT_PREFIX_PRESERVING, with the reason each).

Fast: one byte-level BPE tokenizer built here in about a second, no model weights, TRL itself is not imported."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from ftorch.chat_masks import MaskError, assistant_token_mask, mask_from_spans, template_problem

from support.masks import runs

TRL_TEMPLATES = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates"
FIXTURES = Path(__file__).parent / "fixtures" / "templates"
ORIGINALS = {p.stem: p for p in sorted(TRL_TEMPLATES.glob("*.jinja")) if not p.stem.endswith("_training")}
ORIGINALS.update({p.stem: p for p in sorted(FIXTURES.glob("*.jinja"))})

# Each template's control strings become single added tokens, as in the real tokenizers.
SPECIAL = re.compile(r"<\|[^<>\s|]{1,40}\|>|<\|[^<>\s|]{1,30}>|<[^<>\s|/]{1,30}\|>|<｜[^<>]{1,40}｜>"
                     r"|<(?:start|end)_of_turn>|<end_of_utterance>|\[/?[A-Z_]{3,}\]|</?s>")
# bos/eos where the template writes them into a turn (the test tokenizer's own are <|begin|> and <|end|>)
TOKENS = {"phi3": {"eos_token": "<|endoftext|>"}, "phi3_5": {"eos_token": "<|endoftext|>"},
          "mistral_7b_instruct_v0_3": {"bos_token": "<s>", "eos_token": "</s>"}}

CALL = {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
CONVERSATIONS = {
    "system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is two plus two?"},
               {"role": "assistant", "content": "Four."}],
    "multi": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    "tool": [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [CALL]},
             {"role": "tool", "content": "temp=18C sky=clear", "tool_call_id": "call00001", "name": "get_weather"},
             {"role": "assistant", "content": "It is 18 degrees and clear."}],
}
VISION = {"idefics3", "smolvlm", "llava_next", "qwen2_5_vl", "qwen3_vl"}  # content as a list of parts

CHATML = ("", "<|im_end|>\n")
THINK_OPEN = ("\n</think>\n\n", "<|im_end|>\n")  # the generation prompt pre-fills "<think>\n"
# (text between the generation prompt and the reply, end-of-turn text) of each template's plain assistant turn
EXPECT = {
    "cohere": ("", "<|END_OF_TURN_TOKEN|>"), "cohere2": ("", "<|END_RESPONSE|><|END_OF_TURN_TOKEN|>"),
    "deepseek_r1_distill": None, "deepseekv3": None,
    "diffusion_gemma": ("", "<turn|>\n"), "gemma": ("", "<end_of_turn>\n"), "gemma3": ("", "<end_of_turn>\n"),
    "gemma4": ("", "<turn|>\n"), "gemma4_v2": ("", "<turn|>\n"), "gemma4_v3": ("", "<turn|>\n"),
    "gemma4_v4": ("", "<turn|>\n"), "gemma4_v5": ("", "<turn|>\n"),
    "glm4moe": ("\n<think></think>\n", ""),  # no end-of-turn text at all: see test_template_problem
    "gptoss": ("<|channel|>final<|message|>", "<|return|>"),
    "idefics3": (" ", "<end_of_utterance>\n"), "smolvlm": (" ", "<end_of_utterance>\n"),
    "lfm2": CHATML, "lfm2_2_5": CHATML, "lfm2_2_5_v2": CHATML, "lfm2_2_5_vl": CHATML, "lfm2_v2": CHATML,
    "llama3": ("", "<|eot_id|>"), "llama3_1": ("", "<|eot_id|>"), "llama3_2": ("", "<|eot_id|>"),
    "llava_next": (" ", "</s> "), "muse_glimmer": (" to=user<|message|>", "<|eot|>"),
    "nemotron_3_5_lightning": None, "nemotron_3_nano": None, "nemotron_3_super": None, "nemotron_3_ultra": None,
    "phi3": ("", "<|end|>\n"), "phi3_5": ("", "<|end|>\n"),
    "qwen2_5": CHATML, "qwen2_5_vl": CHATML, "qwen3": ("<think>\n\n</think>\n\n", "<|im_end|>\n"),
    "qwen3_5_nothink": CHATML, "qwen3_5_think": THINK_OPEN, "qwen3_6": THINK_OPEN, "qwen3_8": THINK_OPEN,
    "qwen3_instruct_2507": CHATML, "qwen3_vl": CHATML,
    "smollm2_135m_instruct": CHATML, "mistral_7b_instruct_v0_3": (" ", "</s>"),
}
CLOSING = {"phi3": "<|endoftext|>", "phi3_5": "<|endoftext|>"}  # eos_token after a finished conversation
AFTER_TOOL = {"diffusion_gemma": "<|turn>model\n"}  # its generation prompt is empty after a tool response

ALL = frozenset(CONVERSATIONS)
THINK_PREFILL = "the generation prompt pre-fills '<think>\\n', which the turns rendered in the history do not have"
NOT_PREFIX_PRESERVING = {
    "deepseek_r1_distill": (ALL - {"tool"}, THINK_PREFILL),
    "deepseekv3": (ALL - {"tool"}, THINK_PREFILL),
    "nemotron_3_5_lightning": (ALL, THINK_PREFILL), "nemotron_3_nano": (ALL, THINK_PREFILL),
    "nemotron_3_super": (ALL, THINK_PREFILL), "nemotron_3_ultra": (ALL, THINK_PREFILL),
    "gptoss": ({"multi"}, "a final answer ends with <|return|> when it is the last message, <|end|> in the history"),
    "qwen3": ({"multi", "tool"}, "an assistant turn after the last user message gets an empty think block only "
                                 "while it is the last message"),
    "qwen3_5_nothink": ({"multi"}, "turns before the last user message lose the think block the generation prompt "
                                   "pre-fills"),
    "qwen3_5_think": ({"multi"}, "as qwen3_5_nothink"), "qwen3_6": ({"multi"}, "as qwen3_5_nothink"),
    "mistral_7b_instruct_v0_3": ({"system"}, "the system message is written into the last user turn only, so it "
                                             "vanishes when an assistant turn ends the conversation"),
}
REFUSED_BY_TEMPLATE = {"gemma": {"system": "System role not supported"}}
NO_TOOL_TURNS = {  # the template has no tool role (or, deepseekv3, needs arguments as a string): no tool conversation
    "cohere", "cohere2", "gemma", "gemma3", "idefics3", "smolvlm", "llava_next", "deepseek_r1_distill", "deepseekv3"}
DROPS_TOOL_CALLS = {"lfm2", "llama3", "qwen2_5_vl", "smollm2_135m_instruct", "phi3", "phi3_5"}  # renders content only

# Where TRL's marked version draws a turn's edge elsewhere than the generation prompt and the end of the turn's
# render: each run of tokens where the two masks differ must decode to one of these.
TRL_EDGES = {
    "gptoss": {"<|start|>assistant"},  # TRL also marks the turn header, which the generation prompt supplies
    "muse_glimmer": {"<|start|>assistant"},  # same
    "qwen2_5": {"\n"},  # TRL also marks the newline ending the '<|im_start|>assistant\n' generation prompt
    "qwen3_5_nothink": {"<think>\n\n</think>\n\n"},  # TRL also marks the think block the generation prompt pre-fills
    "qwen3_5_think": {"<think>\n"}, "qwen3_6": {"<think>\n"}, "qwen3_8": {"<think>\n"},  # same
    "llava_next": {" "},  # TRL moved the space after </s> out of the turn on purpose; the template writes it there
    # after a tool call the template ends the turn's render with <|tool_response>, and it starts the next reply with
    # a '<|turn>model\n' header its generation prompt does not write; TRL leaves both to the environment
    "diffusion_gemma": {"<|tool_response>", "<|turn>model\n"},
}
TRL_RENDERS_OTHERWISE = {"glm4moe": "TRL's version writes the next turn's header (<|user|>) inside the assistant turn"}


@pytest.fixture(scope="module")
def tokenizer():
    from ftorch.tiny import build_tokenizer

    tok = build_tokenizer(1000)
    texts = [p.read_text() for p in TRL_TEMPLATES.glob("*.jinja")] + [p.read_text() for p in ORIGINALS.values()]
    specials = sorted({m for text in texts for m in SPECIAL.findall(text)} | {"<|endoftext|>"})
    tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


@pytest.fixture()
def using(tokenizer):
    """Set a template (and its bos/eos) on the shared tokenizer for one test."""
    saved = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}

    def use(name: str, template: str | None = None):
        tokenizer.chat_template = template if template is not None else ORIGINALS[name].read_text()
        for key, value in {**saved, **TOKENS.get(name, {})}.items():
            setattr(tokenizer, key, value)
        return tokenizer

    yield use
    for key, value in saved.items():
        setattr(tokenizer, key, value)


def conversation(name: str, kind: str) -> list[dict]:
    messages = [dict(m) for m in CONVERSATIONS[kind]]
    if name in VISION:
        for m in messages:
            m["content"] = [{"type": "text", "text": m["content"]}]
    return messages


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def expected_runs(name: str, messages: list[dict]) -> list[str | None]:
    """What each assistant turn's masked run must decode to (None: a tool-call turn, checked separately)."""
    lead, eot = EXPECT[name]
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    out: list[str | None] = []
    for i in assistants:
        if messages[i].get("tool_calls"):
            out.append(None)
            continue
        after_tool = i > 0 and messages[i - 1]["role"] == "tool"
        closing = CLOSING.get(name, "") if i == len(messages) - 1 else ""
        out.append(AFTER_TOOL.get(name, "") * after_tool + lead + text_of(messages[i]) + eot + closing)
    return out


CASES = [(name, kind) for name in ORIGINALS for kind in CONVERSATIONS
         if not (kind == "tool" and name in NO_TOOL_TURNS)]


def test_the_matrix_covers_trls_originals_and_the_fixtures():
    assert len([n for n in ORIGINALS if (TRL_TEMPLATES / f"{n}.jinja").exists()]) >= 40
    assert {"smollm2_135m_instruct", "mistral_7b_instruct_v0_3"} <= set(ORIGINALS)
    assert set(EXPECT) == set(ORIGINALS), "every template needs its expected framing"


@pytest.mark.parametrize("name,kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_mask_marks_exactly_the_assistant_turns(using, name, kind):
    tok = using(name)
    messages = conversation(name, kind)
    tools = TOOLS if kind == "tool" else None
    refused = REFUSED_BY_TEMPLATE.get(name, {}).get(kind)
    if refused:
        with pytest.raises(MaskError, match=f"cannot render.*{refused}"):
            assistant_token_mask(tok, messages, tools)
        return
    kinds, reason = NOT_PREFIX_PRESERVING.get(name, (set(), ""))
    if kind in kinds:
        with pytest.raises(MaskError, match="not prefix-preserving"):
            assistant_token_mask(tok, messages, tools)
        return

    ids, mask = assistant_token_mask(tok, messages, tools)
    assert ids == tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=False)
    got = runs(tok, ids, mask)
    want = expected_runs(name, messages)
    assert len(got) == len(want), got
    for run, expected in zip(got, want):
        if expected is not None:
            assert run == expected
        else:  # a tool-call turn: the call (where the template renders it), never the tool's answer
            assert name in DROPS_TOOL_CALLS or ("get_weather" in run and "Paris" in run), run
    masked = "".join(got)
    for message in messages:
        if message["role"] != "assistant":
            assert text_of(message) not in masked


TRAINED = [(name, kind) for name, kind in CASES if (TRL_TEMPLATES / f"{name}_training.jinja").exists()
           and kind not in NOT_PREFIX_PRESERVING.get(name, ((), ""))[0]
           and kind not in REFUSED_BY_TEMPLATE.get(name, {})]


@pytest.mark.parametrize("name,kind", TRAINED, ids=[f"{n}-{k}" for n, k in TRAINED])
def test_mask_equals_trls_marked_training_version(using, name, kind):
    tok = using(name)
    messages = conversation(name, kind)
    tools = TOOLS if kind == "tool" else None
    ids, mask = assistant_token_mask(tok, messages, tools)
    using(name, (TRL_TEMPLATES / f"{name}_training.jinja").read_text())
    marked = tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
    if list(marked["input_ids"]) != ids:
        assert name in TRL_RENDERS_OTHERWISE
        return
    differ = [int(a != b) for a, b in zip(mask, marked["assistant_masks"])]
    assert set(runs(tok, ids, differ)) <= TRL_EDGES.get(name, set())


@pytest.mark.parametrize("name", ["lfm2_2_5", "lfm2_2_5_v2", "lfm2_2_5_vl"])
def test_templates_with_their_own_markers_agree_with_offsets(using, name):
    """A template that already marks its assistant turns: the markers give the mask; removing them, offsets give
    the same one."""
    tok = using(name)
    messages = conversation(name, "tool")
    ids, mask = assistant_token_mask(tok, messages, TOOLS)
    unmarked = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", ORIGINALS[name].read_text())
    using(name, unmarked)
    assert assistant_token_mask(tok, messages, TOOLS) == (ids, mask)


def test_template_problem(using):
    """ensure_training_chat_template's judgement: offsets serve SmolLM2's and Mistral's templates (and most of TRL's
    originals); a template that is not prefix-preserving, or writes no end-of-turn text, is refused with the reason."""
    for name in ("smollm2_135m_instruct", "mistral_7b_instruct_v0_3", "llama3", "gemma3", "phi3", "qwen2_5"):
        assert template_problem(using(name)) is None, name
    assert "not prefix-preserving" in template_problem(using("qwen3"))
    assert "not prefix-preserving" in template_problem(using("deepseek_r1_distill"))
    assert "no end-of-turn text" in template_problem(using("glm4moe"))


def test_template_that_ignores_the_generation_prompt_is_refused(using):
    tok = using("chatml-without-generation-prompt",
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    with pytest.raises(MaskError, match="ignores add_generation_prompt.*<\\|im_start\\|>assistant"):
        assistant_token_mask(tok, CONVERSATIONS["multi"])


def test_conversations_without_a_place_for_the_mask_are_refused(using):
    tok = using("smollm2_135m_instruct")
    with pytest.raises(MaskError, match="no assistant message"):
        assistant_token_mask(tok, [{"role": "user", "content": "Hi"}])
    with pytest.raises(MaskError, match="opens the conversation"):
        assistant_token_mask(tok, [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Yo"}])
    tok.chat_template = None
    with pytest.raises(MaskError, match="no chat template"):
        assistant_token_mask(tok, CONVERSATIONS["multi"])


def test_tokens_straddling_a_span_edge():
    """Spans [5, 10) and [20, 30): a token across the start is the assistant's, one across the end is not."""
    offsets = [(0, 3), (3, 7), (7, 9), (9, 12), (12, 18), (18, 22), (22, 30), (30, 31)]
    assert mask_from_spans(offsets, [(5, 10), (20, 30)]) == [0, 1, 1, 0, 0, 1, 1, 0]
