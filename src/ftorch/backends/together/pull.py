"""The tuned LoRA adapter, downloaded from Together (GET /finetune/download?checkpoint=adapter) into RUN/adapter
and verified before the run counts as a local one: a PEFT LoRA config, its weights, and a load onto the local
base (model.*) that must fit it. `ftorch pull RUN` and provider.download_adapter=true both come here."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ... import together_sdk as api
from ...errors import BackendError, Problem
from ...safe_io import fresh_dir, remove, write_bytes

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...run.rundir import RunDir

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def pull(client, run: RunDir, cfg: RunConfig, job_id: str) -> str:
    """Download, unpack, verify; returns the sha256 of the archive (recorded in run.json)."""
    import hashlib

    with api.api_errors("download the adapter", job_id):
        raw = client.fine_tuning.content(ft_id=job_id, checkpoint="adapter").read()
    digest = hashlib.sha256(raw).hexdigest()
    staging = fresh_dir(run.path / "adapter.download")
    try:
        unpack(raw, staging)
        verify(staging, cfg)
        fresh_dir(run.adapter)
        for path in staging.iterdir():
            write_bytes(run.adapter / path.name, path.read_bytes())
    finally:
        remove(staging)
    run.append_log(f"adapter of job {job_id} downloaded and verified (sha256 {digest[:16]})")
    print(f"adapter downloaded into {run.adapter} and verified against {cfg.model.name}", flush=True)
    return digest


def unpack(raw: bytes, out) -> None:
    """A tar archive (any compression tarfile reads; zstd needs the zstandard package): the files of the folder
    that holds adapter_config.json, as plain files (no links, no paths out)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(_decompress(raw)), mode="r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            configs = [m for m in members if PurePosixPath(m.name).name == "adapter_config.json"]
            if not configs:
                raise BackendError(Problem("adapter download", "the archive holds no adapter_config.json: not a "
                                           "LoRA adapter (a full fine-tune has none)"))
            folder = PurePosixPath(configs[0].name).parent
            for member in members:
                path = PurePosixPath(member.name)
                handle = archive.extractfile(member) if path.parent == folder and ".." not in path.parts else None
                if handle is not None:
                    write_bytes(out / path.name, handle.read())
    except tarfile.TarError:
        raise BackendError(Problem("adapter download", "Together sent something that is not an archive",
                                   "try `ftorch pull RUN` again")) from None


def _decompress(raw: bytes) -> bytes:
    if raw[:4] == b"\x28\xb5\x2f\xfd":  # zstd, as Together compresses checkpoints
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise BackendError(Problem("adapter download", "the archive is zstd-compressed",
                                       "pip install zstandard, then `ftorch pull RUN`")) from None
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    return raw


def verify(folder, cfg: RunConfig) -> None:
    """A LoRA adapter whose weights load onto the local base model (shapes and module names must fit)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise BackendError(Problem("adapter download", f"not a LoRA adapter (peft_type={config.get('peft_type')})"))
    if not any((folder / name).is_file() for name in WEIGHTS):
        raise BackendError(Problem("adapter download", "the adapter has no weights file"))
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ...models import model_path

    base = AutoModelForCausalLM.from_pretrained(model_path(cfg.model))
    try:
        PeftModel.from_pretrained(base, str(folder))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise BackendError(Problem("model.name", f"the downloaded adapter does not fit the local base "
                                   f"{cfg.model.name}: {str(exc)[:300]}",
                                   "set model.* to the same base Together trained (provider.model)")) from None


def pull_run(run: RunDir, cfg: RunConfig) -> str:
    """`ftorch pull RUN`: the adapter of a finished provider=together run."""
    from ...config.providers import TogetherProvider

    record = run.read()
    job_id = record.get("job_id")
    if not job_id or record.get("job_status") != "completed":
        raise BackendError(Problem(str(run.path), "no completed Together job in this run to pull from",
                                   "pull a run whose job completed (ftorch runs ls)"))
    digest = pull(api.make_client(cfg.provider_as(TogetherProvider)), run, cfg, job_id)
    run.update(adapter_sha256=digest)
    return digest
