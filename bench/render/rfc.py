"""What `bench rfc` prints: the RFC's two programs as the RFC reported them and as timed here."""
from __future__ import annotations

from bench.render.document import table


def blocks(results: list[dict]) -> list:
    rows = [[r["program"], "unavailable", "", f"{r['reason']}"] if not r["available"] else
            [r["program"], f"{r['iterations']}", f"{r['rfc_printed_ns']:.1f}", f"{r['true_ns_per_iteration']:.1f}"]
            for r in results]
    doc = [table(("program", "iterations", "RFC ns/syscall", "true ns/syscall"), rows)]
    timed = {r["program"]: r for r in results if r["available"]}
    if len(timed) == 2:
        ratio = (timed["ptrace_vm_exec"]["true_ns_per_iteration"]
                 / timed["process_vm_exec"]["true_ns_per_iteration"])
        doc.append(("p", f"ptrace_vm_exec / process_vm_exec = {ratio:.2f}x (the RFC printed 5.00x)"))
    doc.append(("p", "RFC figure = 1e9 / iterations, as the RFC printed it; for a 5 s loop it is 1/5 of the true cost."))
    return doc
