"""The phases of an interception: which phase each function of a run belongs to.

Kernel functions fall into a phase by the first pattern of KERNEL_PHASES their name matches
(KERNEL_OTHER if none); user code is the tracee's loop, the backend's own code (tracer or
in-process handler), or the libraries (bench.anatomy.counts.attribute decides which).
"""
from __future__ import annotations

import re

#: Kernel functions by phase: the first pattern that matches a function's name wins.
KERNEL_PHASES: list[tuple[str, str]] = [
    # Out-of-line code of the speculation mitigations (the "mitigations" kernel): retpolines, return
    # thunks, untraining sequences.  The RSB filling at context switch is inline (__switch_to_asm).
    ("speculation thunks",
     r"^(__x86_indirect_thunk_|__x86_indirect_its_thunk_|__x86_indirect_call_thunk_|__x86_indirect_jump_thunk_|"
     r"__x86_return_thunk$|its_return_thunk$|its_static_thunk$|retbleed_return_thunk$|call_depth_return_thunk$|"
     r"srso_|entry_untrain_ret$|entry_ibpb$|clear_bhb_loop$)"),
    ("exceptions & interrupts",
     r"^(asm_exc_|exc_|asm_sysvec_|sysvec_|__sysvec_|asm_common_interrupt|common_interrupt|irq|handle_irq|"
     r"__handle_irq|native_irq_return|error_entry|error_return|paranoid_|hrtimer|__hrtimer|tick_|"
     r"update_process_times|sched_tick|run_local_timers|timekeeping|update_wall_time|ktime_get|"
     r"lapic_|native_apic|x2apic|__irq_|handle_edge|handle_fasteoi|do_user_addr_fault|handle_mm_fault|"
     r"__handle_mm_fault|do_page_fault|irqentry_|idtentry|__common_interrupt|raise_softirq|"
     r"__do_softirq|handle_softirqs|do_softirq|irq_exit|irq_enter|account_(user|system|process|idle)_)"),
    ("syscall entry/exit",
     r"^(entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|entry_SYSRET|x64_sys_call|"
     r"syscall_trace_enter|syscall_enter_from_user_mode|"
     r"exit_to_user_mode|arch_exit_to_user_mode|__rseq_handle_notify_resume|rseq_|"
     r"syscall_exit_work|__syscall|int80_|entry_INT80|fpregs_assert|resume_user_mode_work|"
     r"exit_to_user_mode_loop|syscall_trace_exit|arch_syscall_exit_tracehook|swapgs_restore)"),
    ("mm switch",
     r"^(switch_mm|load_new_mm_cr3|choose_new_asid|build_cr3|enter_lazy_tlb|leave_mm|switch_ldt|load_mm_|"
     r"cr4_update|native_write_cr3|__native_read_cr3|flush_tlb|native_flush_tlb|__flush_tlb|"
     r"switch_current_mm|leave_borrowed_mm|use_temporary_mm|unuse_temporary_mm|mmgrab|mmdrop|"
     r"__mmdrop|membarrier_|cond_mitigation|cond_ibpb|l1d_flush|activate_mm|kthread_use_mm|"
     r"mm_access|get_task_mm|mmput)"),
    ("register & user copies",
     r"^(genregs_|getreg|putreg|__regset_get|regset_|copy_regset|ptrace_getregs|ptrace_setregs|"
     r"arch_ptrace_get|fpregs_get|fpregs_set|xfpregs_|xstateregs_|regs_to_sigcontext|"
     r"restore_sigcontext|setup_sigcontext|__get_user|__put_user|get_user|put_user|rep_movs_alternative|"
     r"rep_stos_alternative|_copy_to_user|_copy_from_user|copy_to_user|copy_from_user|copy_struct_from_user|"
     r"check_zeroed_user|__access_ok|force_valid_ss|get_xsave_addr_user|"
     r"__copy_user|copy_user_|clear_user|__clear_user|memcpy|memset|__memcpy|__memset|memmove|"
     r"check_object_size|__check_object_size|__virt_addr_valid|check_stack_object|"
     r"copy_fpstate_to_sigframe|fpu__restore_sig|__fpu_restore_sig|fpregs_mark_activate)"),
    ("getppid & pid lookups",
     r"(^__x64_sys_getppid|^__do_sys_getppid|^pid_|_pid$|_pid_|^find_vpid|find_get_task_by_vpid|"
     r"^find_task_by|^radix_tree|^__radix_tree|^idr_|task_active_pid_ns|^task_tgid|^task_pid)"),
    ("interception (ptrace, seccomp, signals, wait, process_vm_exec)",
     r"(ptrace|seccomp|secure_computing|bpf_|signal|sigqueue|sigpending|sig_|_sig|sigaction|siginfo|"
     r"rt_sigreturn|setup_rt_frame|sigframe|syscall_user_dispatch|process_vm_exec|^report$|wait|"
     r"^do_notify_|task_stopped_code|_blocked$|ucounts|find_notification|single_step|nsec_to_clock_t|"
     r"notify|ioctl|__fget|fdget|fget|fput|class_fd_|anon_inode|eventfd|poll|complete|jobctl|"
     r"task_work|__lock_task_sighand|kill|__send|send_|do_send|dequeue_signal|get_signal|arch_do_signal|"
     r"do_signal|handle_signal|restore_altstack|__save_altstack|sas_ss|fixup_vdso|audit)"),
    ("scheduler & context switch",
     r"(schedule|pick_|_entity|entity_|_fair|load_avg|update_curr|update_rq_clock|update_min_vruntime|"
     r"update_deadline|clear_buddies|update_misfit|is_cpu_allowed|cpus_share_cache|cpu_capacity|"
     r"clear_delayed|task_curr|"
     r"try_to_wake_up|ttwu_|wake_up|__wake_up|context_switch|__switch_to|switch_to|finish_task_switch|"
     r"prepare_task_switch|set_next_|put_prev_|enqueue_|dequeue_task|dequeue_entities|activate_task|"
     r"deactivate_task|check_preempt|resched|^sched_|_sched|cfs_rq|avg_vruntime|vruntime|reweight|"
     r"wait_task_inactive|task_rq_lock|__task_rq_lock|raw_spin_rq|rq_|_rq|select_task_rq|"
     r"sched_clock|native_sched_clock|update_load|hrtick|cpuacct|cgroup|psi_|"
     r"save_fpregs_to_fpstate|os_xrstor|os_xsave|restore_fpregs|fpregs_restore|switch_fpu|fpu__|pkru|"
     r"__rdgsbase_inactive|__wrgsbase_inactive|save_fsgs|x86_fsbase|x86_gsbase|load_seg|"
     r"__update_idle|update_dl|update_curr_dl|dl_|rt_|_rt_|balance_|newidle|idle_balance|"
     r"nohz|kick_|yield|preempt|__cond_resched|_cond_resched|mm_cid|__mm_cid|sched_mm_cid|"
     r"set_task_cpu|migrate_|task_tick|calc_global|rcu_note_context_switch|rcu_qs|finish_lock_switch|"
     r"exec_runtime|^rb_next|^rb_erase|^rb_insert)"),
    ("locking & RCU",
     r"(^_raw_|^__raw_|^do_raw_|^queued_|^native_queued|spin_lock|spin_unlock|spin_trylock|^mutex_|"
     r"^down_|^up_read|^up_write|^rwsem_|^__rcu|^rcu_|_dec_and_lock|^class_raw_spinlock)"),
    ("memory allocation", r"(slab|kmem_cache|kmalloc|kvmalloc|kfree|kvfree|alloc_|_alloc|free_|_free|"
                          r"kzalloc|mempool|percpu|pcpu_|page|zone|folio|pfn|partial|rmqueue|node_state)"),
    ("idle", r"(idle|halt|mwait|cpu_startup_entry|play_dead)"),
]
_KERNEL_PHASE_RES = [(phase, re.compile(pattern)) for phase, pattern in KERNEL_PHASES]
KERNEL_OTHER = "other kernel"
#: The loop's own code (tracee/tracee.c): run by the tracee, or by the borrowing tracer
#: (process_vm_exec); all other code of the driver is the backend's (tracer or in-process handler).
LOOP_FUNCTIONS = {"syscall_loop", "syscall_loop_borrowed", "monotonic_ns"}
USER_LOOP = "user: tracee loop"
USER_BACKEND = "user: tracer / handler"
USER_LIBS = "user: libc, ld.so, vDSO"
#: Every phase, in the plots' stacking order.
PHASES = (USER_LOOP, USER_BACKEND, USER_LIBS, "syscall entry/exit", "getppid & pid lookups",
          "interception (ptrace, seccomp, signals, wait, process_vm_exec)", "register & user copies",
          "scheduler & context switch", "mm switch", "locking & RCU", "memory allocation",
          "exceptions & interrupts", "speculation thunks", "idle", KERNEL_OTHER)


def kernel_phase(function: str) -> str:
    for phase, pattern in _KERNEL_PHASE_RES:
        if pattern.search(function):
            return phase
    return KERNEL_OTHER

