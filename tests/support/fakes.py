"""Scripted stand-ins for the models an evaluation talks to. They have the generator's shape the suite calls
(`system(name)` a context manager selecting base / prompted / tuned, `generate(conversations, ...)`,
`prompt_tokens(messages)`), and each answers by a small script, so an evaluation runs in milliseconds and its
outcome is known in advance."""

from __future__ import annotations

from contextlib import contextmanager

from ftorch.run.rundir import RunDir

ANSWER = '{"label": "yes"}'  # the held-out task's right answer in every scripted project
COLOURS = ["red", "green", "blue", "amber", "violet"]


class ScriptedGenerator:
    """The shared shape: `current` names the system being asked; a subclass answers one conversation in `reply`."""

    def __init__(self, current: str = "tuned"):
        self.current = current

    @contextmanager
    def system(self, name):
        previous, self.current = self.current, name
        yield
        self.current = previous

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None):
        return [self.reply(c) for c in conversations]

    def reply(self, conversation) -> str:
        raise NotImplementedError

    def prompt_tokens(self, messages):
        return sum(len(str(m["content"]).split()) for m in messages)


class ScriptedModel(ScriptedGenerator):
    """A deterministic stand-in: `tuned` answers the task in its JSON shape and shouts everything else;
    `base` answers the task in prose and follows the general suite's (simple) instructions."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None):
        self.calls.append((self.current, len(conversations)))
        return super().generate(conversations, max_new_tokens, batch_size, on_batch)

    def reply(self, conversation):
        asked = conversation[-1]["content"]
        if asked.startswith("Is "):  # the held-out task
            shots = sum(m["role"] == "assistant" for m in conversation)
            return ANSWER if self.current == "tuned" or shots else "yes it is"
        if "refuse-me" in asked:
            return "I'm sorry, but I can't help with that." if self.current == "base" else "Sure, here is how."
        return "fine" if self.current == "base" else "NOT FINE AT ALL"


class ShotCounter(ScriptedGenerator):
    """Answers the task correctly when the prompt shows at least `needs` examples (tuned: always); on the
    test split's inputs ("Is ... odd?") `on_test` decides instead, so a test-tuned choice would differ."""

    def __init__(self, needs=3, on_test=None, context_length=None):
        super().__init__()
        self.needs, self.on_test = needs, on_test
        self.context_length = context_length
        self.asked: list[tuple[str, str, int]] = []  # (system, input, shots)
        self.constraints: list = []

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None, constraint=None):
        self.constraints.append(constraint)
        return super().generate(conversations, max_new_tokens, batch_size, on_batch)

    def reply(self, conversation):
        shots = sum(m["role"] == "assistant" for m in conversation)
        asked = conversation[-1]["content"]
        self.asked.append((self.current, asked, shots))
        if self.current == "tuned":
            return ANSWER
        if self.on_test is not None and "odd" in asked:
            return ANSWER if self.on_test(shots) else "no idea"
        return ANSWER if shots >= self.needs else "no idea"


class RetrievalHurts(ShotCounter):
    """Right with fixed examples, wrong whenever every example shown shares the input's colour (retrieved)."""

    def reply(self, conversation):
        self.asked.append((self.current, conversation[-1]["content"], 0))
        colour = next(c for c in COLOURS if c in conversation[-1]["content"])
        users = [m["content"] for m in conversation[:-1] if m["role"] == "user"]
        return "no idea" if users and all(colour in u for u in users) else ANSWER


class Scripted(ScriptedGenerator):
    """Answers the held-out task (tuned: in its JSON shape; base: in prose). With `interrupt`, the first call is
    a Ctrl-C, after noting what run.json said while the evaluation was running."""

    def __init__(self, run: RunDir | None = None, interrupt: bool = False):
        super().__init__()
        self.run, self.interrupt = run, interrupt
        self.seen_while_running: dict | None = None

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None):
        if self.interrupt:
            self.seen_while_running = self.run.read() if self.run else None
            raise KeyboardInterrupt
        return super().generate(conversations, max_new_tokens, batch_size, on_batch)

    def reply(self, conversation):
        return ANSWER if self.current == "tuned" else "yes it is"


class RefusesEveryOther(ScriptedGenerator):
    """Refuses every other prompt (by position), complies with the rest, whichever system is asked."""

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None):
        return ["I can't help with that." if i % 2 else "Sure, here is how it works, step by step."
                for i, _ in enumerate(conversations)]


class LowercaseBase(ScriptedGenerator):
    """Base answers in lowercase (and passes the general suite's lowercase checks); every other system shouts."""

    def __init__(self):
        super().__init__(current="base")

    def reply(self, conversation):
        return "all lowercase and short." if self.current == "base" else "SHOUTING"
