"""The answer cache (eval/answer_cache.py) on a tiny local model: an answer is reused only when everything that
decides it is unchanged (model content, adapter content, prompt, decoding settings, library versions); a change
in any one of them generates it again. Eviction is least-recently-used at the size cap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ftorch.config.schema import TinyModel
from ftorch.eval import answer_cache, local
from ftorch.eval.answer_cache import CachedGenerator, CallClock, open_store, wrap
from ftorch.eval.constrained import Constraint

from support.fakes import ScriptedModel

SMALL = TinyModel(hidden_size=16, intermediate_size=32, num_heads=2, num_layers=1, vocab_size=300)
ASK = [[{"role": "user", "content": "Is red a colour?"}], [{"role": "user", "content": "Name a fruit."}],
       [{"role": "user", "content": "Count to three."}]]


def _adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter whose B matrices are random (init_lora_weights=False), so it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A copy of the tiny model (so its files can change) and two different adapters for it."""
    from ftorch.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("answer-cache-models")
    base = root / "base"
    shutil.copytree(ensure_tiny_model(SMALL), base)
    return base, _adapter(base, root / "adapter-a", 1), _adapter(base, root / "adapter-b", 2)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "answers"


def _ask(generator: CachedGenerator, system: str = "tuned", conversations=ASK, **settings) -> list[str]:
    with generator.system(system):
        return generator.generate(conversations, settings.pop("max_new_tokens", 6), 2, **settings)


def _counts(generator: CachedGenerator, system: str = "tuned") -> tuple[int, int]:
    reuse = generator.usage[system]
    return reuse.generated, reuse.reused


def _cached(base: Path, adapter: Path | None) -> CachedGenerator:
    generator = wrap(local.LocalModel(str(base), adapter, device="cpu"))
    assert isinstance(generator, CachedGenerator)
    return generator


def test_the_same_question_is_answered_once_and_reused_word_for_word(folders, store):
    base, adapter, _ = folders
    first = _cached(base, adapter)
    replies = _ask(first)
    assert _counts(first) == (3, 0)
    assert _ask(first) == replies and _counts(first) == (3, 3)
    again = _cached(base, adapter)  # a new evaluation: a new process would load the model again
    assert _ask(again) == replies and _counts(again) == (0, 3)
    assert again.report()["systems"]["tuned"] == {"generated": 0, "reused": 3}
    assert again.report()["folder"] == str(store)


def test_a_changed_model_file_is_answered_again(folders, store, tmp_path):
    base, adapter, _ = folders
    _ask(_cached(base, adapter))
    changed = tmp_path / "changed-base"
    shutil.copytree(base, changed)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(changed / "model.safetensors"))
    name = next(n for n in weights if n.endswith("q_proj.weight"))
    weights[name] = weights[name] * 1.5
    save_file(weights, str(changed / "model.safetensors"), metadata={"format": "pt"})
    generator = _cached(changed, adapter)
    _ask(generator)
    assert _counts(generator) == (3, 0)
    same = _cached(tmp_path / "changed-base", adapter)  # unchanged since: reused (its hash memoized)
    _ask(same)
    assert _counts(same) == (0, 3)


def test_a_changed_adapter_answers_tuned_again_and_base_is_still_reused(folders, store):
    base, adapter_a, adapter_b = folders
    first = _cached(base, adapter_a)
    _ask(first, "tuned")
    base_replies = _ask(first, "base")
    other = _cached(base, adapter_b)
    _ask(other, "tuned")
    assert _counts(other, "tuned") == (3, 0)
    # base, prompted and the arms run with the adapter off: a sweep trial with another adapter reuses them
    assert _ask(other, "base") == base_replies and _counts(other, "base") == (0, 3)
    assert _ask(other, "prompted") == base_replies and _counts(other, "prompted") == (0, 3)


def test_a_changed_prompt_is_answered_again(folders, store):
    base, adapter, _ = folders
    generator = _cached(base, adapter)
    _ask(generator)
    _ask(generator, conversations=[ASK[0], [{"role": "system", "content": "Be brief."}, *ASK[1]]])
    assert _counts(generator) == (3 + 1, 1)


@pytest.mark.parametrize("settings", [{"max_new_tokens": 7}, {"min_new_tokens": 2},
                                      {"constraint": Constraint("labels", labels=("yes", "no"))}],
                         ids=["max_new_tokens", "min_new_tokens", "constraint"])
def test_changed_decoding_settings_answer_again(folders, store, settings):
    base, adapter, _ = folders
    generator = _cached(base, adapter)
    _ask(generator)
    _ask(generator, **settings)
    assert _counts(generator) == (6, 0)
    _ask(generator, **settings)
    assert _counts(generator) == (6, 3)


def test_changed_library_versions_answer_again(folders, store, monkeypatch):
    base, adapter, _ = folders
    _ask(_cached(base, adapter))
    monkeypatch.setattr(local, "DECODER_VERSION", local.DECODER_VERSION + 1)  # ftorch's decoder changed
    decoder = _cached(base, adapter)
    _ask(decoder)
    assert _counts(decoder) == (3, 0)
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "transformers" else real(name))
    upgraded = _cached(base, adapter)
    _ask(upgraded)
    assert _counts(upgraded) == (3, 0)


def test_cached_latency_is_the_one_recorded_when_generated(folders, store):
    base, adapter, _ = folders
    first = _cached(base, adapter)
    fresh = CallClock(first)
    with first.system("tuned"):
        fresh.run(first.generate, ASK, 6, 2)
    again = _cached(base, adapter)
    reused = CallClock(again)
    with again.system("tuned"):
        reused.run(again.generate, ASK, 6, 2)
    assert fresh.reused == 0 and reused.reused == 3
    assert reused.per_answer == pytest.approx(fresh.per_answer, rel=1e-9) and reused.per_answer > 0


def test_least_recently_used_answers_are_evicted_at_the_size_cap(tmp_path):
    store = open_store(tmp_path / "answers", 300_000)
    for i in range(200):
        store.set(f"k{i}", "x" * 10_000)
        assert store.get("k0") is not None  # read at every step: the most recently used
    assert store.volume() <= 300_000 + 100_000  # culled back near the cap (diskcache culls 10 at a time)
    assert "k0" in store and "k199" in store and "k1" not in store and len(store) < 40


def test_generators_that_cannot_describe_their_content_are_not_cached(store):
    scripted = ScriptedModel()
    assert wrap(scripted) is scripted
    assert wrap(scripted, enabled=False) is scripted
    assert not store.exists()


def test_folder_digest_is_memoized_by_path_size_and_mtime(tmp_path):
    (tmp_path / "m").mkdir()
    weights = tmp_path / "m" / "w.bin"
    weights.write_bytes(b"a" * 100)
    memo: dict[str, str] = {}
    first = answer_cache.folder_digest(tmp_path / "m", memo)
    assert len(memo) == 1
    key = next(iter(memo))
    memo[key] = "0" * 64  # a memoized digest is used as is while path, size and mtime stay the same
    assert answer_cache.folder_digest(tmp_path / "m", memo) != first
    weights.write_bytes(b"b" * 101)
    assert answer_cache.folder_digest(tmp_path / "m", {}) != first


def test_measurements_of_the_same_model_on_the_same_inputs_are_reused(folders, store):
    base, adapter_a, adapter_b = folders
    computed: list[str] = []

    def loss(tag):
        computed.append(tag)
        return {"base": {"loss": 1.25}, "tuned": {"loss": 0.5, "tag": tag}}

    first = _cached(base, adapter_a)
    assert first.remember("held_out_loss", {"texts": ["a"]}, lambda: loss("one"))["tuned"]["tag"] == "one"
    again = _cached(base, adapter_a)
    assert again.remember("held_out_loss", {"texts": ["a"]}, lambda: loss("two"))["tuned"]["tag"] == "one"
    assert again.measures_reused == ["held_out_loss"] and again.report()["measures_reused"] == ["held_out_loss"]
    assert again.remember("held_out_loss", {"texts": ["b"]}, lambda: loss("three"))["tuned"]["tag"] == "three"
    other = _cached(base, adapter_b)
    assert other.remember("held_out_loss", {"texts": ["a"]}, lambda: loss("four"))["tuned"]["tag"] == "four"
    assert computed == ["one", "three", "four"]


def test_one_systems_measurement_is_shared_by_runs_that_share_that_system(folders, store):
    """The held-out loss is remembered per system: another adapter (a sweep's next trial) reuses base's and
    computes its own tuned one."""
    base, adapter_a, adapter_b = folders
    computed: list[str] = []

    def loss(name, tag):
        computed.append(f"{name} {tag}")
        return {"loss": 1.0, "tag": tag}

    first = _cached(base, adapter_a)
    for name in ("base", "tuned"):
        first.remember("held_out_loss", {"texts": ["a"]}, lambda name=name: loss(name, "a"), systems=(name,))
    other = _cached(base, adapter_b)
    found = {name: other.remember("held_out_loss", {"texts": ["a"]}, lambda name=name: loss(name, "b"),
                                  systems=(name,)) for name in ("base", "tuned")}
    assert found["base"]["tag"] == "a" and found["tuned"]["tag"] == "b"
    assert computed == ["base a", "tuned a", "tuned b"] and other.measures_reused == ["held_out_loss (base)"]


@pytest.fixture
def held(monkeypatch):
    """An empty in-process store for CachedGenerator.hold."""
    monkeypatch.setattr(answer_cache, "HELD", {})
    return answer_cache.HELD


def test_a_held_measurement_is_kept_in_memory_for_the_next_evaluation_of_the_same_base(folders, store, held):
    """drift's base side (hundreds of MB) is held in this process, not stored: the next evaluation of the same
    base model (a sweep's next trial, another adapter) reuses it; other inputs or a larger result than the cap
    compute again."""
    base, adapter_a, adapter_b = folders
    computed: list[str] = []

    def side(tag):
        computed.append(tag)
        return [tag] * 3

    first = _cached(base, adapter_a)
    stored = len(first.store)
    assert first.hold("drift", {"texts": ["a"]}, lambda: side("a"), size_of=len) == ["a"] * 3
    other = _cached(base, adapter_b)
    assert other.hold("drift", {"texts": ["a"]}, lambda: side("b"), size_of=len) == ["a"] * 3
    assert other.measures_reused == ["drift (base)"] and computed == ["a"]
    assert other.hold("drift", {"texts": ["other"]}, lambda: side("c"), size_of=len) == ["c"] * 3
    assert len(held) == 1  # the latest of each kind only: the earlier result is released
    assert len(other.store) == stored  # nothing written to the disk store
    answer_cache.HELD_MAX_BYTES, limit = 2, answer_cache.HELD_MAX_BYTES
    try:
        assert other.hold("drift", {"texts": ["big"]}, lambda: side("d"), size_of=len) == ["d"] * 3
        assert "drift" not in held  # over the cap: computed and given back, not held
    finally:
        answer_cache.HELD_MAX_BYTES = limit


def test_drift_with_base_held_equals_drift_computed_whole(folders, store, held):
    """The drift of a second adapter, with base's distributions held from the first's evaluation, is the drift
    computed from scratch, number for number."""
    from ftorch.eval.drift import drift, held_bytes

    base, adapter_a, adapter_b = folders
    inputs = {"texts": "general"}
    first = _cached(base, adapter_a)
    drift(first.inner, 4, lambda compute: first.hold("drift", inputs, compute, size_of=held_bytes))
    second = _cached(base, adapter_b)
    reused = drift(second.inner, 4, lambda compute: second.hold("drift", inputs, compute, size_of=held_bytes))
    assert second.measures_reused == ["drift (base)"]
    fresh = drift(local.LocalModel(str(base), adapter_b, device="cpu"), 4)
    assert reused == fresh and fresh["kl_base_to_tuned_per_token"] > 0


def test_a_lazy_model_is_not_loaded_when_every_answer_is_cached(folders, store):
    from ftorch.eval.lazy_local import LazyLocalModel

    base, adapter, _ = folders
    loaded = local.LocalModel(str(base), adapter, device="cpu")
    first = wrap(LazyLocalModel(str(base), adapter, device="cpu"))
    replies = {name: _ask(first, name) for name in ("tuned", "base")}
    assert first.inner.loaded is not None  # it had to generate
    lazy = LazyLocalModel(str(base), adapter, device="cpu")
    again = wrap(lazy)
    assert {name: _ask(again, name) for name in ("tuned", "base")} == replies
    assert again.prompt_tokens(ASK[0]) == loaded.prompt_tokens(ASK[0])
    assert again.context_length == loaded.context_length and again.constraint_kinds == loaded.constraint_kinds
    assert again.remember("drift", {"texts": []}, lambda: {"kl": 0.5}) == {"kl": 0.5}
    assert lazy.loaded is None and not hasattr(lazy, "cache_identity")  # nothing asked for the weights
    _ask(again, "tuned", conversations=[[{"role": "user", "content": "Something new."}]])
    assert lazy.loaded is not None and _counts(again) == (1, 3)
    eager = wrap(loaded)
    assert _ask(eager, "base") == replies["base"] and _counts(eager, "base") == (0, 3)  # the same keys as eager


class Described(ScriptedModel):
    """The scripted model, describing itself to the cache (any generator can: cache_identity, cache_prompt)."""

    def __init__(self, version: str = "1"):
        super().__init__()
        self.version = version

    def cache_identity(self, system):
        return {"model": "scripted", "version": self.version, "adapter": system == "tuned"}

    def cache_prompt(self, messages):
        return messages


def test_any_generator_that_describes_itself_is_cached(store):
    scripted = Described()
    generator = wrap(scripted)
    assert isinstance(generator, CachedGenerator)
    task = [[{"role": "user", "content": "Is 3 odd?"}], [{"role": "user", "content": "refuse-me"}]]
    fresh = {name: _ask(generator, name, conversations=task) for name in ("base", "tuned")}
    assert scripted.calls == [("base", 2), ("tuned", 2)]  # the wrapped model was asked as the system asked for
    assert {name: _ask(wrap(Described()), name, conversations=task) for name in ("base", "tuned")} == fresh
    newer = Described(version="2")
    _ask(wrap(newer), "base", conversations=task)
    assert newer.calls == [("base", 2)]


def test_an_unusable_cache_folder_evaluates_without_the_cache(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "not-a-folder"))
    scripted = Described()
    with pytest.warns(UserWarning, match="cannot be used"):
        assert wrap(scripted) is scripted


class Drafted(Described):
    """The scripted model taking drafts, as LocalModel does; `adapter` names its adapter ('tuned' only)."""

    takes_drafts = True

    def __init__(self, adapter: str):
        super().__init__()
        self.adapter = adapter
        self.drafts: list = []

    def cache_identity(self, system):
        return {"model": "scripted", "adapter": self.adapter if system == "tuned" else None}

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None, drafts=None, **extra):
        self.drafts.append(drafts)
        replies = super().generate(conversations, max_new_tokens, batch_size, on_batch)
        return [f"{reply} ({self.adapter})" if self.current == "tuned" else reply for reply in replies]


def test_earlier_replies_of_the_same_base_model_to_the_same_prompt_are_the_next_models_drafts(store):
    task = [[{"role": "user", "content": "Is 3 odd?"}], [{"role": "user", "content": "refuse-me"}]]
    first = Drafted("a")
    base = _ask(wrap(first), "base", conversations=task)
    tuned_a = _ask(wrap(first), "tuned", conversations=task)
    assert first.drafts == [[[], []], [[r] for r in base]]  # nothing before base; base's replies for tuned
    trials = [Drafted(name) for name in "bcd"]  # a sweep's next trials: other adapters on the same base model
    replies = [tuned_a]
    for trial in trials:
        replies.append(_ask(wrap(trial), "tuned", conversations=task))
    # the newest first, at most DRAFTS_KEPT, the base model's own replies among them until pushed out
    assert trials[0].drafts == [[[a, b] for a, b in zip(tuned_a, base)]]
    assert trials[1].drafts == [[[b, a, c] for b, a, c in zip(replies[1], tuned_a, base)]]
    assert answer_cache.DRAFTS_KEPT == 3
    assert trials[2].drafts == [[[c, b, a] for c, b, a in zip(replies[2], replies[1], tuned_a)]]
    other = Drafted("e")
    _ask(wrap(other), "tuned", conversations=task, max_new_tokens=5)  # other decoding settings: no drafts yet
    assert other.drafts == [[[], []]]


def test_constrained_replies_are_decoded_without_drafts(store):
    scripted = Drafted("a")
    _ask(wrap(scripted), "base")
    _ask(wrap(scripted), "tuned", constraint=Constraint("labels", labels=("yes", "no")))
    _ask(wrap(scripted), "tuned", min_new_tokens=2)
    assert scripted.drafts[1:] == [None, None]


class Begun(Drafted):
    """The scripted model taking the replies' known beginnings (eval/forced.py), as LocalModel does."""

    def __init__(self, adapter: str):
        super().__init__(adapter)
        self.starts: list = []

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None, drafts=None, starts=None, **extra):
        self.starts.append(starts)
        return super().generate(conversations, max_new_tokens, batch_size, on_batch, drafts, **extra)


def test_the_loss_pass_beginnings_go_to_the_replies_generated_and_their_seconds_count_with_them(store):
    from ftorch.eval.forced import ForcedStart

    scripted = Begun("a")
    task = [[{"role": "user", "content": "Is 3 odd?"}], [{"role": "user", "content": "Is 4 odd?"}]]
    first = _ask(wrap(scripted), "tuned", conversations=task[:1])
    starts = [ForcedStart((1,), (2,), seconds=5.0), ForcedStart((3,), (4,), seconds=7.0)]
    generator = wrap(scripted)
    assert _ask(generator, "tuned", conversations=task, starts=starts)[0] == first[0]
    assert scripted.starts[-1] == starts[1:]  # the first reply came from the store: no beginning handed on
    assert generator.last_call is not None and generator.last_call.seconds >= 7.0
    _ask(wrap(scripted), "tuned", conversations=[[{"role": "user", "content": "Is 5 odd?"}]], starts=starts[:1],
         constraint=Constraint("labels", labels=("yes", "no")))
    assert scripted.starts[-1] is None  # a constrained reply is not the greedy one: no beginning


def test_a_clock_counts_seconds_charged_before_the_call_unless_the_cache_counted_them():
    clock = CallClock(ScriptedModel())
    clock.run(lambda: ["a", "b"], charged=4.0)
    assert clock.per_answer >= 2.0
