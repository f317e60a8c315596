"""The thread policy: how many threads torch (and the libraries beside it) may run, decided once per process and
put in the environment before torch is first imported, so a busy machine is shared rather than fought over.

The number is the physical cores this process may use: the CPU affinity mask (os.sched_getaffinity), capped by the
cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us), counting hyperthread siblings once
(/sys/devices/system/cpu/cpuN/topology/thread_siblings_list). FTORCH_THREADS=N overrides it (FTORCH_THREADS=off
leaves every library at its own defaults); an OMP_NUM_THREADS set in the environment is respected as it is.

OpenMP waits passively (OMP_WAIT_POLICY=PASSIVE; torch's Linux wheels ship GNU OpenMP, libgomp, whose spinning
GOMP_SPINCOUNT=0 also stops; KMP_BLOCKTIME=0 does the same for Intel's OpenMP in builds that use it): an idle
worker sleeps instead of spinning against another job. Tokenizers' own threads are off (TOKENIZERS_PARALLELISM),
torch's inter-op pool at most 2; ftorch's data loaders run in the main process (no workers). Variables the user
set are never changed.

No heavy import here: the CLI calls `apply()` before any command imports torch; child processes inherit the
environment, and FTORCH_THREAD_POLICY tells a child ftorch that its OMP_NUM_THREADS came from the policy."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, Problem

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_SYSFS = Path("/sys/devices/system/cpu")
PROC_CGROUP = Path("/proc/self/cgroup")
MARK = "FTORCH_THREAD_POLICY"  # "THREADS SOURCE", set by apply(): a child knows the policy's variables for its own
INTEROP_MAX = 2


@dataclass(frozen=True)
class Cores:
    """What this process may use: logical CPUs in its affinity mask, the physical cores among them (None when the
    topology cannot be read), and the cgroup quota in CPUs (None: no quota)."""

    logical: int
    physical: int | None
    quota: float | None

    @property
    def usable(self) -> int:
        """Physical cores when known (logical otherwise), capped by the quota rounded down (at least 1)."""
        count = self.physical or self.logical
        if self.quota is not None:
            count = min(count, max(1, math.floor(self.quota)))
        return max(1, count)

    def describe(self) -> str:
        quota = "no cgroup quota" if self.quota is None else f"cgroup quota {self.quota:g} CPUs"
        physical = "physical cores unknown" if self.physical is None else f"{self.physical} physical"
        return f"{self.logical} CPUs in the affinity mask, {physical}, {quota}"


@dataclass(frozen=True)
class ThreadPolicy:
    """The decision, as run.json records it: `threads` for torch's intra-op pool, and where the number came from."""

    threads: int
    source: str  # FTORCH_THREADS | OMP_NUM_THREADS | inherited | detected (+ share of test workers)
    detail: str
    interop: int
    set_env: dict[str, str] = field(default_factory=dict)  # what apply() put in the environment
    kept_env: dict[str, str] = field(default_factory=dict)  # what the user had set, left as it was

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int], sysfs: Path = CPU_SYSFS) -> int | None:
    """Hyperthread siblings counted once, among `cpus` only; None if any CPU's topology cannot be read."""
    groups: set[frozenset[int]] = set()
    for cpu in cpus:
        try:
            text = (sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
            groups.add(frozenset(parse_cpu_list(text)))
        except (OSError, ValueError):
            return None
    return len(groups) or None


def parse_cpu_list(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0, 1, 2, 3, 8, 10, 11} (the kernel's list format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota, in CPUs, on this process's cgroup and its ancestors (v2 cpu.max, or v1
    cpu.cfs_quota_us/cpu.cfs_period_us); None when there is none or it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        names = controllers.split(",") if controllers else []
        if not controllers:  # v2: "0::/path"
            quotas += _walk(root, path, _v2_quota)
        elif "cpu" in names:  # v1: mounted as cpu, or cpu,cpuacct
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += _walk(mount, path, _v1_quota)
                    break
    if not lines:  # no /proc/self/cgroup: the container's own root, either version
        quotas += [q for q in (_v2_quota(root), _v1_quota(root / "cpu")) if q is not None]
    return min(quotas) if quotas else None


def _walk(mount: Path, path: str, read) -> list[float]:
    """The quota read at the cgroup's folder and each ancestor up to the mount (a folder absent in this mount
    namespace, as in a container that shows its own cgroup as the root, is skipped)."""
    found = []
    parts = [p for p in path.strip().split("/") if p]
    for depth in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:depth])
        if folder.is_dir() and (quota := read(folder)) is not None:
            found.append(quota)
    return found


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):  # absent, or not "QUOTA PERIOD"
        return None
    if quota == "max":
        return None
    return _ratio(quota, period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def detect(sysfs: Path = CPU_SYSFS, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> Cores:
    cpus = affinity()
    return Cores(len(cpus), physical_cores(cpus, sysfs), cgroup_quota(root, proc_cgroup))


OFF = "off"


def _positive(environ: MutableMapping[str, str], key: str) -> int | None:
    value = environ.get(key, "").strip()
    if not value or value.lower() in ("auto", OFF):
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(Problem(key, f"{key}={value!r} is not a number of threads",
                                  f"set {key} to a whole number of at least 1, 'auto' or 'off', or unset it"))
    return number


def _omp_threads(value: str) -> int | None:
    """The outer level of an OMP_NUM_THREADS (OpenMP allows a list per nesting level, '4,2'); None if unreadable,
    which OpenMP itself ignores: the detected number then stands beside it."""
    try:
        number = int(value.split(",")[0])
    except ValueError:
        return None
    return number if number >= 1 else None


def decide(environ: MutableMapping[str, str] | None = None, *, cores: Cores | None = None,
           workers: int = 1) -> ThreadPolicy:
    """The policy for a process with this environment; `workers` processes sharing the cores (test workers) each
    get their share. Precedence: FTORCH_THREADS, then a user's OMP_NUM_THREADS, then the cores detected."""
    environ = os.environ if environ is None else environ
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    mark = environ.get(MARK, "")
    if environ.get("FTORCH_THREADS", "").strip().lower() == OFF:
        cores = cores or detect()
        return ThreadPolicy(cores.logical, OFF, "FTORCH_THREADS=off: the libraries' own defaults", cores.logical)
    if (own := _positive(environ, "FTORCH_THREADS")) is not None:
        threads, source, detail = own, "FTORCH_THREADS", f"FTORCH_THREADS={own}"
    elif omp and mark.split(" ", 1)[0] == omp:  # set by a parent ftorch's policy: same decision, same source
        threads, source, detail = int(omp), "inherited", mark.partition(" ")[2] or "from the parent process"
    elif (outer := _omp_threads(omp)) is not None:
        threads, source, detail = outer, "OMP_NUM_THREADS", f"OMP_NUM_THREADS={omp} set in the environment (respected)"
    else:
        cores = cores or detect()
        share = max(1, cores.usable // max(1, workers))
        threads, source = share, "detected"
        detail = cores.describe() + (f"; {cores.usable} shared by {workers} workers" if workers > 1 else "")
    return ThreadPolicy(threads, source, detail, min(INTEROP_MAX, threads))


def wanted_env(policy: ThreadPolicy) -> dict[str, str]:
    """The variables the policy sets (each only where the environment does not already have one)."""
    n = str(policy.threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0",
            "KMP_BLOCKTIME": "0", "TOKENIZERS_PARALLELISM": "false"}


_applied: ThreadPolicy | None = None


def apply(environ: MutableMapping[str, str] | None = None, *, workers: int = 1) -> ThreadPolicy:
    """Decide and put the policy in `environ` (os.environ by default) before torch is imported: children started
    afterwards inherit it. A variable already set is kept and recorded as the user's. Idempotent."""
    global _applied
    environ = os.environ if environ is None else environ
    policy = decide(environ, workers=workers)
    if policy.source == OFF:
        if environ is os.environ:
            _applied = policy
        return policy
    set_env, kept = {}, {}
    for key, value in wanted_env(policy).items():
        if key in environ:
            if environ[key] != value or policy.source != "inherited":
                kept[key] = environ[key]
        else:
            environ[key] = set_env[key] = value
    environ[MARK] = f"{environ.get('OMP_NUM_THREADS', policy.threads)} {policy.detail}"
    policy = ThreadPolicy(policy.threads, policy.source, policy.detail, policy.interop, set_env, kept)
    if environ is os.environ:
        _applied = policy
    return policy


def current() -> ThreadPolicy:
    """The policy this process applied (decided from the environment when apply() was not called)."""
    return _applied or decide()


def configure_torch(policy: ThreadPolicy | None = None) -> ThreadPolicy:
    """Make an imported torch follow the policy (for a torch imported before apply(), or FTORCH_THREADS beside
    a different OMP_NUM_THREADS). The inter-op pool can only be sized before its first use: left as it is then."""
    import torch

    policy = policy or current()
    if policy.source == OFF:
        return policy
    if torch.get_num_threads() != policy.threads:
        torch.set_num_threads(policy.threads)
    if torch.get_num_interop_threads() > policy.interop:
        try:
            torch.set_num_interop_threads(policy.interop)
        except RuntimeError:  # already used: torch refuses to resize it
            pass
    return policy


def describe_torch(policy: ThreadPolicy | None = None) -> str:
    """One line for train.log: the threads torch runs with now, and the policy behind them."""
    import torch

    policy = policy or current()
    waits = os.environ.get("OMP_WAIT_POLICY", "default")
    return (f"threads: torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}, "
            f"OpenMP wait policy {waits} (policy: {policy.threads} from {policy.source}: {policy.detail})")
