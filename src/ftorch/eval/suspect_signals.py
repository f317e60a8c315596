"""The tuned model's view of each training example of a finished run, for `ftorch data suspects`
(data/suspects.py ranks them): its loss per assistant token under the final adapter, and its own greedy answer
scored against the label with the task's headline metric. Local runs only (it needs the weights)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config.schema import RunConfig
from ..data.checks import content_text
from ..data.profile import exact_key
from ..data.suspects import Signals
from ..errors import ConfigError, Problem
from ..run.rundir import RunDir


def training_examples(cfg: RunConfig) -> tuple[Path, list[dict], list[int]]:
    """The examples the run trained on (its data.train_fraction applied), their file and lines."""
    from ..data.report import check_data

    chat = check_data(cfg.data).splits["train"]
    return chat.path, chat.examples, chat.lines


def per_example_loss(local, conversations: list[list[dict]], batch_size: int) -> list[float]:
    """Mean negative log-likelihood per assistant token, one number per conversation (eval/local.py's masks)."""
    return [total / max(count, 1) for total, count in local.assistant_token_losses(conversations, batch_size)]


def signals(run: RunDir, cfg: RunConfig, local=None, answers: bool = True,
            progress: Callable[[str], None] | None = None) -> tuple[Path, list[Signals]]:
    """Every training example's signals. `local` (a LocalModel with the run's adapter) is loaded from the run's
    provider when not given."""
    from . import metrics as task_metrics

    if cfg.data.format != "chat":
        raise ConfigError(Problem("data.format", "suspects rank chat examples (an answer per example); this run "
                                  "trained on preference pairs"))
    if local is None:
        local = _local_model(run, cfg)
    source, examples, lines = training_examples(cfg)
    conversations, prompts, labels = [], [], []
    for example in examples:
        messages = example["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        conversations.append(messages[: last + 1])
        prompts.append(messages[:last])
        labels.append(content_text(messages[last]))
    tell = progress or (lambda message: None)
    tell(f"loss of {len(conversations)} training examples under the final adapter")
    with local.system("tuned"):
        losses = per_example_loss(local, conversations, cfg.eval.batch_size)
        replies: list[str | None] = [None] * len(prompts)
        if answers:
            tell(f"greedy answers to {len(prompts)} training prompts")
            replies = list(local.generate(prompts, cfg.eval.max_new_tokens, cfg.eval.decode_batch_size))
    score = task_metrics.build_scorers([cfg.eval.headline], cfg.eval.json_schema)[cfg.eval.headline]
    found = []
    for example, line, prompt, label, reply, loss in zip(examples, lines, prompts, labels, replies, losses):
        users = [content_text(m) for m in prompt if m["role"] == "user"]
        agreement = None if reply is None else score(reply, label)
        found.append(Signals(line, exact_key(example), users[-1] if users else "", label, reply, float(loss),
                             None if agreement is None else float(agreement)))
    return source, found


def _local_model(run: RunDir, cfg: RunConfig):
    from ..backends import get_backend

    local = get_backend(cfg.provider.name).eval_models(run, cfg).local
    if local is None:
        raise ConfigError(Problem("provider", f"provider={cfg.provider.name} keeps its weights remotely: suspects "
                                  "need the tuned model's losses", "rank a local run's data (provider=peft)"))
    return local
