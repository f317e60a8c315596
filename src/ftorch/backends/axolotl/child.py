"""Check Axolotl configs with Axolotl's own schema; run by the Axolotl environment's python, never imported.

    python child.py CONFIG.yaml [CONFIG.yaml ...]
    python child.py --probe      # {"cuda", "gpus", "bf16", "torch", "axolotl"}: what this environment has
    python child.py --result PATH -m axolotl.cli.train CONFIG.yaml   # train (see `train` below)

Prints one JSON object per config on stdout (everything Axolotl prints goes to stderr):
    {"path", "ok", "errors": [{"key", "message"}], "unknown_keys": [...], "suggestions": {key: close_match}}
`errors` come from `validate_config` (pydantic: bad types, bad values, cross-field rules); `unknown_keys` are keys
Axolotl would silently drop (its models do not forbid extras), found by comparing with the models' fields.
Exit code 0 when every config was checked (valid or not), 1 when Axolotl could not be imported.

This file must not import ftorch or Hydra: it runs in an environment that has neither (Axolotl's antlr pin
breaks Hydra, so the two never share one).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import sys
import types
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# This file sits beside ftorch's backends/axolotl/backend.py: its folder must not shadow the real `axolotl` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv == ["--probe"]:
        print(json.dumps(probe()), flush=True)
        return 0
    if argv[0] == "--result":
        return train(argv[1], argv[2:])
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    with contextlib.redirect_stdout(sys.stderr):  # banners and warnings must not mix with the JSON
        try:
            import yaml
            from axolotl.utils.config import prepare_plugins, validate_config
            from axolotl.utils.dict import DictDefault
        except Exception as exc:  # noqa: BLE001 - any import failure means a broken environment
            print(json.dumps({"ok": False, "fatal": f"cannot import Axolotl: {type(exc).__name__}: {exc}"}),
                  file=sys.__stdout__, flush=True)
            return 1
        results = [check(path, yaml, prepare_plugins, validate_config, DictDefault) for path in argv]
    for result in results:
        print(json.dumps(result, default=str), flush=True)
    return 0


def train(result_path: str, command: list[str]) -> int:
    """`-m MODULE ARGS...` run as `python -m` would, and how it ended written to `result_path` as ftorch's
    training children all report it (ftorch/backends/child.py; this file cannot import ftorch):
    {"status": "succeeded"} exit 0, {"status": "interrupted"} exit 130 (Ctrl-C, or SIGTERM: the stop policy's
    second signal), {"status": "failed", "error": {...}} exit 1. Under accelerate launch every rank runs this,
    and rank 0 alone writes."""
    import runpy
    import signal
    import traceback

    if len(command) < 2 or command[0] != "-m":
        print("usage: child.py --result PATH -m MODULE [ARGS...]", file=sys.stderr)
        return 2
    module = command[1]

    # Axolotl's train installs its own SIGINT handler, which saves the model and exits 0: a stopped run must not
    # pass for a finished one, so every SIGINT/SIGTERM handler installed from here on notes the signal first.
    stopped: list[int] = []
    install = signal.signal

    def noting(signum: int, handler: Any) -> Any:
        if signum in (signal.SIGINT, signal.SIGTERM) and callable(handler):
            inner = handler

            def handler(sig, frame):  # noqa: ANN001
                stopped.append(sig)
                return inner(sig, frame)
        return install(signum, handler)

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt()

    signal.signal = noting  # type: ignore[assignment]
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = [module, *command[2:]]
    status, code, error = "succeeded", 0, None
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except KeyboardInterrupt:
        status, code = "interrupted", 130
    except SystemExit as exc:  # fire's exit on a bad command line, or the trainer's own sys.exit
        if exc.code not in (0, None):
            status, code = "failed", exc.code if isinstance(exc.code, int) else 1
            error = f"{module} exited with code {exc.code}"
    except BaseException as exc:  # noqa: BLE001 - any failure inside Axolotl ends the run: say which
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        status, code, error = "failed", 1, f"axolotl train failed: {type(exc).__name__}: {first}"
    if stopped and status != "failed":
        status, code, error = "interrupted", 130, None
    if os.environ.get("RANK", "0") == "0":
        record: dict[str, Any] = {"status": status}
        if error is not None:
            record["error"] = {"type": "BackendError", "hint": None,
                               "problems": [{"where": "provider=axolotl", "message": error, "hint": None}]}
        _write_atomic(result_path, record)
    return code


def _write_atomic(path: str, record: dict[str, Any]) -> None:
    """A temporary file made exclusively beside `path` (mkstemp: O_EXCL), renamed over it: a symlink planted at
    either name is replaced or refused, never written through (ftorch's safe_io, which this file cannot import)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def probe() -> dict[str, Any]:
    """The device and versions, without importing Axolotl (a few seconds less than a config check)."""
    from importlib import metadata

    import torch

    cuda = torch.cuda.is_available()
    return {"cuda": cuda, "gpus": torch.cuda.device_count() if cuda else 0,
            "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "torch": torch.__version__,
            "axolotl": metadata.version("axolotl")}


def check(path: str, yaml: Any, prepare_plugins: Any, validate_config: Any, dict_default: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"path": path, "ok": False, "errors": [], "unknown_keys": [], "suggestions": {}}
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except (OSError, ValueError) as exc:
        result["errors"].append({"key": "", "message": f"cannot read {path}: {exc}"})
        return result
    if not isinstance(raw, dict):
        result["errors"].append({"key": "", "message": "the config is not a mapping of keys to values"})
        return result
    cfg = dict_default(copy.deepcopy(raw))
    try:
        if cfg.get("plugins"):
            prepare_plugins(cfg)  # a plugin adds its own keys (liger_*) to the schema
        # Axolotl builds the dataset entries before its model: check them first, so an error names its entry
        result["errors"] = _dataset_errors(raw)
        if not result["errors"]:
            validate_config(cfg, capabilities=None, env_capabilities=None)
    except Exception as exc:  # noqa: BLE001 - report whatever Axolotl raised, as data
        result["errors"] = _errors(exc)
    result["unknown_keys"] = unknown_keys(raw, [_input_model(bool(raw.get("plugins")))], result["suggestions"],
                                          top=True)
    result["ok"] = not result["errors"] and not result["unknown_keys"]
    return result


def _dataset_errors(raw: dict) -> list[dict[str, str]]:
    """SFT dataset entries checked one by one (datasets.0.train_on_eos: ...)."""
    from axolotl.utils.schemas.datasets import SFTDataset

    if raw.get("rl"):
        return []
    found = []
    for field in ("datasets", "test_datasets"):
        entries = raw.get(field)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and entry.get("type") != "_synthetic":
                try:
                    SFTDataset(**entry)
                except Exception as exc:  # noqa: BLE001
                    found += [{**e, "key": f"{field}.{index}.{e['key']}".rstrip(".")} for e in _errors(exc)]
    return found


def _errors(exc: Exception) -> list[dict[str, str]]:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        found = []
        for error in exc.errors(include_url=False):
            parts = [str(p) for p in error.get("loc", ()) if isinstance(p, int) or _FIELD_NAME.match(str(p))]
            message = str(error.get("msg", "invalid"))
            found.append({"key": ".".join(parts), "message": message.removeprefix("Value error, ")})
        return found
    return [{"key": "", "message": f"{type(exc).__name__}: {exc}"}]


def _input_model(with_plugins: bool) -> type[BaseModel]:
    """AxolotlInputConfig, merged with the registered plugins' argument models when the config has plugins."""
    from axolotl.utils.schemas.config import AxolotlInputConfig

    if with_plugins:
        from axolotl.integrations.config import merge_input_args

        return merge_input_args()[1]
    return AxolotlInputConfig


def unknown_keys(data: dict, models: list[type[BaseModel]], suggestions: dict[str, str], prefix: str = "",
                 top: bool = False) -> list[str]:
    """Keys of `data` that none of `models` declares (by name or alias), recursing into nested models;
    a close spelling among the declared ones goes into `suggestions`."""
    if not top and any(m.model_config.get("extra") == "allow" for m in models):
        return []
    fields = {}
    for model in models:
        for name, declared in model.model_fields.items():
            for spelling in (name, declared.alias, declared.validation_alias):
                if isinstance(spelling, str):
                    fields[spelling] = declared
    found: list[str] = []
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            found.append(f"{prefix}{key}")
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.75)
            if close:
                suggestions[f"{prefix}{key}"] = close[0]
            continue
        nested = _models_in(info.annotation)
        if not nested:
            continue
        if isinstance(value, dict):
            found += unknown_keys(value, nested, suggestions, f"{prefix}{key}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    found += unknown_keys(item, nested, suggestions, f"{prefix}{key}.{index}.")
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type: Optional[X], list[X | Y], Annotated[...]."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return []
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
