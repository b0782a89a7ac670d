"""What `bench rfc` prints, through the one document model (bench.render.rfc)."""
from bench.render import rfc
from bench.render.document import to_markdown, to_text

TIMED = [dict(program="process_vm_exec", available=True, iterations=500_000, rfc_printed_ns=2000.0,
              true_ns_per_iteration=10_000.0),
         dict(program="ptrace_vm_exec", available=True, iterations=100_000, rfc_printed_ns=10_000.0,
              true_ns_per_iteration=50_000.0)]


def test_both_programs_timed_give_their_ratio_from_the_true_costs():
    text = to_text(rfc.blocks(TIMED))
    lines = text.splitlines()
    assert lines[0].split() == ["program", "iterations", "RFC", "ns/syscall", "true", "ns/syscall"]
    assert lines[2].split() == ["process_vm_exec", "500000", "2000.0", "10000.0"]
    assert "ptrace_vm_exec / process_vm_exec = 5.00x" in text


def test_an_unavailable_program_says_why_and_gives_no_ratio():
    doc = rfc.blocks([TIMED[0], dict(program="ptrace_vm_exec", available=False, reason="ENOSYS: not patched")])
    text = to_text(doc)
    assert "ENOSYS: not patched" in text and "ptrace_vm_exec / process_vm_exec" not in text
    assert "| ptrace_vm_exec | unavailable |" in to_markdown(doc)
