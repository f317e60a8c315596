"""provider=axolotl: Axolotl, run as a child process in its own environment (.venv-axolotl).

ftorch writes one axolotl.yaml per run (`config.translate` is the only translator: SFT on chat data, or
preference training through Axolotl's `rl:` with the pairs rewritten for its loader), checks it with Axolotl's own
schema in the child environment (`child.py`), then runs `python -m axolotl.cli.train axolotl.yaml`,
streaming its output to the console and train.log and its step logs to metrics.jsonl.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ...config.providers import AxolotlProvider
from ...errors import BackendError, ConfigError, MissingExtra, Problem
from ...models import check_model_reference, model_path
from ...run import metrics_log
from ...safe_io import copy_file, ensure_dir, open_append, write_text
from ...secrets import scrub, scrub_tree
from .. import child, local_eval
from ..base import Plan, Result, no_remote_job
from ..hf.checkpoints import latest_checkpoint, resume_point, step_of
from ..settings import refuse_train_fraction
from ..steps import step_estimate
from . import config as axolotl_config
from .config import IGNORED, ftorch_key, refuse_mapped_passthrough, translate

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir

CHILD = Path(__file__).with_name("child.py")
ADAPTER_FILES = re.compile(r"^(adapter_(config\.json|model\.(safetensors|bin))|tokenizer(_config)?\.json"
                           r"|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|chat_template\.jinja"
                           r"|vocab\.json|merges\.txt)$")


def default_python() -> Path:
    from ...config.compose import find_project
    from ...setup_envs import axolotl_python

    return axolotl_python(find_project().root)


def child_python(cfg: RunConfig) -> Path:
    """provider.python, else $FTORCH_AXOLOTL_PYTHON, else <project>/.venv-axolotl/bin/python."""
    chosen = cfg.provider_as(AxolotlProvider).python or os.environ.get("FTORCH_AXOLOTL_PYTHON")
    return Path(chosen).expanduser() if chosen else default_python()


class AxolotlBackend:
    name = "axolotl"
    weights = "adapter"
    unused_settings = {key: IGNORED[key] for key in ("train.allow_truncation",
                                                     "train.preference.max_completion_length")}

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:

        if cfg.train.is_preference:
            axolotl_config.check_preference(cfg)
            for split in ("train", "validation"):  # pairs Axolotl's loader could not read: refused before the run
                if split in data.splits:
                    axolotl_config.rl_rows(cfg.train.method, data.splits[split])
        p = cfg.provider_as(AxolotlProvider)
        if cfg.train.fused_loss == "on" and not p.liger:
            raise ConfigError(Problem("train.fused_loss", "train.fused_loss=on has no effect with provider=axolotl "
                                      "unless provider.liger=true", "set provider.liger=true (Liger's fused linear "
                                      "cross-entropy), or leave train.fused_loss=auto"))
        refuse_mapped_passthrough(p.axolotl)
        check_model_reference(cfg.model)
        if not cfg.train.is_preference:  # SFT: axolotl.yaml names the user's file
            refuse_train_fraction(cfg, self.name)
        paths = _data_paths(cfg, data.splits, "<run dir>")
        estimates = step_estimate(cfg.train, data.count("train"))
        config = translate(cfg, "<run dir>/checkpoints", paths, total_steps=estimates["total_steps"])
        return Plan(provider=self.name, config=cfg, data=data,
                    inputs={"axolotl_yaml": config, "launch": _launch_command("<python>", "axolotl.yaml", cfg)},
                    estimates=estimates,
                    notes=axolotl_config.notes(cfg))

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return no_remote_job(self.name, run)

    eval_models = staticmethod(local_eval.eval_models)  # ftorch eval: what is scored, loaded or reached
    check_eval_budget = staticmethod(local_eval.check_eval_budget)

    def preflight(self, cfg: RunConfig) -> None:
        python = child_python(cfg)
        if python.is_file() and os.access(python, os.X_OK):
            return
        p = cfg.provider_as(AxolotlProvider)
        if p.python or os.environ.get("FTORCH_AXOLOTL_PYTHON"):
            where = "provider.python" if p.python else "FTORCH_AXOLOTL_PYTHON"
            raise MissingExtra(Problem(where, f"no Python interpreter at {python}",
                                       "point it at the python of an environment with axolotl installed, "
                                       "or remove it to use the one `ftorch setup axolotl` makes"))
        raise MissingExtra(Problem("provider=axolotl", f"the Axolotl environment is missing ({python.parent.parent})",
                                   "set it up once with: ftorch setup axolotl   (a separate venv with torch and "
                                   "axolotl, ~2 min, ~4.3 GB; Axolotl cannot share ftorch's environment)"))

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=None)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=resume_point(run))

    def _train(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        from ..hf import loading

        cfg = plan.config
        self.preflight(cfg)
        python = str(child_python(cfg))
        env = probe(python)
        device = "cuda" if env["cuda"] else "cpu"
        run.append_log(f"axolotl {env['axolotl']}, torch {env['torch']}, {env['gpus']} CUDA device(s)")
        if cfg.train.quantization == "4bit":
            loading.require_cuda_for_4bit(device)
        if cfg.train.num_gpus > max(env["gpus"], 1):
            raise BackendError(Problem("train.num_gpus", f"{cfg.train.num_gpus} GPUs asked for, but the Axolotl "
                                       f"environment sees {env['gpus']}", "lower train.num_gpus"))
        base = model_path(cfg.model)
        assert plan.data is not None  # plan() sets it; training always runs on a checked plan
        if cfg.train.is_preference:  # rewritten for Axolotl's rl loader (the user's files stay as they are)
            paths = axolotl_config.write_rl_data(cfg.train.method, plan.data.splits, run.path)
        else:
            paths = _data_paths(cfg, plan.data.splits, str(run.path))
        config = translate(cfg, str(run.checkpoints), paths, base_model=base, device=device,
                           resume_from=str(resume_from) if resume_from else None,
                           total_steps=step_estimate(cfg.train, plan.data.count("train"))["total_steps"])
        config_path = run.path / "axolotl.yaml"
        write_text(config_path, yaml.safe_dump(scrub_tree(config), sort_keys=False))  # keys come from the env
        run.append_log(f"axolotl config: {config_path}; python: {python}; model: {base}")
        validate(python, config_path, cfg.provider_as(AxolotlProvider).axolotl)
        command = _launch_command(python, str(config_path), cfg, report=True)
        run.append_log("launch: " + " ".join(command))
        start = step_of(resume_from) if resume_from else 0
        ended, tail = stream(command, _child_env(base), run, logging_steps=cfg.train.logging_steps, start_step=start)
        child.raise_failure(ended, where="provider=axolotl", log=run.log, tail=tail)
        return _finish(run, {"axolotl_python": python, "device": device, "axolotl_version": env["axolotl"],
                             "method": cfg.train.method})


def _data_paths(cfg: RunConfig, splits: dict, run_path: str) -> dict[str, str]:
    """The files axolotl.yaml names: the user's chat JSONL (SFT), or the rewritten pairs in the run dir."""
    if cfg.train.is_preference:
        return {split: path for split, path in axolotl_config.rl_paths(run_path).items() if split in splits}
    return {split: str(chat.path.resolve()) for split, chat in splits.items()}


def probe(python: str) -> dict[str, Any]:
    """What the Axolotl environment has: {"cuda", "gpus", "bf16", "torch", "axolotl"} (imports torch only)."""
    try:
        done = subprocess.run([python, str(CHILD), "--probe"], capture_output=True, text=True, timeout=120,
                              env=_quiet_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        done, detail = None, str(exc)
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return json.loads(done.stdout.strip().splitlines()[-1])
    detail = "\n".join(done.stderr.splitlines()[-10:]) if done is not None else detail
    raise BackendError(Problem("provider=axolotl", f"the Axolotl environment at {python} does not work: {detail}",
                               "rebuild it: ftorch setup axolotl --force"))


def validate(python: str, config_path: Path, passthrough: dict[str, Any]) -> None:
    """Axolotl's own schema, in its environment; problems come back under ftorch's key names."""
    try:
        done = subprocess.run([python, str(CHILD), str(config_path)], capture_output=True, text=True, timeout=600,
                              env=_quiet_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(Problem("provider=axolotl", f"cannot run the Axolotl config check: {exc}")) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        detail = json.loads(lines[-1]).get("fatal", "") if lines else "\n".join(done.stderr.splitlines()[-15:])
        raise BackendError(Problem("provider=axolotl", f"the Axolotl config check failed: {detail}",
                                   "rebuild the environment: ftorch setup axolotl --force"))
    report = json.loads(lines[-1])
    problems = [Problem(ftorch_key(e["key"], passthrough),
                        f"{e['message']} (Axolotl key '{e['key'] or '<config>'}' in {config_path.name})")
                for e in report["errors"]]
    for key in report["unknown_keys"]:
        close = report["suggestions"].get(key)
        hint = f"did you mean '{close}'?" if close else "check Axolotl's config reference"
        problems.append(Problem(ftorch_key(key, passthrough), f"Axolotl has no key '{key}'; it would ignore it "
                                "silently", hint))
    if problems:
        raise ConfigError(problems, hint=f"Axolotl's own schema rejected {config_path} before training")


def _launch_command(python: str, config: str, cfg: RunConfig, report: bool = False) -> list[str]:
    """`python -m axolotl.cli.train CONFIG` (through accelerate launch for several GPUs); with `report`, run by
    axolotl/child.py, which leaves the child record of backends/child.py in the run directory."""
    train = ["-m", "axolotl.cli.train", config]
    if report:
        train = [str(CHILD), "--result", child.RESULT, *train]  # the child's cwd is the run directory
    if cfg.train.num_gpus > 1:
        return [python, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.train.num_gpus), *train]
    return [python, *train]


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.setdefault("WANDB_MODE", "disabled")
    return env


def _child_env(base: str) -> dict[str, str]:
    env = _quiet_env()
    if Path(base).is_dir():  # a local model needs no hub; stay offline so nothing is fetched behind our back
        env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _finish(run: RunDir, extra: dict[str, Any]) -> Result:
    """Copy the adapter out of Axolotl's output_dir; metrics from its trainer state (exact steps)."""
    saved = [p for p in run.checkpoints.iterdir() if p.is_file() and ADAPTER_FILES.match(p.name)]
    if not any(p.name == "adapter_config.json" for p in saved):
        raise BackendError(Problem("provider=axolotl", f"Axolotl finished but saved no adapter in {run.checkpoints}",
                                   f"see {run.log}"))
    ensure_dir(run.adapter)  # a symlink planted at adapter/ is refused
    for path in saved:
        copy_file(path, run.adapter / path.name)  # never through a symlink planted inside
    return Result(status="succeeded", metrics=_final_metrics(run),
                  artifacts={"adapter": str(run.adapter), "checkpoints": str(run.checkpoints),
                             "axolotl_config": str(run.path / "axolotl.yaml")},
                  extra=extra)


# --- the child process (backends/child.py starts and stops it): output to console, train.log, metrics.jsonl ---

_LOG_DICT = re.compile(r"^\{'(loss|eval_loss|train_runtime)'.*\}$")


class _Output:
    """Splits the child's bytes into lines: echoed as they come, kept in train.log (a progress bar's last state
    only), and step logs ({'loss': '1.23', ...} as transformers prints them) turned into metrics.jsonl rows."""

    def __init__(self, run: RunDir, log, logging_steps: int, start_step: int) -> None:
        self.run, self.log, self.logging_steps = run, log, logging_steps
        self.step, self.checkpoint = start_step, latest_checkpoint(run.checkpoints)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.tail: deque[str] = deque(maxlen=30)

    def feed(self, chunk: bytes, final: bool = False) -> None:
        """One chunk of output; b"" (or final) is the end of it."""
        final = final or not chunk
        text = self.decoder.decode(chunk, final=final)
        sys.stdout.write(text)
        sys.stdout.flush()
        *lines, self.pending = (self.pending + text).split("\n")
        if final and self.pending:
            lines, self.pending = [*lines, self.pending], ""
        for line in lines:
            states = [s.strip() for s in line.split("\r") if s.strip()]
            for state in states:
                if _LOG_DICT.match(state):
                    self._record(state)
            if states:
                self.log.write(scrub(states[-1]) + "\n")
                self.tail.append(scrub(states[-1]))

    def _record(self, text: str) -> None:
        try:
            logs = {k: _number(v) for k, v in ast.literal_eval(text).items()}
        except (ValueError, SyntaxError, AttributeError):
            return
        if "loss" in logs:
            self.step += self.logging_steps
        extra = {ours: logs[theirs] for ours, theirs in (("tokens", "tokens/total"),
                                                          ("tokens_per_s", "tokens/train_per_sec_per_gpu"))
                 if "loss" in logs and theirs in logs}
        row = metrics_log.from_trainer_logs(self.step, logs, time=time.time(), **extra)
        if row is not None:
            metrics_log.append(self.run.metrics, row)
        checkpoint = latest_checkpoint(self.run.checkpoints)
        if checkpoint != self.checkpoint and checkpoint is not None:
            self.checkpoint = checkpoint
            self.run.update(last_checkpoint_step=step_of(checkpoint))


def stream(command: list[str], env: dict[str, str], run: RunDir, *, logging_steps: int,
           start_step: int) -> tuple[child.Ended, list[str]]:
    """Run `command` in the run dir under backends/child.py's supervision (its stop policy on Ctrl-C or
    SIGTERM); return how it ended and its last lines."""
    with open_append(run.log, buffering=1) as log:  # a symlink planted at train.log is refused
        output = _Output(run, log, logging_steps, start_step)
        ended = child.supervise(command, run, what="axolotl", env=env, cwd=run.path, pump=output.feed)
        return ended, list(output.tail)


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _final_metrics(run: RunDir) -> dict[str, Any]:
    """final_loss, final_eval_loss and global_step: from the last checkpoint's trainer state (exact values)
    where there is one, else from the rows read off the child's output."""
    rows = metrics_log.read(run.metrics)
    checkpoint = latest_checkpoint(run.checkpoints)
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        metrics = metrics_log.final_metrics(state.get("log_history", []), state.get("global_step"))
    else:  # the rows read off the child's output have the same keys as a log history
        metrics = metrics_log.final_metrics(rows, max((r["step"] for r in rows), default=None))
    summary = [r for r in rows if r["kind"] == "summary"]
    if summary:
        metrics.update({k: v for k, v in summary[-1].items() if k.startswith("train_")})
    return metrics
