"""`ftorch chat RUN_DIR [--compare]`: talk to a run's tuned model in the terminal, tokens streamed as they are
generated (greedy, as the evaluation decodes). With --compare every message is answered by the base model too
(the same weights with the adapter switched off), each keeping its own side of the conversation.

Commands: /system [TEXT] shows or sets the system prompt (default: the run's), /reset forgets the conversation,
/save writes the transcript into RUN_DIR/chat/, /quit (or Ctrl-D) leaves."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

HELP = "commands: /system [TEXT]  /reset  /save  /quit"


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


def stream_reply(local, messages: list[dict], max_new_tokens: int, write) -> str:
    """Greedy reply to `messages`, each piece of text passed to `write` as soon as it is decoded."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    ids = local.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    inputs = torch.tensor([ids], device=local.device)
    streamer = TextIteratorStreamer(local.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                  do_sample=False, streamer=streamer, eos_token_id=local._stop_ids(),
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


def chat(args, stdin=None, stdout=None) -> int:
    from .export.ollama import system_prompt
    from .export.source import open_run

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    source = open_run(args.run_dir)
    from .eval.local import LocalModel

    print(f"loading {args.run_dir} ...", file=sys.stderr, flush=True)
    local = LocalModel(source.base_path(), source.adapter)
    session = Session(source.run.path, system_prompt(source), args.compare)

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    write(f"chatting with the tuned model of {args.run_dir}" + (" (and the base model)" if args.compare else "")
          + f"\n{HELP}\nsystem prompt: {session.system or '(none)'}\n")
    while True:
        write("you> ")
        line = stdin.readline()
        if not line:
            write("\n")
            break
        message = line.strip()
        if not message:
            continue
        if message.startswith("/"):
            command, _, rest = message.partition(" ")
            if command in ("/quit", "/exit"):
                break
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
            continue
        turn = {"user": message, "system": session.system}
        for side in ("base", "tuned") if args.compare else ("tuned",):
            write(f"{side}> ")
            with local.system(side):
                reply = stream_reply(local, session.conversation(side, message), args.max_new_tokens, write)
            write("\n")
            session.remember(side, message, reply)
            turn[side] = reply
        session.turns.append(turn)
    if session.turns and not session.path.exists():
        write("(transcript not saved; /save keeps it)\n")
    return 0
