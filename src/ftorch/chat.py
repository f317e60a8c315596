"""`ftorch chat RUN_DIR [--compare]`: talk to a run's tuned model in the terminal, tokens streamed as they are
generated (greedy, as the evaluation decodes). With --compare every message is answered by the base model too
(the same weights with the adapter switched off), each keeping its own side of the conversation.

Commands: /system [TEXT] shows or sets the system prompt (default: the run's), /reset forgets the conversation,
/save writes the transcript into RUN_DIR/chat/, /quit (or Ctrl-D) leaves.

Input is bounded: a line is read in bytes, at most BYTES_PER_TOKEN x the context length of it (a longer one is read
through and refused before anything decodes or tokenises it), must be UTF-8, and its conversation must leave
--max-new-tokens of the context free. At a terminal a refused message is explained and the session goes on; from a
pipe it ends the session with exit 2."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .errors import EXIT_USER, ConfigError, FtorchError, Problem

HELP = "commands: /system [TEXT]  /reset  /save  /quit"
BYTES_PER_TOKEN = 8  # far above any tokenizer's average: a line longer than this x the context cannot fit it
DEFAULT_CONTEXT = 32768  # for a model whose config and tokenizer do not say
CHUNK = 1 << 16  # how much of an over-long line is read (and dropped) at a time


class MessageRefused(FtorchError):
    """A message that cannot be sent (too long for the context, not UTF-8): at a terminal the session says so and
    goes on; from a pipe it ends with exit 2."""

    exit_code = EXIT_USER
    title = "message refused"


class Session:
    def __init__(self, run_dir: Path, system: str | None, compare: bool):
        self.run_dir, self.system, self.compare = run_dir, system, compare
        self.history: dict[str, list[dict]] = {"tuned": [], "base": []}
        self.turns: list[dict] = []
        stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
        self.path = run_dir / "chat" / f"transcript-{stamp}.json"

    def conversation(self, side: str, message: str) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history[side] + [{"role": "user", "content": message}]

    def remember(self, side: str, message: str, reply: str) -> None:
        self.history[side] += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]

    def reset(self) -> None:
        self.history = {"tuned": [], "base": []}
        self.turns.append({"event": "reset"})

    def save(self) -> Path:
        from .run.rundir import write_json_atomic

        write_json_atomic(self.path, {"run_dir": str(self.run_dir), "compare": self.compare,
                                      "saved": datetime.now(UTC).isoformat(timespec="seconds"),
                                      "turns": self.turns})
        return self.path


def read_message(stream: BinaryIO, limit: int) -> str | None:
    """The next line of `stream`, decoded and stripped; None at the end of input. A line of more than `limit` bytes
    is read through to its end CHUNK bytes at a time and refused: memory stays bounded whatever arrives."""
    line = stream.readline(limit + 1)
    if not line:
        return None
    if len(line) > limit and not line.endswith(b"\n"):
        size = len(line)
        while line and not line.endswith(b"\n"):
            line = stream.readline(CHUNK)
            size += len(line)
        size -= line.endswith(b"\n")
        raise MessageRefused(Problem("", f"this message is {size:,} bytes: longer than the {limit:,} bytes that "
                                         "could fit the model's context", "send a shorter one"))
    try:
        return line.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise MessageRefused(Problem("", f"this message is not valid UTF-8 (byte 0x{line[exc.start]:02x} at "
                                         f"position {exc.start + 1})", "type it again; if the terminal is not set "
                                         "to UTF-8, set it (e.g. LANG=C.UTF-8)")) from None


def context_of(local) -> int:
    """The tokens the model attends to (prompt and reply): its config's, else its tokenizer's, else a default."""
    if local.context_length:
        return local.context_length
    length = getattr(local.tokenizer, "model_max_length", None)
    return length if isinstance(length, int) and 0 < length < 10**7 else DEFAULT_CONTEXT


def prompt_ids(local, messages: list[dict], context: int, max_new_tokens: int) -> list[int]:
    """The prompt's tokens, refused when they leave fewer than `max_new_tokens` of the context for the reply."""
    ids = local.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    room = context - max_new_tokens
    if len(ids) > room:
        earlier = any(m["role"] == "assistant" for m in messages)
        raise MessageRefused(Problem("", f"this {'conversation' if earlier else 'message'} is {len(ids):,} tokens; "
                                         f"the model's context of {context:,} tokens leaves {room:,} for it after "
                                         f"--max-new-tokens {max_new_tokens}",
                                         "/reset forgets the conversation so far, or send a shorter message"
                                         if earlier else "send a shorter one"))
    return ids


def stream_reply(local, ids: list[int], max_new_tokens: int, write) -> str:
    """Greedy reply to the prompt `ids`, each piece of text passed to `write` as soon as it is decoded."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    inputs = torch.tensor([ids], device=local.device)
    streamer = TextIteratorStreamer(local.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                  do_sample=False, streamer=streamer, eos_token_id=local.stop_ids(),
                  pad_token_id=local.tokenizer.pad_token_id)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                local.model.generate(**kwargs)
        except BaseException as exc:  # shown in the main thread
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        write(piece)
    worker.join()
    if failure:
        raise failure[0]
    return "".join(pieces).strip()


def chat(args, stdin: BinaryIO | None = None, stdout=None) -> int:
    from .export.ollama import system_prompt
    from .export.source import open_run

    stdin, stdout = stdin or sys.stdin.buffer, stdout or sys.stdout
    source = open_run(args.run_dir, purpose="chat")
    from .eval.local import LocalModel

    print(f"loading {args.run_dir} ...", file=sys.stderr, flush=True)
    local = LocalModel(source.base_path(), source.adapter)
    local.load_for(("base", "tuned") if args.compare else ("tuned",))
    context = context_of(local)
    if args.max_new_tokens >= context:
        raise ConfigError(Problem("--max-new-tokens", f"{args.max_new_tokens} leaves no room for a message in the "
                                  f"model's context of {context} tokens", f"give fewer than {context}"))
    session = Session(source.run.path, system_prompt(source), args.compare)
    interactive = stdin.isatty()

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    write(f"chatting with the tuned model of {args.run_dir}" + (" (and the base model)" if args.compare else "")
          + f"\n{HELP}\nsystem prompt: {session.system or '(none)'}\n")
    while True:
        write("you> ")
        try:
            message = read_message(stdin, BYTES_PER_TOKEN * context)
            if message is None:
                write("\n")
                break
            if not message:
                continue
            if message.startswith("/"):
                if not run_command(session, message, write):
                    break
                continue
            answer(local, session, message, context, args.max_new_tokens, write)
        except MessageRefused as refused:
            if not interactive:
                raise
            write(f"{refused.title}: {refused.render()}\n")
    if session.turns and not session.path.exists():
        write("(transcript not saved; /save keeps it)\n")
    return 0


def run_command(session: Session, message: str, write) -> bool:
    """Carry out a /command; False when it ends the session."""
    command, _, rest = message.partition(" ")
    if command in ("/quit", "/exit"):
        return False
    if command == "/reset":
        session.reset()
        write("(conversation forgotten)\n")
    elif command == "/system":
        if rest.strip():
            session.system = rest.strip()
            session.turns.append({"event": "system", "content": session.system})
        write(f"system prompt: {session.system or '(none)'}\n")
    elif command == "/save":
        write(f"saved {session.save()}\n")
    else:
        write(f"unknown command {command}; {HELP}\n")
    return True


def answer(local, session: Session, message: str, context: int, max_new_tokens: int, write) -> None:
    """Each side's streamed reply to `message`, remembered; every side's prompt is checked before any is sent."""
    sides = ("base", "tuned") if session.compare else ("tuned",)
    prompts = {side: prompt_ids(local, session.conversation(side, message), context, max_new_tokens)
               for side in sides}
    turn = {"user": message, "system": session.system}
    for side in sides:
        write(f"{side}> ")
        with local.system(side):
            reply = stream_reply(local, prompts[side], max_new_tokens, write)
        write("\n")
        session.remember(side, message, reply)
        turn[side] = reply
    session.turns.append(turn)
