"""provider=together: a recipe becomes a Together AI fine-tuning job (SFT or DPO, LoRA or full), followed to its
end, with the run directory as its record. Never a second paid job: the job's suffix carries the run's key, the
job id is recorded the moment it exists, and before any create the account's jobs are searched for that suffix.
Nothing is spent before Together's own price estimate has passed provider.max_cost_usd."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import together_sdk as api
from ...config.providers import TogetherProvider
from ...config.schema import LoraSettings, PreferenceSettings, TrainConfig
from ...errors import BackendError, ConfigError, Problem
from ...run import metrics_log
from ...run.metrics_log import MetricsRow
from ...safe_io import open_append, write_text
from ..base import Plan, Result
from ..remote import detached_message, follow_job, run_key
from ..settings import refuse_train_fraction
from . import eval as together_eval

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir

TERMINAL = ("completed", "cancelled", "error")
CREATE_ATTEMPTS = 3
METHODS = {"lora": "sft", "sft": "sft", "dpo": "dpo"}
# train.* the job takes; everything else in train.* is refused when set (mapped or refused)
MAPPED_TRAIN = ("method", "epochs", "batch_size", "lr", "warmup_ratio", "scheduler", "weight_decay", "max_grad_norm",
                "seed", "max_length", "packing", "assistant_only_loss", "lora", "preference")
MAPPED_LORA = ("r", "alpha", "dropout", "target_modules")
MAPPED_PREFERENCE = ("beta", "sft_weight")


def together_model(cfg: RunConfig) -> str:
    return cfg.provider_as(TogetherProvider).model or cfg.model.name


def marker(cfg: RunConfig, run: RunDir) -> str:
    """The job's suffix: provider.suffix, then the run's key (how a crashed run finds the job it created)."""
    p = cfg.provider_as(TogetherProvider)
    key = run_key(run)[len("ftorch-"):][:16]
    return f"{p.suffix}-{key}" if p.suffix else f"ftorch-{key}"


def job_body(cfg: RunConfig) -> dict[str, Any]:
    """The one place ftorch's names (train.*, provider.*) become the spec's POST /fine-tunes body (without the
    files and the suffix, added when they exist)."""
    p, t = cfg.provider_as(TogetherProvider), cfg.train
    method = METHODS[t.method]
    body: dict[str, Any] = {
        "model": together_model(cfg), "n_epochs": int(t.fixed_epochs), "n_checkpoints": p.n_checkpoints,
        "n_evals": p.n_evals, "batch_size": "max" if t.batch_size == "auto" else t.batch_size,
        "learning_rate": t.lr, "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm, "max_seq_length": t.max_length,
        # cosine's args are left to the server: the spec's oneOf cannot tell them from linear's
        "lr_scheduler": {"lr_scheduler_type": t.scheduler} if t.scheduler == "cosine" else
        {"lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 0.0}}}
    if t.seed is not None:
        body["random_seed"] = t.seed
    if t.packing != "auto":
        body["packing"] = t.packing
    if method == "sft":
        body["training_method"] = {"method": "sft", "train_on_inputs": not t.assistant_only_loss}
    else:
        body["training_method"] = {"method": "dpo", "dpo_beta": t.preference.beta}
        if t.preference.sft_weight:
            body["training_method"]["rpo_alpha"] = t.preference.sft_weight
    if p.training_type == "lora":
        body["training_type"] = {"type": "Lora", "lora_r": t.lora.r, "lora_alpha": t.lora.alpha,
                                 "lora_dropout": t.lora.dropout,
                                 "lora_trainable_modules": ",".join(t.lora.target_modules)}
    else:
        body["training_type"] = {"type": "Full"}
    return body


def job_problems(cfg: RunConfig) -> list[Problem]:
    """train.* values the job cannot take, and settings that contradict each other."""
    t, p = cfg.train, cfg.provider_as(TogetherProvider)
    problems = []
    if t.method not in METHODS:
        problems.append(Problem("train.method", f"provider=together has no {t.method} method",
                                "use train.method=dpo (Together's DPO), or provider=peft for orpo, kto and simpo"))
    if t.epochs == "auto" or t.epochs != int(t.epochs):
        problems.append(Problem("train.epochs", f"Together's job takes a whole number of epochs, got {t.epochs}",
                                f"use train.epochs={max(1, round(t.epochs)) if t.epochs != 'auto' else 3}"))
    if t.scheduler not in ("linear", "cosine"):
        problems.append(Problem("train.scheduler", f"Together's lr_scheduler is linear or cosine, not {t.scheduler}",
                                "use train.scheduler=linear or cosine"))
    if t.method == "dpo" and not t.assistant_only_loss:
        problems.append(Problem("train.assistant_only_loss", "DPO scores the answers only; train_on_inputs is "
                                "for SFT", "remove it"))
    if t.method != "dpo":
        defaults = PreferenceSettings()
        problems += [Problem(f"train.preference.{key}", "applies to train.method=dpo only", "remove it")
                     for key in MAPPED_PREFERENCE if getattr(t.preference, key) != getattr(defaults, key)]
    if p.training_type == "full":
        defaults_lora = LoraSettings()
        problems += [Problem(f"train.lora.{key}", "provider.training_type=full trains every weight: there is no "
                             "LoRA to shape", "remove it, or use provider.training_type=lora")
                     for key in MAPPED_LORA if getattr(t.lora, key) != getattr(defaults_lora, key)]
        if p.download_adapter:
            problems.append(Problem("provider.download_adapter", "a full fine-tune has no LoRA adapter to download",
                                    "use provider.training_type=lora, or evaluate through the API"))
    return problems


class TogetherBackend:
    name = "together"
    # with provider.download_adapter the run ends with a PEFT adapter in RUN/adapter (export, chat, local eval);
    # without it the model stays with Together and is evaluated through chat completions (eval.py), which
    # refuses the weights-only evaluation settings itself
    weights = "adapter"
    unused_settings = {
        **{f"train.{key}": "the rest of train.* is for local training; Together's job takes train.method, epochs, "
           "batch_size, lr, warmup_ratio, scheduler, weight_decay, max_grad_norm, seed, max_length, packing, "
           "assistant_only_loss, lora.r/alpha/dropout/target_modules and preference.beta/sft_weight"
           for key in TrainConfig.model_fields if key not in MAPPED_TRAIN},
        **{f"train.lora.{key}": "Together's LoRATrainingType has no such setting"
           for key in LoraSettings.model_fields if key not in MAPPED_LORA},
        **{f"train.preference.{key}": "Together's DPO takes dpo_beta (train.preference.beta) and rpo_alpha "
           "(train.preference.sft_weight) only" for key in PreferenceSettings.model_fields
           if key not in MAPPED_PREFERENCE},
        **{f"model.{key}": "Together serves its models by id (provider.model); these local loading options do not "
           "apply" for key in ("revision", "dtype", "trust_remote_code")},
    }

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        p = cfg.provider_as(TogetherProvider)
        if problems := job_problems(cfg):
            raise ConfigError(problems)
        refuse_train_fraction(cfg, self.name)
        if not p.download_adapter and cfg.eval.enabled:
            together_eval.refuse_hosted_weights(cfg)
        model = together_model(cfg)
        models, source = api.known_models(together_eval.prices_path(cfg), api.api_root(p))
        if model not in models:
            raise ConfigError(api.unsupported(model, models, source))
        files = {split: str(chat.path) for split, chat in data.splits.items() if split in ("train", "validation")}
        notes = [f"Together fine-tunes {model} ({'LoRA' if p.training_type == 'lora' else 'full'}, "
                 f"{METHODS[cfg.train.method]}); checked against {source}",
                 "the price comes from Together's /fine-tunes/estimate-price after the upload (uploads are free) "
                 "and is checked against provider.max_cost_usd before the job is created",
                 "train_on_inputs is the opposite of train.assistant_only_loss; train.preference.beta is dpo_beta"]
        if p.download_adapter:
            notes.append("the adapter is downloaded into the run folder and evaluated on model.* here")
        else:
            notes.append("evaluation goes through Together's chat completions (base model and the tuned one)")
        return Plan(self.name, cfg, inputs={"job": job_body(cfg), "files": files, "format": cfg.data.format},
                    estimates={"train_examples": data.count("train")}, notes=notes, data=data)

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return cancel(run, cfg)

    eval_models = staticmethod(together_eval.eval_models)
    check_eval_budget = staticmethod(together_eval.check_eval_budget)

    def preflight(self, cfg: RunConfig) -> None:
        api.make_client(cfg.provider_as(TogetherProvider))

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._attach_or_start(plan, run)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._attach_or_start(plan, run)

    # ------------------------------------------------------------ the job
    def _attach_or_start(self, plan: Plan, run: RunDir) -> Result:
        cfg = plan.config
        client = api.make_client(cfg.provider_as(TogetherProvider))
        suffix = marker(cfg, run)
        job_id = run.read().get("job_id") or find_job(client, suffix)
        if job_id is None:
            models = api.fetch_models(client, api.api_root(cfg.provider_as(TogetherProvider)))
            if together_model(cfg) not in models:
                raise ConfigError(api.unsupported(together_model(cfg), models, "/fine-tunes/models/supported"))
            files = self._upload(client, plan, run)
            self._check_price(client, plan, run, files)
            job_id = self._create(client, plan, run, files, suffix)
        else:
            run.append_log(f"reattaching to job {job_id}")
            print(f"reattaching to job {job_id}", flush=True)
        run.update(job_id=job_id)
        result = self._follow(client, job_id, plan, run)
        if cfg.provider_as(TogetherProvider).download_adapter:
            from .pull import pull

            result.extra["adapter_sha256"] = pull(client, run, cfg, job_id)
            result.artifacts["adapter"] = str(run.adapter)
        return result

    def _upload(self, client, plan: Plan, run: RunDir) -> dict[str, dict]:
        from ...cache import cache_root
        from ...openai_sdk import UploadRecord

        record = UploadRecord(cache_root() / "together_files.json", api.endpoint_of(client))
        files = {}
        for split, source in plan.inputs["files"].items():
            path = Path(source)
            if plan.inputs["format"] == "preference":
                path = to_together_preference(path, run.path / f"together_{split}.jsonl")
            files[split] = api.upload(client, path, record, f"{split}.jsonl")
        run.update(together_files=files)
        for split, entry in files.items():
            run.append_log(f"{split} file {entry['file_id']} ({'reused' if entry['reused'] else 'uploaded'})")
        return files

    def _check_price(self, client, plan: Plan, run: RunDir, files: dict[str, dict]) -> None:
        from ...data.cost import check_budget

        job = plan.inputs["job"]
        body = {key: job[key] for key in ("model", "n_epochs", "n_evals", "training_method", "training_type")}
        body["training_file"] = files["train"]["file_id"]
        if "validation" in files:
            body["validation_file"] = files["validation"]["file_id"]
        with api.api_errors("estimate the job's price"):
            estimate = client.fine_tuning.estimate_price(**body)
        usd = estimate.estimated_total_price
        run.update(price_estimate={k: v for k, v in estimate.model_dump(mode="json").items() if v is not None})
        run.append_log(f"Together's estimate: ${usd}")
        print(f"Together's price estimate: ${usd}", flush=True)
        check_budget(plan.config.provider_as(TogetherProvider).max_cost_usd, usd, "the training job",
                     together_model(plan.config))
        if estimate.allowed_to_proceed is False:
            raise BackendError(Problem("Together billing", f"the job is estimated at ${usd}, beyond what the "
                                       f"account may spend (limit ${estimate.user_limit}); nothing was created",
                                       api.BILLING_HINT))

    def _create(self, client, plan: Plan, run: RunDir, files: dict[str, dict], suffix: str) -> str:
        import together
        from together.types import FinetuneResponse

        body = dict(plan.inputs["job"], training_file=files["train"]["file_id"], suffix=suffix)
        if "validation" in files:
            body["validation_file"] = files["validation"]["file_id"]
        once = client.with_options(max_retries=0)  # a retried create must first look for the job it may have made
        retryable = (together.APIConnectionError, together.InternalServerError, together.RateLimitError)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                job = once.post("/v1/fine-tunes", body=body, cast_to=FinetuneResponse)
            except retryable:
                if attempt == CREATE_ATTEMPTS:
                    with api.api_errors("create the fine-tuning job"):
                        raise
                time.sleep(plan.config.provider_as(TogetherProvider).poll_interval_s * attempt)
                if found := find_job(client, suffix):
                    return found
                continue
            except together.APIError:
                with api.api_errors("create the fine-tuning job"):
                    raise
            run.update(job_id=job.id, job_status=job.status)
            from ...secrets import scrub_tree

            write_text(run.path / "job.json", json.dumps(scrub_tree(job.model_dump(mode="json")), indent=2))
            run.append_log(f"created job {job.id} ({job.status})")
            print(f"created fine-tuning job {job.id}", flush=True)
            return job.id
        raise AssertionError("unreachable")

    def _follow(self, client, job_id: str, plan: Plan, run: RunDir) -> Result:
        p = plan.config.provider_as(TogetherProvider)
        try:
            job = Follower(client, job_id, run, p.poll_interval_s, p.max_poll_interval_s).until_done()
        except KeyboardInterrupt:
            if p.cancel_on_interrupt:
                with api.api_errors("cancel the job", job_id):
                    client.fine_tuning.cancel(job_id)
                print(f"\njob {job_id} cancelled (provider.cancel_on_interrupt=true)", flush=True)
            else:
                print(detached_message(job_id, run), flush=True)
            raise
        if job.status == "error":
            messages = [e.message for e in job.events or [] if e.type == "job_error"]
            detail = messages[-1] if messages else "no error detail from the API"
            raise BackendError(Problem(f"job {job_id}", f"the fine-tuning job failed: {detail}"))
        if job.status == "cancelled":
            raise BackendError(Problem(f"job {job_id}", "the fine-tuning job was cancelled"))
        name = job.x_model_output_name
        history = metrics_log.read(run.metrics) if run.metrics.is_file() else []
        steps = [row["step"] for row in history if row.get("kind") == "train"]
        metrics = {**metrics_log.final_metrics(history, max(steps, default=None)), "trained_tokens": job.token_count}
        return Result("succeeded", metrics=metrics, artifacts={"fine_tuned_model": name or ""},
                      extra={"fine_tuned_model": name, "trained_tokens": job.token_count, "job_status": job.status,
                             "job_id": job_id})


def find_job(client, suffix: str) -> str | None:
    """The job this run created, by its suffix (newest first), or None."""
    with api.api_errors("look for this run's job"):
        jobs = client.fine_tuning.list().data
    for job in jobs:
        name = job.x_model_output_name or ""
        if job.suffix == suffix or f"-{suffix}-" in f"{name}-":
            return job.id
    return None


def to_together_preference(source: Path, out: Path) -> Path:
    """ftorch's preference JSONL (OpenAI's DPO shape) as Together's: input.messages, preferred_output and
    non_preferred_output, nothing else (Together rejects unknown keys in a DPO file)."""
    lines = []
    for line in source.read_text().splitlines():
        if line.strip():
            pair = json.loads(line)
            lines.append(json.dumps({"input": {"messages": pair["input"]["messages"]},
                                     "preferred_output": pair["preferred_output"],
                                     "non_preferred_output": pair["non_preferred_output"]}))
    write_text(out, "\n".join(lines) + "\n")
    return out


class Follower:
    """Poll a job with backoff; stream its events to the console and events.jsonl, its metrics to metrics.jsonl,
    its checkpoints to checkpoints.json."""

    def __init__(self, client, job_id: str, run: RunDir, interval: float, longest: float):
        self.client, self.job_id, self.run = client, job_id, run
        self.interval, self.longest = interval, longest
        self.events = run.path / "events.jsonl"
        self.seen = {self.event_key(json.loads(line)) for line in self.events.read_text().splitlines()} \
            if self.events.is_file() else set()
        self.last_step = max((json.loads(line).get("step", 0) for line in run.metrics.read_text().splitlines()
                              if line.strip()), default=0) if run.metrics.is_file() else 0

    @staticmethod
    def event_key(event: dict[str, Any]) -> str:
        return json.dumps([event.get(k) for k in ("created_at", "type", "message", "step", "hash")])

    def until_done(self):
        import together

        transient = (together.APIConnectionError, together.InternalServerError, together.RateLimitError)

        def poll():
            try:
                job = self.client.fine_tuning.retrieve(self.job_id)
                self._events()
                if job.status in ("running", "compressing", "uploading", "completed"):
                    self._metrics()
                    self._checkpoints()
                return job
            except transient:
                raise  # retried by follow_job
            except together.APIError:
                with api.api_errors("follow the job", self.job_id):
                    raise

        return follow_job(self.run, self.job_id, poll, transient, TERMINAL, self.interval, self.longest)

    def _events(self) -> None:
        from ...secrets import scrub, scrub_tree

        page = self.client.fine_tuning.list_events(self.job_id)
        with open_append(self.events) as handle:
            for event in page.data:
                data = event.model_dump(mode="json")
                key = self.event_key(data)
                if key in self.seen:
                    continue
                self.seen.add(key)
                handle.write(json.dumps(scrub_tree(data)) + "\n")
                print(f"  {scrub(event.message)}", flush=True)

    def _metrics(self) -> None:
        import together

        try:
            page = self.client.fine_tuning.list_metrics(self.job_id)
        except together.NotFoundError:
            return  # a job without recorded metrics yet
        rows = []
        for entry in page.metrics or []:
            step = int(entry.get("train/global_step") or 0)
            if step <= self.last_step:
                continue
            rows.append(MetricsRow(step=step, kind="train", loss=entry.get("train/loss"),
                                   lr=entry.get("train/learning_rate")))
            if entry.get("eval/loss") is not None:
                rows.append(MetricsRow(step=step, kind="eval", eval_loss=entry["eval/loss"]))
        if rows:
            metrics_log.append(self.run.metrics, rows)
            self.last_step = max(r.step for r in rows)

    def _checkpoints(self) -> None:
        from ...run.rundir import write_json_atomic

        page = self.client.fine_tuning.list_checkpoints(self.job_id)
        checkpoints = sorted((c.model_dump(mode="json", exclude_none=True) for c in page.data),
                             key=lambda c: (c["step"], "final" in c["checkpoint_type"].lower()))
        if checkpoints:
            write_json_atomic(self.run.path / "checkpoints.json", checkpoints)


def cancel(run: RunDir, cfg: RunConfig) -> str:
    """`ftorch cancel RUN_DIR`: cancel the run's job (found by its suffix if run.json lost it); its new status."""
    client = api.make_client(cfg.provider_as(TogetherProvider))
    job_id = run.read().get("job_id") or find_job(client, marker(cfg, run))
    if not job_id:
        raise ConfigError(Problem(str(run.path), "this run has no Together job to cancel"))
    with api.api_errors("cancel the job", job_id):
        job = client.fine_tuning.cancel(job_id)
    record = run.read()
    if record["status"] != "succeeded":
        run.finish("failed", error=f"job {job_id} cancelled by `ftorch cancel`", job_status=job.status,
                   job_id=job_id)
    return job.status
