"""The results store: the one module that names, writes, finds, classifies and reads result files.

A results directory holds three kinds of file, told apart by content, never
by name (KINDS):

* ``host``: a pyperf suite written by `bench run` on the machine's own kernel;
* ``guest``: the same, written inside `bench vm run` (it carries the tag vm=1);
* ``rfc``: an RFC-replica record written by `bench rfc` (``"kind": "rfc-replica"``).

Every metadata key the harness writes into a suite is named once, in
bench.metadata.METADATA, with what it means (as pyperf's own METADATA registry does).
A case is one value, Case: its name in a suite is Case.encode(), read back
(from older files that lack some case metadata) by Case.parse, here only.
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import gzip
import itertools
import json
import math
import os
import pathlib
import secrets
import socket
from collections.abc import Callable

from bench.errors import BenchError, UsageError, writable_directory
# The registry of metadata keys and the suite check, re-exported: every reader of results finds them here.
from bench.metadata import (LEGACY_TAGS, METADATA, METADATA_VALUES, RESERVED_TAGS, TAG_PREFIX,  # noqa: F401
                            check_suite, facts)

KINDS = ("host", "guest", "rfc")
#: The one environment variable for results: a directory (where results go, and where the newest are
#: read from, when no directory is named; else ./results), or result files, colon-separated or one
#: *.json (what the notebooks read instead of the newest).
RESULTS_ENV = "VMEXEC_RESULTS"
#: Its older spelling for a directory, still read when VMEXEC_RESULTS names none.
DIRECTORY_ENV = "VMEXEC_RESULTS_DIR"
RFC_KIND = "rfc-replica"

#: The METADATA keys that record a Case, and its fields they hold.
CASE_METADATA = {"vmexec_backend": "backend", "vmexec_pin": "pin", "vmexec_pages": "pages",
                 "vmexec_parallel": "parallel"}
#: The pinning of a backend that runs in the caller's own process: it has no placement of its own.
IN_PROCESS = "in-process"


@dataclasses.dataclass(frozen=True)
class Case:
    """One case measured: a backend at a pinning and a scaling point (pages written, pairs at once)."""
    backend: str
    pin: str                    # same | cross | none | in-process
    pages: int = 0
    parallel: int = 1

    def encode(self) -> str:
        """Its benchmark name in a suite: BACKEND:pin=PIN[:pages=K][:parallel=M] (no default point written)."""
        parts = [self.backend, f"pin={self.pin}"]
        if self.pages:
            parts.append(f"pages={self.pages}")
        if self.parallel > 1:
            parts.append(f"parallel={self.parallel}")
        return ":".join(parts)

    @classmethod
    def parse(cls, text: str) -> Case:
        """The case an encode()d name names; ValueError saying what is wrong with any other text."""
        backend, *named = str(text).split(":")
        fields = dict(part.partition("=")[::2] for part in named)
        if not backend or "pin" not in fields or len(fields) != len(named) \
                or not fields.keys() <= {"pin", "pages", "parallel"} or not all(fields.values()):
            raise ValueError(f"{text!r} is not a case name (BACKEND:pin=PIN[:pages=K][:parallel=M])")
        try:
            case = cls(backend, fields["pin"], int(fields.get("pages", 0)), int(fields.get("parallel", 1)))
        except ValueError:
            raise ValueError(f"{text!r} is not a case name: pages and parallel are whole numbers") from None
        if case.encode() != text:
            raise ValueError(f"{text!r} is not a case name as written (that case is {case.encode()!r})")
        return case

    def metadata(self) -> dict[str, str | int]:
        """Its keys of METADATA (CASE_METADATA), as a suite records them beside its name."""
        return {key: getattr(self, field) for key, field in CASE_METADATA.items()}

    @classmethod
    def recorded(cls, name: str, metadata: dict) -> Case:
        """The case a suite's benchmark measured, from its metadata; older files record only part of
        it (no pages or parallel), and the rest is read from its name."""
        fields = {field: metadata[key] for key, field in CASE_METADATA.items() if key in metadata}
        if len(fields) < len(CASE_METADATA):
            fields = {**dataclasses.asdict(cls.parse(name)), **fields}
        return cls(fields["backend"], str(fields["pin"]), int(fields["pages"]), int(fields["parallel"]))


def _names_files(value: str) -> bool:
    return ":" in value or value.endswith(".json")


def directory(path: pathlib.Path | None = None) -> pathlib.Path:
    """The results directory: the one named, else $VMEXEC_RESULTS when it names a directory, else
    $VMEXEC_RESULTS_DIR, else ./results."""
    value = os.environ.get(RESULTS_ENV, "")
    named = value if value and not _names_files(value) else os.environ.get(DIRECTORY_ENV)
    return pathlib.Path(path or named or pathlib.Path.cwd() / "results")


def named_files() -> list[pathlib.Path]:
    """The result files $VMEXEC_RESULTS names (colon-separated, or one *.json); [] when it names a directory."""
    value = os.environ.get(RESULTS_ENV, "")
    return [pathlib.Path(p) for p in value.split(":") if p] if _names_files(value) else []


def new_path(prefix: str, where: pathlib.Path | None = None) -> pathlib.Path:
    """A new file name in the results directory: PREFIX-YYYYmmdd-HHMMSS.json (PREFIX: host name by default)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return directory(where) / f"{prefix or socket.gethostname()}-{stamp}.json"


def check_new(path: pathlib.Path, *, create: bool = False) -> pathlib.Path:
    """path, if a result may be published there: it does not exist and its directory is
    writable (made first if create, as for the default directory)."""
    if path.exists():
        raise UsageError(f"{path} exists: results are never overwritten; choose another --output")
    writable_directory(path.parent, create=create)
    return path


def output(requested: pathlib.Path | None, prefix: str, where: pathlib.Path | None = None) -> pathlib.Path:
    """Where a new result goes: the file asked for (its directory must exist), else a new name
    PREFIX-TIME.json in the results directory, made if needed; checked by check_new()."""
    if requested is not None:
        return check_new(requested)
    return check_new(new_path(prefix, where).resolve(), create=True)


def split(paths) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """(pyperf suites, RFC replicas) among the given result files, by content."""
    suites, rfc = [], []
    for path in map(pathlib.Path, paths):
        (rfc if classify(read_json(path)) == "rfc" else suites).append(path)
    return suites, rfc


#: Staged files end so (hidden, and named after their writer's process).
STAGED_SUFFIX = ".staged.tmp"


def staged_name(final: pathlib.Path) -> pathlib.Path:
    """A hidden name beside final that no other writer uses, even one publishing to the same final."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}{STAGED_SUFFIX}")


def publish(final: pathlib.Path, write: Callable[[pathlib.Path], None], *, exists: str = "fail") -> pathlib.Path:
    """write(staged) beside final, then link it into place; returns where it went.

    A reader never sees half a file, and nothing is ever replaced, not even a
    file that appeared at final while this ran (a concurrent run's): a hard
    link fails where os.replace would overwrite.  If final exists by then,
    exists says what happens: "fail" (UsageError), "rename" (the first free
    NAME-2.json, NAME-3.json, ...: for names the harness chose) or "replace"
    (atomically: for a file the caller means to replace, a baseline).
    """
    staged = staged_name(final)
    try:
        try:
            write(staged)
        except OSError as e:        # a full disk, most often: one line, and nothing half-written stays
            raise BenchError(f"could not write {final}: {e.strerror or e}") from None
        if exists == "replace":
            os.replace(staged, final)
            return final
        for n in itertools.count(1):
            candidate = final if n == 1 else final.with_name(f"{final.stem}-{n}{final.suffix}")
            try:
                _link_new(staged, candidate)
                return candidate
            except FileExistsError:
                if exists != "rename":
                    raise UsageError(f"{final} appeared while this ran: results are never overwritten; "
                                     "choose another --output") from None
    finally:
        staged.unlink(missing_ok=True)


def _link_new(staged: pathlib.Path, final: pathlib.Path) -> None:
    """Make staged's content appear at final at once, or FileExistsError if final exists."""
    try:
        os.link(staged, final)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise       # FileExistsError among them
        # A file system without hard links: claim the name exclusively, then fill it atomically.
        os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(staged, final)


def read_json(path: str | pathlib.Path) -> dict:
    """The JSON object in a results file, or a one-line UsageError saying what is wrong with it."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such results file")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    try:
        with (gzip.open(path) if path.suffix == ".gz" else path.open("rb")) as f:
            raw = f.read(MAX_BYTES + 1)     # bounded: a small .gz may hold gigabytes
        text = raw.decode()
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise UsageError(f"{path}: unreadable: {e}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: larger than {MAX_BYTES >> 20} MiB{' decompressed' if path.suffix == '.gz' else ''}: "
                         "no results file is")
    if not text.strip():
        raise UsageError(f"{path}: empty file")
    try:
        data = json.loads(text)
    except RecursionError:
        raise UsageError(f"{path}: JSON nested deeper than any results file") from None
    except json.JSONDecodeError as e:
        # A decoder error in the last token (a number or word cut short) means the writer stopped half-way.
        cut = not any(c in text.rstrip()[e.pos:] for c in ',:[]{}" \t\n\r') or e.pos >= len(text.rstrip()) - 1
        if cut and text.lstrip()[:1] in ("{", "["):
            raise UsageError(f"{path}: truncated JSON (ends at byte {len(raw)})") from None
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: JSON {type(data).__name__}, not a results object")
    if _depth(data) > MAX_DEPTH:
        raise UsageError(f"{path}: JSON nested deeper than any results file ({MAX_DEPTH} levels)")
    return data


#: Bounds of a results file: a full run's suite is about half a megabyte, and nested five levels deep.
MAX_BYTES = 64 << 20
MAX_DEPTH = 16


def _depth(data, limit: int = MAX_DEPTH) -> int:
    """How deeply data nests (stops counting past limit), without recursion."""
    level, deepest = [data], 0
    while level and deepest <= limit:
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)
                 if isinstance(v, (dict, list))]
        deepest += 1
    return deepest


def classify(data: dict) -> str:
    """host, guest or rfc (KINDS), from a results file's content."""
    if data.get("kind") == RFC_KIND:
        return "rfc"
    return "guest" if any(facts(case_metadata(data, b))["vm"] for b in _benchmarks(data)) else "host"


def case_metadata(data: dict, bench: dict) -> dict:
    """One benchmark's metadata as pyperf reads it: the suite's, the benchmark's and its first run's
    (pyperf stores what its runs share one level up); {} where the file is not shaped like a suite."""
    runs = bench.get("runs")
    levels = [data.get("metadata"), bench.get("metadata"),
              runs[0].get("metadata") if isinstance(runs, list) and runs and isinstance(runs[0], dict) else None]
    return {k: v for m in levels if isinstance(m, dict) for k, v in m.items()}


def _benchmarks(data: dict) -> list[dict]:
    """A suite's benchmark objects, or none where the file is not shaped like one (loading says why)."""
    found = data.get("benchmarks")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def recorded_start(data: dict) -> str:
    """When the run started (ISO 8601), as recorded in the file; "" when it recorded nothing."""
    if classify(data) == "rfc":
        return str(data.get("started", ""))
    runs = [r for b in _benchmarks(data) if isinstance(b.get("runs"), list) for r in b["runs"] if isinstance(r, dict)]
    metas = [data.get("metadata"), *(r.get("metadata") for r in runs)]
    return min((str(m["date"]) for m in metas if isinstance(m, dict) and "date" in m), default="")


def newest(where: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The newest host run, guest run and RFC replica in the results directory, by recorded start (the guest
    run: the newest made on the newest host run's machine, where one was)."""
    where = directory(where)
    return newest_among(sorted(p for p in where.glob("*.json") if p.is_file()), where)


def _machine(data: dict, keys: tuple[str, str]) -> tuple[str, str]:
    """Two metadata values of a pyperf suite (the suite's common metadata, else its first benchmark's)."""
    meta = {**(next(iter(_benchmarks(data)), {}) or {}).get("metadata", {}), **(data.get("metadata") or {})}
    return str(meta.get(keys[0]) or ""), str(meta.get(keys[1]) or "")


def newest_among(paths, where: pathlib.Path) -> list[pathlib.Path]:
    """newest() among the given files only (where: the directory named if there are none).  Results of two
    machines may lie side by side: the guest run taken is the newest made on the host run's machine (its
    recorded host CPU model and kernel), where any was, so that the two are never of different machines."""
    found: dict[str, tuple[tuple[str, str], pathlib.Path]] = {}
    guests = []
    for path in paths:
        try:
            data = read_json(path)
        except UsageError:
            continue        # not a result: the directory may hold other files
        kind, when = classify(data), (recorded_start(data), path.name)
        if kind == "guest":
            guests.append((when, path, _machine(data, ("vmexec_host_cpu_model", "vmexec_host_kernel"))))
        if kind not in found or when > found[kind][0]:
            found[kind] = (when, path)
    if not {"host", "guest"} & found.keys():
        raise UsageError(f"no results in {where}: run `python -m bench run` first, or name the files")
    if "host" in found:
        machine = _machine(read_json(found["host"][1]), ("vmexec_cpu_model", "vmexec_kernel"))
        same = [(when, path) for when, path, m in guests if m == machine]
        if same:
            found["guest"] = max(same)
    return [found[k][1] for k in KINDS if k in found]


def run_ids(paths: list[pathlib.Path]) -> list[str]:
    """File stems; a stem seen twice is qualified by its directory so run ids stay unique."""
    stems = [p.name.removesuffix(".gz").removesuffix(".json") for p in paths]
    return [f"{p.parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]


#: The numbers of an RFC-replica program entry (bench.measure.rfc writes them): finite and >= 0.
RFC_NUMBERS = ("iterations", "seconds", "rfc_printed_ns", "true_ns_per_iteration")


def load_rfc(path) -> dict:
    """An RFC-replica file (written by `bench rfc`), validated, with its run id."""
    path = pathlib.Path(path)
    data = read_json(path)
    if classify(data) != "rfc" or not isinstance(data.get("programs"), list):
        raise UsageError(f"{path}: not an RFC-replica file (kind {data.get('kind')!r})")
    for prog in data["programs"]:
        if not isinstance(prog, dict) or "program" not in prog or "available" not in prog:
            raise UsageError(f"{path}: malformed program entry {prog!r:.60}")
        for key in RFC_NUMBERS:
            value = prog.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise UsageError(f"{path}: program {prog['program']}: {key} {value!r} is not a finite number")
    return {"run_id": path.stem, **data}


#: A run is busy when more threads were runnable, or the 1-minute load average was higher, than the run
#: could use CPUs (pyperf records both with every worker's values; cases of one pair only, since
#: M pairs at once are M times as many runnable threads by design), in at least BUSY_SHARE of the runs
#: (a moment's spike in one worker run in a thousand says nothing of the run).
BUSY_KEYS = ("runnable_threads", "load_avg_1min")
BUSY_SHARE = 0.1


def busy_runs(path: str | pathlib.Path) -> tuple[int, int, float, int]:
    """(busy worker runs, worker runs, the highest load seen, CPUs) of a pyperf suite (see BUSY_KEYS)."""
    data = check_suite(path, read_json(path))
    common = data.get("metadata", {})
    first = next(iter(_benchmarks(data)), {}).get("metadata", {})
    recorded = _recorded_busy({**common, **first})
    if recorded:
        return recorded
    busy = total = 0
    worst, cpus = 0.0, 0
    for bench in _benchmarks(data):
        shared = {**common, **bench.get("metadata", {})}
        for run in bench.get("runs", []):
            meta = {**shared, **run.get("metadata", {})}
            if "values" not in run or str(meta.get("vmexec_parallel", "1")) != "1":
                continue        # a calibration run, or a throughput case
            try:
                cpus = int(meta.get("vmexec_cpus") or meta.get("cpu_count") or 0)
            except (TypeError, ValueError):
                cpus = 0
            loads = [float(meta[k]) for k in BUSY_KEYS if isinstance(meta.get(k), (int, float))]
            if not cpus or not loads:
                continue
            total += 1
            worst = max(worst, *loads)
            busy += max(loads) > cpus
    return busy, total, worst, cpus


def _recorded_busy(metadata: dict) -> tuple[int, int, float, int] | None:
    """busy_runs() as the run recorded it in its vmexec_busy metadata; None where it recorded none."""
    try:
        b = json.loads(metadata["vmexec_busy"])
        return int(b["busy"]), int(b["runs"]), float(b["worst"]), int(b["cpus"])
    except (KeyError, TypeError, ValueError):
        return None


def busy_metadata(path: str | pathlib.Path) -> str:
    """The vmexec_busy value of a suite: its busy_runs() as JSON, for the run to record."""
    busy, total, worst, cpus = busy_runs(path)
    return json.dumps({"busy": busy, "runs": total, "worst": worst, "cpus": cpus}, sort_keys=True)


def busy_warning(paths) -> str | None:
    """One line saying which runs were measured on a busy host (see BUSY_KEYS), or None."""
    notes = []
    for path in paths:
        try:
            if classify(read_json(path)) == "rfc":
                continue
            busy, total, worst, cpus = busy_runs(path)
        except (BenchError, OSError, ValueError):
            continue        # the command itself says what is wrong with the file
        if busy and busy >= BUSY_SHARE * total:
            notes.append(f"{pathlib.Path(path).name}: {busy} of {total} worker runs saw up to {worst:g} "
                         f"runnable threads or load on {cpus} CPUs")
    if not notes:
        return None
    return ("warning: the host was busy while measuring (" + "; ".join(notes)
            + "): other work shared the CPUs, so the times may be inflated and noisier; rerun on an idle host")


def warn_if_busy(paths, stream=None) -> str | None:
    """busy_warning(paths), printed to stderr if there is one; returned."""
    import sys

    warning = busy_warning(paths)
    if warning:
        print(warning, file=stream or sys.stderr)
    return warning
