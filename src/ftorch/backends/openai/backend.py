"""provider=openai: a recipe becomes an OpenAI (or Azure OpenAI) fine-tuning job, followed to its end, with
the run directory as its record. Never a second paid job by accident: the job id is recorded the moment it
exists, every job carries the run's id in its metadata, and a create that may have reached the server is
looked up before it is tried again."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import openai_sdk as api
from ...config.providers import OpenAIProvider
from ...config.schema import TrainConfig
from ...errors import BackendError, ConfigError, Problem
from ...run import metrics_log
from ...run.metrics_log import MetricsRow
from ...safe_io import open_append, write_bytes, write_text
from ..base import RESUMING, Plan, Result
from ..remote import detached_message, follow_job, run_key
from ..settings import refuse_train_fraction
from . import eval as openai_eval

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir

TERMINAL = ("succeeded", "failed", "cancelled")
RETRYABLE_CREATE_ATTEMPTS = 3


# train.method -> the job's method type; the other preference methods have no OpenAI counterpart
METHODS = {"lora": "supervised", "sft": "supervised", "dpo": "dpo"}
# the train.* settings the job takes (one name each: no provider.* copies); the rest of train.* is refused
MAPPED_TRAIN = ("method", "epochs", "batch_size", "seed")


def _job_body(cfg: RunConfig) -> dict[str, Any]:
    """The one place ftorch's names (train.method/epochs/batch_size/seed, provider.*) become the fine-tuning
    API's job body."""
    p, t = cfg.provider_as(OpenAIProvider), cfg.train
    method = METHODS[t.method]
    hyper: dict[str, Any] = {"n_epochs": t.epochs if t.epochs == "auto" else int(t.epochs),
                             "batch_size": t.batch_size, "learning_rate_multiplier": p.learning_rate_multiplier}
    if method == "dpo":
        hyper["beta"] = p.beta
    body: dict[str, Any] = {"model": cfg.model.name, "method": {"type": method, method: {"hyperparameters": hyper}},
                            "metadata": dict(p.metadata)}
    if p.suffix:
        body["suffix"] = p.suffix
    if t.seed is not None:
        body["seed"] = t.seed
    return body


def _job_problems(cfg: RunConfig) -> list[Problem]:
    """train.* values the job cannot take, and provider.* that contradict them."""
    t, p = cfg.train, cfg.provider_as(OpenAIProvider)
    problems = []
    if t.method not in METHODS:
        problems.append(Problem("train.method", f"provider=openai has no {t.method} method",
                                "use train.method=dpo (OpenAI's DPO), or provider=peft for orpo, kto and simpo"))
    if t.epochs != "auto" and t.epochs != int(t.epochs):
        problems.append(Problem("train.epochs", f"OpenAI's job takes a whole number of epochs, got {t.epochs}",
                                f"use train.epochs={max(1, round(t.epochs))}, or auto to let OpenAI pick"))
    if p.beta != "auto" and t.method != "dpo":
        problems.append(Problem("provider.beta", "applies to train.method=dpo only", "remove it"))
    return problems


class OpenAIBackend:
    name = "openai"
    weights = "hosted"
    unused_settings = {
        **{f"train.{key}.*" if key in ("lora", "preference") else f"train.{key}":
           "the rest of train.* is for local training; OpenAI's job takes train.method, train.epochs, "
           "train.batch_size, train.seed and provider.learning_rate_multiplier"
           for key in TrainConfig.model_fields if key not in MAPPED_TRAIN},
        **{f"model.{key}": "OpenAI serves its models by id; local loading options do not apply"
           for key in ("revision", "dtype", "trust_remote_code")},
        # eval.* that needs the weights (drift, lm-eval) is refused for every hosted provider: backends/settings.py
    }

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        from ...data.cost import MIN_EXAMPLES, PriceTable, check_budget, estimate, price_table_path
        from ...data.tokens import counter_for

        p = cfg.provider_as(OpenAIProvider)
        # after the end date a ConfigError, before anything else, unless `ftorch resume` follows a recorded job
        wind_down = api.wind_down(p.api, new_job=not RESUMING.get())
        if problems := _job_problems(cfg):
            raise ConfigError(problems)
        method = METHODS[cfg.train.method]
        if cfg.model.tiny is not None:
            raise ConfigError(Problem("model.tiny", "provider=openai trains OpenAI models: set model.tiny=null and "
                                      "model.name to a fine-tunable model id, e.g. gpt-4o-mini-2024-07-18"))
        refuse_train_fraction(cfg, self.name)
        examples = data.count("train")
        if examples < MIN_EXAMPLES:
            raise ConfigError(Problem("data.train", f"{examples} examples: OpenAI needs at least {MIN_EXAMPLES}"))
        prices = PriceTable.load(price_table_path(p.prices))
        family = prices.family(cfg.model.name)
        if family and method not in family[1].get("methods", []):
            raise ConfigError(Problem("train.method", f"{cfg.model.name} does not support OpenAI's {method} "
                                      f"method (train.method={cfg.train.method})"))
        counter = counter_for(cfg.model.name, family[1] if family else None)
        train = data.splits["train"].examples
        tokens = sum(counter.count(e, cfg.data.format) for e in train)
        epochs = cfg.train.epochs if cfg.train.epochs == "auto" else int(cfg.train.epochs)
        cost = estimate(cfg.model.name, examples, tokens, epochs, prices)
        check_budget(p.max_cost_usd, cost.usd, "the training job", cfg.model.name)
        notes = [f"cost estimate: {cost.billed_tokens:,} billed tokens ({cost.epochs} epochs"
                 f"{', auto' if cost.epochs_auto else ''}) = " + (f"${cost.usd:.2f}" if cost.usd is not None
                                                                  else "unknown (model not in the price table)"),
                 f"token counts: {counter.note}",
                 "the job's hyperparameters are train.epochs / batch_size / seed (auto or null: OpenAI picks) and "
                 "provider.learning_rate_multiplier; the rest of train.* is for local training (setting one is "
                 "refused)",
                 wind_down]
        files = {split: str(chat.path) for split, chat in data.splits.items() if split in ("train", "validation")}
        return Plan(self.name, cfg, inputs={"job": _job_body(cfg), "files": files},
                    estimates={"train_examples": examples, "cost": cost.to_dict()}, notes=notes, data=data)

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return cancel(run, cfg)

    eval_models = staticmethod(openai_eval.eval_models)  # ftorch eval: what is scored, loaded or reached
    check_eval_budget = staticmethod(openai_eval.check_eval_budget)

    def preflight(self, cfg: RunConfig) -> None:
        """Before any run directory exists: the SDK is installed and the key variable is set (no network)."""
        api.make_client(cfg.provider_as(OpenAIProvider))

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._attach_or_start(plan, run)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._attach_or_start(plan, run)

    def _attach_or_start(self, plan: Plan, run: RunDir) -> Result:
        cfg = plan.config.provider_as(OpenAIProvider)
        client = api.make_client(cfg)
        job_id = run.read().get("job_id") or self._find_job(client, run_key(run))
        if job_id is None:
            files = self._upload(client, plan, run)
            job_id = self._create(client, plan, run, files)
        else:
            run.append_log(f"reattaching to job {job_id}")
            print(f"reattaching to job {job_id}", flush=True)
        run.update(job_id=job_id)
        return self._follow(client, job_id, plan, run)

    def _upload(self, client, plan: Plan, run: RunDir) -> dict[str, dict]:
        from ...cache import cache_root

        record = api.UploadRecord(cache_root() / "openai_files.json", api.endpoint_of(client))
        files = {split: api.upload(client, Path(path), record) for split, path in plan.inputs["files"].items()}
        run.update(openai_files=files)
        for split, entry in files.items():
            run.append_log(f"{split} file {entry['file_id']} ({'reused' if entry['reused'] else 'uploaded'})")
        return files

    def _create(self, client, plan: Plan, run: RunDir, files: dict[str, dict]) -> str:
        import openai

        key = run_key(run)
        body = dict(plan.inputs["job"], training_file=files["train"]["file_id"],
                    metadata={**plan.inputs["job"]["metadata"], "ftorch_run": key})
        if "validation" in files:
            body["validation_file"] = files["validation"]["file_id"]
        once = client.with_options(max_retries=0)  # a retried create must first look for the job it may have made
        retryable = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError,
                     openai.RateLimitError)
        for attempt in range(1, RETRYABLE_CREATE_ATTEMPTS + 1):
            try:
                job = once.fine_tuning.jobs.create(**body, extra_headers={"Idempotency-Key": key})
            except openai.PermissionDeniedError as exc:
                if getattr(exc, "code", None) == "training_not_available":
                    raise _wind_down(exc, files) from None
                with api.api_errors("create the fine-tuning job"):
                    raise
            except retryable:
                if attempt == RETRYABLE_CREATE_ATTEMPTS:
                    with api.api_errors("create the fine-tuning job"):
                        raise
                time.sleep(plan.config.provider_as(OpenAIProvider).poll_interval_s * attempt)
                found = self._find_job(client, key)
                if found:
                    return found
                continue
            except openai.APIError:
                with api.api_errors("create the fine-tuning job"):
                    raise
            run.update(job_id=job.id, job_status=job.status)
            from ...secrets import scrub_tree

            write_text(run.path / "job.json", json.dumps(scrub_tree(job.model_dump(mode="json")), indent=2))
            run.append_log(f"created job {job.id} ({job.status})")
            print(f"created fine-tuning job {job.id}", flush=True)
            return job.id
        raise AssertionError("unreachable")

    def _find_job(self, client, key: str) -> str | None:
        with api.api_errors("look for this run's job"):
            jobs = client.fine_tuning.jobs.list(metadata={"ftorch_run": key}, limit=10)
        matching = [j for j in jobs.data if (j.metadata or {}).get("ftorch_run") == key]
        return matching[0].id if matching else None

    def _follow(self, client, job_id: str, plan: Plan, run: RunDir) -> Result:
        cfg = plan.config.provider_as(OpenAIProvider)
        try:
            job = _Follower(client, job_id, run, cfg.poll_interval_s, cfg.max_poll_interval_s).until_done()
        except KeyboardInterrupt:
            if cfg.cancel_on_interrupt:
                with api.api_errors("cancel the job", job_id):
                    client.fine_tuning.jobs.cancel(job_id)
                print(f"\njob {job_id} cancelled (provider.cancel_on_interrupt=true)", flush=True)
            else:
                print(detached_message(job_id, run), flush=True)
            raise
        if job.status == "failed":
            error = job.error
            detail = f"{error.code}: {error.message}" if error else "no error detail from the API"
            raise BackendError(Problem(f"job {job_id}", f"the fine-tuning job failed: {detail}"))
        if job.status == "cancelled":
            raise BackendError(Problem(f"job {job_id}", "the fine-tuning job was cancelled"))
        metrics = _download_metrics(client, job, run)
        metrics["trained_tokens"] = job.trained_tokens
        return Result("succeeded", metrics=metrics, artifacts={"fine_tuned_model": job.fine_tuned_model},
                      extra={"fine_tuned_model": job.fine_tuned_model, "trained_tokens": job.trained_tokens,
                             "job_status": job.status, "job_id": job_id})


class _Follower:
    """Poll a job with backoff; stream its events to the console and events.jsonl; record checkpoints."""

    def __init__(self, client, job_id: str, run: RunDir, interval: float, longest: float):
        self.client, self.job_id, self.run = client, job_id, run
        self.interval, self.longest = interval, longest
        self.events = run.path / "events.jsonl"
        self.seen = {json.loads(line)["id"] for line in self.events.read_text().splitlines()} \
            if self.events.is_file() else set()
        self.checkpoints: dict[str, dict] = {}

    def until_done(self):
        import openai

        def poll():
            job = self.client.fine_tuning.jobs.retrieve(self.job_id)
            self._events()
            if job.status in ("running", "succeeded"):
                self._checkpoints()
            return job

        return follow_job(self.run, self.job_id, poll, (openai.APIConnectionError, openai.APITimeoutError,
                          openai.InternalServerError, openai.RateLimitError), TERMINAL, self.interval, self.longest)

    def _events(self) -> None:
        from ...secrets import scrub, scrub_tree

        page = self.client.fine_tuning.jobs.list_events(self.job_id, limit=100)
        fresh = [e for e in page.data if e.id not in self.seen]
        with open_append(self.events) as handle:  # a symlink planted at events.jsonl is refused
            for event in reversed(fresh):  # the API lists newest first
                self.seen.add(event.id)
                handle.write(json.dumps(scrub_tree(event.model_dump(mode="json"))) + "\n")
                print(f"  {scrub(event.message)}", flush=True)

    def _checkpoints(self) -> None:
        page = self.client.fine_tuning.jobs.checkpoints.list(self.job_id, limit=100)
        new = {c.id: c.model_dump(mode="json") for c in page.data if c.id not in self.checkpoints}
        if new:
            self.checkpoints.update(new)
            from ...run.rundir import write_json_atomic

            write_json_atomic(self.run.path / "checkpoints.json", sorted(self.checkpoints.values(),
                                                                          key=lambda c: c["step_number"]))


def _download_metrics(client, job, run: RunDir) -> dict[str, Any]:
    """The job's result file (step metrics CSV, served base64-encoded) -> metrics.jsonl rows."""
    if not job.result_files:
        return {}
    with api.api_errors("download the result file", job.id):
        raw = client.files.content(job.result_files[0]).read()
    write_bytes(run.path / "result_file.csv", _decode_result(raw))
    rows = list(csv.DictReader(io.StringIO(_decode_result(raw).decode("utf-8"))))
    final: dict[str, Any] = {}
    written: list[MetricsRow] = []
    for row in rows:
        step = int(float(row["step"]))
        entry = MetricsRow(step=step, kind="train", loss=_number(row.get("train_loss")),
                           token_accuracy=_number(row.get("train_accuracy")))
        written.append(entry)
        if _number(row.get("valid_loss")) is not None:
            written.append(MetricsRow(step=step, kind="eval", eval_loss=_number(row["valid_loss"])))
            final["final_eval_loss"] = _number(row["valid_loss"])
        final["final_loss"], final["global_step"] = entry.loss, step
    metrics_log.append(run.metrics, written)
    return final


def _decode_result(raw: bytes) -> bytes:
    text = raw.strip()
    if text.startswith(b"step"):
        return raw
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return raw


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _wind_down(exc, files: dict[str, dict]) -> BackendError:
    kept = ", ".join(f"{split}: {entry['file_id']}" for split, entry in files.items())
    return BackendError(Problem(
        "OpenAI fine-tuning", "OpenAI is winding down its self-serve fine-tuning platform, and this organisation can "
        f"no longer create training jobs (HTTP 403 training_not_available: {api.error_message(exc)}). Nothing was "
        f"trained or billed. The uploaded files are kept ({kept}).",
        f"Run the same recipe with {api.ALTERNATIVES}, e.g. `ftorch train recipe=... provider=peft`. "
        "Models you already fine-tuned stay usable for inference and evaluation."))


def cancel(run: RunDir, cfg: RunConfig) -> str:
    """`ftorch cancel RUN_DIR`: cancel the run's job; returns its new status."""
    job_id = run.read().get("job_id")
    if not job_id:
        raise ConfigError(Problem(str(run.path), "this run has no OpenAI job to cancel"))
    client = api.make_client(cfg.provider_as(OpenAIProvider))
    with api.api_errors("cancel the job", job_id):
        job = client.fine_tuning.jobs.cancel(job_id)
    record = run.read()
    if record["status"] != "succeeded":
        run.finish("failed", error=f"job {job_id} cancelled by `ftorch cancel`", job_status=job.status)
    return job.status
