"""What a secret is, and the one scrubber that every artifact, log and console line goes through.

A secret is
- the value of any key named like one (api_key, token, secret, password, authorization...),
- any value that came from the environment for such a key: `${oc.env:SOME_TOKEN}`, the value of any environment
  variable named like a secret (OPENAI_API_KEY, HF_TOKEN...), and the variables that provider.api_key_env /
  eval.openai_api_key_env name,
- anything that looks like a key, wherever it is: sk-..., sk-proj-..., hf_..., ghp_..., glpat-..., sk_live_...,
  JWTs, Bearer ..., and a high-entropy value written beside a secret-like name (`accesskey=...`, "passphrase": ...).

Values met while loading a config are remembered for the life of the process, so a secret set under a secret key
is also scrubbed wherever else it turns up (a job's metadata, an override echoed in a message). A value is scrubbed
by value only where it stands as a whole token, never inside a bigger one, and only if it could be a secret: at
least MIN_LENGTH characters and not a name ftorch needs (a recipe, a path or a file name of the config) - else
redaction would corrupt the records (a recipe name or the artifact paths in run.json). A secret inside a value
ftorch records and needs intact (a model suffix, a data path) is refused at plan time: recorded_value_problems.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

REDACTED = "***REDACTED***"
# A key (or env var) named like a secret: api_key, hf_token, OPENAI_API_KEY, client_secret, password, accesskey,
# passphrase... but not max_tokens / prompt_tokens (counts), author / auth_url (not credentials), nor pad_token /
# eos_token (a tokenizer's special tokens).
SECRET_NAME = re.compile(r"(^|[_.-])(api[_-]?key|apikey|key|token|access[_-]?token|secret|password|passwd|"
                         r"accesskey|secretkey|privatekey|passphrase|jwt|"
                         r"credentials?|auth|authorization|bearer|cookie)$", re.IGNORECASE)
NOT_SECRET_NAME = re.compile(r"(^|[_.-])(pad|eos|bos|unk|sep|cls|mask|start|end|stop|special|chat|additional|"
                             r"sort|cache|run|dedup|primary|group|hash|index)[_-]?(token|key)$", re.IGNORECASE)
# Key-shaped strings, found anywhere in a text. Bearer keeps its word and loses its credential.
_KEY_SHAPES = [
    r"(?<![A-Za-z0-9])sk-(?:proj-|ant-|svcacct-|admin-|live-|test-)?[A-Za-z0-9_\-]{16,}",
    r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{16,}",
    r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{20,}",
    r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{20,}",
    r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])",
    r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{35}",
    r"(?<![A-Za-z0-9])gl(?:pat|ptt|dt|rt|cbt|soat|ft|imt|oas)-[A-Za-z0-9_\-]{20,}",  # GitLab
    # Stripe secret and restricted keys, test mode included (it reads test data); pk_ keys are publishable by design
    r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9]{24,}",
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",  # a JWT, signed or not
]
KEY_SHAPE = re.compile("|".join(_KEY_SHAPES))
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^\s/@:]+:[^\s/@]+@", re.IGNORECASE)  # https://user:token@
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
ENV_INTERP = re.compile(r"\$\{oc\.env:\s*([^,}\s]+)")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `name=value`, `name: value`, "name": "value" in a text: the value goes when the name is secret-like and the
# value high-entropy (see high_entropy)
_NAMED_VALUE = re.compile(r"""(?<![\w-])([A-Za-z_][\w.-]*)(["']?\s*[:=]\s*["']?)([A-Za-z0-9_\-+/=.~]{12,})""")
MIN_LENGTH = 12  # shorter values are never secrets by value (they would mangle text); keyed ones still are redacted
_TOKEN_CHAR = re.compile(r"[\w-]")  # what a whole token is made of: a secret is never cut out of a bigger token
_HARMLESS = {"true", "false", "none", "null", "yes", "no", "on", "off", "auto", "disabled", "enabled", REDACTED}
# Values that flow into records and must stay intact there: a secret inside one is refused at plan time.
RECORDED_KEYS = ("provider.suffix", "model.name", "model.adapter", "data.train", "data.validation", "data.test",
                 "paths.runs", "eval.json_schema", "eval.lm_eval_include_path")
# Values that are names, not secrets: the value, and its file name, are never treated as secrets.
NAME_KEYS = ("model.name", "model.adapter", "data.train", "data.validation", "data.test", "paths.runs",
             "eval.json_schema", "eval.lm_eval_include_path", "provider.prices", "provider.python")

_remembered: set[str] = set()
_remembered_env: set[str] = set()
_names: set[str] = set()  # see note_names
_shown: set[str] = set()  # see show


def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_NAME.search(name)


def looks_like_key(value: Any) -> bool:
    """The whole value is key-shaped (sk-..., hf_..., ghp_..., Bearer ...)."""
    if not isinstance(value, str):
        return False
    value = value.strip()
    return bool(KEY_SHAPE.fullmatch(value) or _BEARER.fullmatch(value))


def high_entropy(value: Any) -> bool:
    """Whether a string could be a generated credential: long, one word, mixed character classes, varied."""
    if not isinstance(value, str):
        return False
    value = value.strip()
    if len(value) < MIN_LENGTH or any(c.isspace() for c in value):
        return False
    if sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]")) < 2:
        return False
    counts = Counter(value).values()
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts) >= 3.0


def remember(value: Any) -> None:
    """From now on, `value` is scrubbed wherever it is written or printed."""
    if isinstance(value, str) and _scrubbable(value):
        _remembered.add(value.strip())


def note_names(resolved: dict, choices: dict | None = None) -> None:
    """The names a config uses - its group choices (the recipe), its paths and their file names - are never
    treated as secrets, even when a secret-named variable holds the same text (MY_API_KEY=quickstart-tiny)."""
    values = [v for v in (choices or {}).values() if isinstance(v, str)]
    for dotted in NAME_KEYS:
        value = _select(resolved, dotted)
        if isinstance(value, str) and value.strip() and not looks_like_key(value):
            values += [value.strip(), Path(value.strip()).name]
    _names.update(v for v in values if v)


def _select(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def remember_env(name: str) -> None:
    """The variable `name` holds a secret (whatever it is called)."""
    if isinstance(name, str) and name:
        _remembered_env.add(name)


def _scrubbable(value: str) -> bool:
    return len(value.strip()) >= MIN_LENGTH and value.strip().lower() not in _HARMLESS


def could_be_secret(value: Any) -> bool:
    """Long enough, and not a name ftorch needs (a recipe, a path, a file name): else never a secret by value."""
    return isinstance(value, str) and _scrubbable(value) and not is_name(value)


def is_name(value: str) -> bool:
    """A recipe's name, or a path or file name of the loaded config: text ftorch needs, never a secret."""
    return value.strip() in _names or value.strip() in _recipe_names()


def _secret_env() -> dict[str, str]:
    """{value: variable} for each secret-named (or named by a *_key_env setting) variable that could be a secret."""
    return {value.strip(): name for name, value in os.environ.items()
            if (name in _remembered_env or secret_name(name)) and could_be_secret(value)}


def known() -> frozenset[str]:
    """Every secret value this process knows of: remembered ones and the environment's."""
    return frozenset({v for v in _remembered if could_be_secret(v)} | set(_secret_env()))


def _recipe_names() -> frozenset[str]:
    """The project's recipe names, for a process that names them without loading a config (resume, eval)."""
    try:
        where = (os.environ.get("FTORCH_ROOT"), os.getcwd())
    except OSError:
        return frozenset()
    return _recipe_names_at(where)


@lru_cache(maxsize=4)
def _recipe_names_at(where: tuple[str | None, str]) -> frozenset[str]:
    from .config.compose import find_project
    from .errors import FtorchError

    try:
        return frozenset(find_project().recipe_names())
    except (FtorchError, OSError):
        return frozenset()


def _whole_token(value: str) -> str:
    """A pattern for `value` standing alone: not preceded or followed by a token character where it has one."""
    head = r"(?<![\w-])" if _TOKEN_CHAR.match(value[0]) else ""
    tail = r"(?![\w-])" if _TOKEN_CHAR.match(value[-1]) else ""
    return f"{head}{re.escape(value)}{tail}"


@lru_cache(maxsize=8)
def _literal_pattern(values: frozenset[str]) -> re.Pattern | None:
    if not values:
        return None
    return re.compile("|".join(_whole_token(v) for v in sorted(values, key=len, reverse=True)))


def _named_value(match: re.Match) -> str:
    name, sep, value = match.groups()
    if value in _shown:
        return match.group(0)
    return f"{name}{sep}{REDACTED}" if names_a_credential(name) and high_entropy(value) else match.group(0)


def show(value: str) -> None:
    """`value` is ftorch's own and printing it is the point (the review page's session token, which the URL that
    `ftorch review` prints must carry): never redacted for the name it stands under. A remembered secret or a key
    shape is still redacted."""
    _shown.add(value)


def names_a_credential(name: str) -> bool:
    """For keys met outside a config (a record, a text): secret-like, but not a bare `key` (a dataset's lookup key,
    an identifier in a model's answer)."""
    return secret_name(name) and name.lower() != "key"


def scrub(text: str, secrets: frozenset[str] | None = None) -> str:
    """`text` with every known secret (or those of `secrets`, known() taken once for a whole tree) and everything
    key-shaped replaced by ***REDACTED***."""
    if not isinstance(text, str) or not text:
        return text
    # key shapes first: a remembered value that is a prefix of a longer key must not leave the key's tail behind
    text = KEY_SHAPE.sub(REDACTED, text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _NAMED_VALUE.sub(_named_value, text)
    pattern = _literal_pattern(known() if secrets is None else secrets)
    return pattern.sub(REDACTED, text) if pattern is not None else text


def is_secret(key: str, value: Any, env_name: str | None = None) -> bool:
    """Whether the value of `key` (that came from ${oc.env:env_name}, if given) must not be written."""
    if value in (None, "", False) or value == REDACTED:
        return False
    if looks_like_key(value):
        return True
    from_secret_env = bool(env_name) and (secret_name(str(env_name)) or env_name in _remembered_env)
    if from_secret_env and not (isinstance(value, str) and is_name(value)):
        return True  # even when short: it goes from its own key (and never from elsewhere, see known)
    if isinstance(value, str) and value.strip() in known():
        return True
    return secret_name(str(key))


def scrub_tree(tree: Any, key: str = "", secrets: frozenset[str] | None = None) -> Any:
    """A JSON/YAML-like tree with secret-keyed values redacted and every string scrubbed (against the secrets
    known when it began)."""
    secrets = known() if secrets is None else secrets
    if isinstance(tree, dict):
        return {k: scrub_tree(v, str(k), secrets) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [scrub_tree(v, key, secrets) for v in tree]
    if key and not isinstance(tree, bool) and isinstance(tree, (str, int, float)) and is_secret(key, tree):
        return REDACTED
    return scrub(tree, secrets) if isinstance(tree, str) else tree


def scrub_text_tree(tree: Any, secrets: frozenset[str] | None = None) -> Any:
    """Like scrub_tree, but by value (known secrets, key shapes, and high-entropy strings under a secret-like key):
    for records whose keys are not config keys (a `tokens` count, or a dataset's `key` field, stays)."""
    secrets = known() if secrets is None else secrets
    if isinstance(tree, dict):
        return {k: REDACTED if names_a_credential(str(k)) and high_entropy(v) else scrub_text_tree(v, secrets)
                for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [scrub_text_tree(v, secrets) for v in tree]
    return scrub(tree, secrets) if isinstance(tree, str) else tree


def redact(resolved: Any, raw: Any = None, key: str = "") -> Any:
    """Replace secrets in a resolved config tree. `raw` is the same tree before interpolation, so a value that
    came from ${oc.env:SOME_TOKEN} is redacted even when its key looks harmless. Redacted values are remembered."""
    if isinstance(resolved, dict):
        raw = raw if isinstance(raw, dict) else {}
        return {k: redact(v, raw.get(k), str(k)) for k, v in resolved.items()}
    if isinstance(resolved, list):
        raw = raw if isinstance(raw, list) and len(raw) == len(resolved) else [None] * len(resolved)
        return [redact(v, r, key) for v, r in zip(resolved, raw)]
    env = ENV_INTERP.search(raw) if isinstance(raw, str) else None
    if not isinstance(resolved, bool) and is_secret(key, resolved, env.group(1) if env else None):
        remember(str(resolved))
        return REDACTED
    return scrub(resolved) if isinstance(resolved, str) else resolved


def remember_config(resolved: Any, raw: Any = None, key: str = "") -> None:
    """Note every secret of a config as it is loaded: secret-keyed values, values from secret env vars, and the
    variables that `*_key_env` / `*_token_env` settings name."""
    if isinstance(resolved, dict):
        raw = raw if isinstance(raw, dict) else {}
        for k, v in resolved.items():
            name = str(k)
            if name.endswith("_env") and secret_name(name[: -len("_env")]) and isinstance(v, str):
                if ENV_NAME.match(v):
                    remember_env(v)
                else:
                    remember(v)  # a key pasted where a name belongs: see key_env_problems
            remember_config(v, raw.get(k), name)
    elif isinstance(resolved, list):
        raw = raw if isinstance(raw, list) and len(raw) == len(resolved) else [None] * len(resolved)
        for v, r in zip(resolved, raw):
            remember_config(v, r, key)
    else:
        redact(resolved, raw, key)  # remembers what it redacts


def key_env_problems(resolved: dict) -> list[tuple[str, str, str]]:
    """(dotted key, message, hint) for each `*_key_env` setting holding something other than a variable's name.
    The value is never part of the message."""
    problems = []
    for dotted in ("provider.api_key_env", "eval.openai_api_key_env"):
        section, _, leaf = dotted.partition(".")
        value = (resolved.get(section) or {}).get(leaf) if isinstance(resolved.get(section), dict) else None
        if isinstance(value, str) and (looks_like_key(value) or not ENV_NAME.match(value)):
            remember(value)
            problems.append((dotted, "looks like a key, not the name of an environment variable",
                             f"put the key in a variable (export OPENAI_API_KEY=...) and give its name: "
                             f"{dotted}=OPENAI_API_KEY; ftorch never stores the key itself"))
    return problems


def recorded_value_problems(resolved: dict, choices: dict | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, message, hint) for each value ftorch records and needs intact (the model suffix that becomes
    the model id, paths) that holds a secret: redacting it there would break the record. Notes the config's names
    first (note_names). The secret itself is never part of the message."""
    note_names(resolved, choices)
    sources = {**dict(_secret_settings(resolved)), **_secret_env()}  # {secret: where it is from}
    hint = ("ftorch writes this value into its records (run.json, the model id, artifact paths), where the secret "
            "would have to be redacted and the record broken: use a value that is not a secret here")
    problems = []
    for dotted in RECORDED_KEYS:
        value = _select(resolved, dotted)
        if not isinstance(value, str):
            continue
        source = next((f"the value of {name}" for secret, name in sources.items() if secret in value), None)
        if source is None and KEY_SHAPE.search(value):
            source = "something shaped like a key"
        if source is not None:
            remember(value)  # refused, never recorded: the whole value goes from the message that echoes it
            problems.append((dotted, f"contains {source}", hint))
    return problems


def _secret_settings(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(value, dotted key) for each secret-keyed string setting that could be a secret."""
    if isinstance(tree, dict):
        return [pair for k, v in tree.items() for pair in _secret_settings(v, f"{prefix}{k}.")]
    key = prefix.rstrip(".")
    if isinstance(tree, str) and secret_name(key.rsplit(".", 1)[-1]) and could_be_secret(tree):
        return [(tree.strip(), key)]
    return []


def redact_override(item: str) -> str:
    """One command-line override, `key=value`, with a secret value redacted."""
    key, sep, value = item.partition("=")
    if not sep:
        return scrub(item)
    leaf = key.lstrip("+~").rsplit(".", 1)[-1]
    if ENV_INTERP.fullmatch(value.strip()) or value.strip().startswith("${"):
        return scrub(item)  # an interpolation names a variable; it holds no value
    if is_secret(leaf, value):
        remember(value)
        return f"{key}={REDACTED}"
    return f"{key}={scrub(value)}"


_ITEM_START = re.compile(r",(?=[+~]{0,2}[A-Za-z_][\w.\-/@]*=)")


def redact_override_line(text: str) -> str:
    """Hydra's override_dirname: overrides joined with commas."""
    return ",".join(redact_override(item) for item in _ITEM_START.split(text))


def redact_hydra_dir(hydra_dir: Path) -> None:
    """Hydra saves the command-line overrides verbatim (overrides.yaml, hydra.yaml's overrides.task and
    job.override_dirname) and the raw config; a secret passed there must not stay on disk."""
    import yaml

    paths = [hydra_dir / name for name in ("overrides.yaml", "hydra.yaml", "config.yaml")]
    paths += [p for p in sorted(hydra_dir.glob("*.yaml")) if p not in paths]
    multirun = hydra_dir.parent.parent / "multirun.yaml"  # a sweep's own copy, beside its trials
    if multirun.is_file() and hydra_dir.parent.parent.name:
        paths.append(multirun)
    for path in paths:
        if not path.is_file():
            continue
        try:
            tree = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue
        clean = _redact_hydra_tree(tree)
        if clean != tree:
            _write_text_atomic(path, yaml.safe_dump(clean, sort_keys=False))


def _redact_hydra_tree(tree: Any, key: str = "") -> Any:
    if isinstance(tree, dict):
        return {k: _redact_hydra_tree(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_override(v) if isinstance(v, str) and "=" in v else _redact_hydra_tree(v, key) for v in tree]
    if not isinstance(tree, str):
        return tree
    if key == "override_dirname":
        return redact_override_line(tree)
    if "${" in tree:
        return scrub(tree)  # an interpolation, not a value (but scrub any literal beside it)
    return REDACTED if is_secret(key, tree) else scrub(tree)


def _write_text_atomic(path: Path, text: str) -> None:
    from .safe_io import write_text

    write_text(path, text)  # a temporary file made exclusively, renamed over: a planted symlink is never followed


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's message (and its traceback) before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class ScrubbingStream(io.TextIOBase):
    """A text stream that scrubs what is written to it; everything else is the wrapped stream's."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # type: ignore[override]  # typeshed has a plain attribute; here a read-only view
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self):  # type: ignore[override]  # typeshed has a plain attribute; here a read-only view
        return getattr(self._stream, "errors", None)

    @property
    def buffer(self):
        return self._stream.buffer

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_console() -> None:
    """Scrub everything this process prints (sys.stdout and sys.stderr, including tracebacks)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ScrubbingStream):
            setattr(sys, name, ScrubbingStream(stream))


def remember_argv(argv: list[str]) -> None:
    """Secrets given on the command line (`+provider.metadata.token=...`), known before any config is composed."""
    for item in argv:
        key, sep, value = item.partition("=")
        if sep and not value.strip().startswith("${"):
            leaf = key.lstrip("+~").rsplit(".", 1)[-1]
            pasted_into_env_key = (leaf.endswith("_env") and secret_name(leaf[: -len("_env")])
                                   and not ENV_NAME.match(value))
            if pasted_into_env_key or is_secret(leaf, value):
                remember(value)
