/* SPDX-License-Identifier: MIT */
/*
 * process_vm_exec() as the kernel port in kernel/patches defines it, shared
 * by the vmexec backend and the RFC benchmark replica (rfc/).
 */
#ifndef PROCESS_VM_EXEC_H
#define PROCESS_VM_EXEC_H

#include <stdio.h>
#include <string.h>

/*
 * The port's x86_64 number: the first free one on 6.12.  From 6.13 on, 463
 * is setxattrat, so never call it unless process_vm_exec_present() says so.
 */
#define NR_process_vm_exec 463

/* The sign that the running kernel is the port: its syscall's symbol. */
#define PROCESS_VM_EXEC_KSYM "__x64_sys_process_vm_exec"

/* 1 if /proc/kallsyms lists the port's syscall, 0 if not, -1 if unreadable. */
static inline int process_vm_exec_present(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[512];
	int found = 0;

	if (!f)
		return -1;
	/* Lines are "ADDRESS TYPE NAME[\t[MODULE]]". */
	while (!found && fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, ' ');

		found = name && !strcmp(name + 1, PROCESS_VM_EXEC_KSYM "\n");
	}
	fclose(f);
	return found;
}

#endif
