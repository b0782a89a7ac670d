"""Host and twin, event by event (issue 26, item 2): the side-by-side table of `bench events` documents,
as blocks of bench.render.document (for the report) and as Markdown (`bench events-table`).

A mechanism whose counts differ between the machines is named under the table, with the measured
detail that differs (which syscalls, TLB flush reasons, MSRs, signals, switch states): the explanation
is read off the counts, never fitted.
"""
from __future__ import annotations

from bench.measure.events import COLUMNS, OTHER_SWITCHES, PREEMPTED
from bench.render import document

HEADERS = {"switches": "switches", "wakeups": "wake-ups", "signals_generated": "signals generated",
           "signals_delivered": "signals delivered", "syscalls": "syscall entries", "tlb_flushes": "TLB flushes",
           "msr_writes": "MSR writes", "fpu_reloads": "FPU reloads", PREEMPTED: "of them away runnable",
           OTHER_SWITCHES: "switches with other tasks (load)"}
#: Smallest difference per call between the machines that counts as one (preemptions by other tasks add
#: a few hundredths on a busy machine); a larger spread of either machine's runs widens it.
TOLERANCE = 0.1
SYSCALLS = {"0": "read", "1": "write", "15": "rt_sigreturn", "16": "ioctl", "24": "sched_yield", "39": "getpid",
            "61": "wait4", "62": "kill", "101": "ptrace", "110": "getppid", "186": "gettid", "202": "futex",
            "231": "exit_group", "234": "tgkill", "317": "seccomp", "1023": "(none: ENOSYS)"}
MSRS = {"48": "IA32_SPEC_CTRL", "49": "IA32_PRED_CMD (IBPB)", "10b": "IA32_FLUSH_CMD (L1D flush)",
        "c0000100": "FS_BASE", "c0000101": "GS_BASE", "c0000102": "KERNEL_GS_BASE", "6e0": "TSC_DEADLINE",
        "d90": "IA32_PKRS"}
DETAILS = {"syscalls": "syscall", "tlb_reasons": "TLB flush", "msrs": "MSR", "signals": "signal",
           "switch_prev_state": "switch, previous task state"}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}".replace("-0.00", "0.00")


def _median(doc: dict, case: str, key: str) -> float | None:
    c = doc["cases"].get(case, {})
    if "per_call" not in c:
        return None
    s = c["per_call"].get(key)
    return s["median"] if s else 0.0


def _spread(doc: dict, case: str, key: str) -> float:
    s = doc["cases"].get(case, {}).get("per_call", {}).get(key)
    return (s["max"] - s["min"]) if s else 0.0


def _label(key: str) -> str:
    """'syscalls[61]' -> 'syscall wait4 (61)', 'msrs[48]' -> 'MSR 0x48 IA32_SPEC_CTRL'."""
    kind, _, inner = key.partition("[")
    inner = inner.rstrip("]")
    if kind == "syscalls":
        return f"syscall {SYSCALLS.get(inner, '#' + inner)} ({inner})"
    if kind == "msrs":
        name = MSRS.get(inner.lower(), "x2APIC register" if inner.lower().startswith("8") and len(inner) == 3 else "")
        return f"MSR 0x{inner} {name}".rstrip()
    return f"{DETAILS.get(kind, kind)} {inner}"


def differences(host: dict, twin: dict, case: str) -> list[str]:
    """The columns of one case whose host and twin counts differ, each with the detail keys that differ."""
    out = []
    for col in COLUMNS:
        h, t = _median(host, case, col), _median(twin, case, col)
        if h is None or t is None:
            continue
        tol = max(TOLERANCE, _spread(host, case, col), _spread(twin, case, col))
        if abs(h - t) <= tol:
            continue
        keys = sorted({k for d in (host, twin) for k in d["cases"][case]["per_call"] if "[" in k})
        detail = [f"{_label(k)} {_fmt(_median(host, case, k))} host, {_fmt(_median(twin, case, k))} twin"
                  for k in keys if abs((_median(host, case, k) or 0) - (_median(twin, case, k) or 0)) > TOLERANCE
                  and _belongs(k, col)]
        out.append(f"{HEADERS[col]} {_fmt(h)} host, {_fmt(t)} twin" + (f" ({'; '.join(detail)})" if detail else ""))
    return out


def _belongs(detail_key: str, column: str) -> bool:
    kind = detail_key.partition("[")[0]
    return {"syscalls": "syscalls", "tlb_reasons": "tlb_flushes", "msrs": "msr_writes", "signals": "signals_generated",
            "switch_prev_state": "switches"}.get(kind) == column or (kind == "switch_prev_state" and column in
                                                                     ("wakeups", PREEMPTED))


def _why(host: dict, twin: dict, case: str) -> str:
    """A sentence read off the counts where a pattern names the cause: wake-ups traded for preemptions is
    the scheduler's wake-up preemption deciding differently (one side runnable, not asleep, when it
    switches away, so nobody has to wake it)."""
    dw = (_median(twin, case, "wakeups") or 0) - (_median(host, case, "wakeups") or 0)
    dp = (_median(twin, case, PREEMPTED) or 0) - (_median(host, case, PREEMPTED) or 0)
    if abs(dw) > TOLERANCE and abs(dw + dp) <= TOLERANCE:
        more = "twin" if dw > 0 else "host"
        return (f" The {more} wakes a sleeping task {abs(dw):.2f} times more per call where the other preempts a "
                "runnable one instead: the scheduler's wake-up preemption decides differently, with the same "
                "switches.")
    return ""


def _not_counted(case: dict) -> str:
    if case.get("errors"):
        return "failed: " + case["errors"][0]
    return f"unavailable: {case['reason']}" if case.get("reason") else "not run"


def _machine_line(role: str, doc: dict) -> str:
    m = doc["machine"]
    extra = ""
    if m.get("role", "host") == "host" and m.get("host_config_sha256"):
        extra = f", kernel config sha256 `{m['host_config_sha256'][:16]}`"
    if m.get("twin_config_sha256"):
        cpu = f" (`-cpu {m['qemu_cpu']}`)" if m.get("qemu_cpu") else ""
        extra = (f", twin config sha256 `{m['twin_config_sha256'][:16]}`, booted under {m.get('accelerator', '?')}{cpu} on "
                 f"{m.get('host_cpu_model', '?')} (host kernel {m.get('host_kernel', '?')})")
    return (f"**{role}**: {m.get('cpu_model', '?')}, kernel {m.get('kernel', '?')}{extra}; N = "
            f"{doc['calls'][0]:,} and {doc['calls'][1]:,} calls, {doc['runs']} runs, load {doc['load_before']} "
            f"before, {doc['load_after']} after")


def blocks(host: dict, twin: dict | None = None) -> list:
    """The per-call counts of every case, host beside twin ("host / twin") when a twin document is given;
    then every case whose counts differ, named, with what differs."""
    docs = [("host", host)] + ([("twin", twin)] if twin else [])
    names = [n for n in host["cases"]] + [n for n in (twin or {"cases": {}})["cases"] if n not in host["cases"]]
    rows = []
    for name in names:
        cells = []
        for col in COLUMNS:
            values = [_median(d, name, col) for _, d in docs]
            cells.append(" / ".join(_fmt(v) for v in values))
        if all(c == " / ".join("–" for _ in docs) for c in cells):
            why = "; ".join(f"{role}: {_not_counted(d['cases'].get(name, {}))[:90]}" for role, d in docs)
            cells = [f"not counted ({why})"] + [""] * (len(COLUMNS) - 1)
        rows.append([f"`{name}`", *cells])
    out = [("p", " ".join(_machine_line(role, d) + "." for role, d in docs)),
           ("p", "Events per intercepted call (per iteration for the price parts and stop variants): the count "
                 "at N2 calls minus the count at N1, over N2 − N1, median of the runs" +
                 (", host / twin." if twin else ".") + " Counted by tracefs tracepoints for the driver's "
                 "processes only, tracer and tracee pinned to one CPU."),
           document.table(["case", *(HEADERS[c] for c in COLUMNS)], rows)]
    if twin and host["machine"].get("host_config_sha256") and twin["machine"].get("host_config_sha256") and \
            host["machine"]["host_config_sha256"] != twin["machine"]["host_config_sha256"]:
        out.append(("p", "**The twin was not built from this host's kernel configuration** (sha256 "
                         f"`{twin['machine']['host_config_sha256'][:16]}` against the host's "
                         f"`{host['machine']['host_config_sha256'][:16]}`): it is no twin of this host."))
    if twin:
        named = []
        for name in names:
            if name in host["cases"] and name in twin["cases"]:
                diff = differences(host, twin, name)
                if diff:
                    named.append(f"`{name}`: " + "; ".join(diff) + "." + _why(host, twin, name))
        out.append(("p", f"Cases whose counts differ between host and twin by more than {TOLERANCE} per call "
                         "(or the runs' spread):" if named else
                         f"Every case counted on both machines agrees within {TOLERANCE} per call."))
        if named:
            out.append(("list", named))
    return out


def stop_blocks(doc: dict) -> list:
    """The ptrace stop's parts priced (bench.measure.stops), with the event check of each pair."""
    rows = []
    for part, p in doc["parts"].items():
        ev = ", ".join(f"{HEADERS[k]} {v:+.2f}" for k, v in p["events"]["measured"].items() if abs(v) > TOLERANCE)
        rows.append([part, f"{p['ns']:.1f}", f"{p['ci95'][0]:.1f}–{p['ci95'][1]:.1f}",
                     f"`{p['minuend']}` − `{p['subtrahend']}`", ev or "none", "yes" if p["events"]["ok"] else "NO",
                     p["what"]])
    m = doc["machine"]
    return [("p", f"**{m.get('cpu_model', '?')}**, kernel {m.get('kernel', '?')}, load {doc['load_before']} before, "
                  f"{doc['load_after']} after. A ptrace stop's parts, each the difference of two interleaved loops ({doc['runs']} rounds of "
                  f"{doc['iterations']:,} iterations), 95% interval of the median difference by bootstrap:"),
            document.table(["part", "ns", "95% CI", "loops", "events it adds per iteration", "checked", "what"],
                           rows)]


def to_markdown(host: dict, twin: dict | None = None, stops: dict | None = None) -> str:
    doc = [("h", 1, "Host and twin, event by event"), *blocks(host, twin)]
    if stops:
        doc += [("h", 2, "What a ptrace stop costs, measured"), *stop_blocks(stops)]
    return document.to_markdown(doc)
