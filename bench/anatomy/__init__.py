"""Instruction-level anatomy of each interception mechanism in the icount guest.

`python -m bench anatomy` (bench.commands.anatomy) boots the patched kernel under TCG with icount
and the project's QEMU plugin, which counts executed instructions per guest program counter
between the tracee's loop markers; the counts become, per backend, instructions and expensive
events per intercepted syscall by function and by phase.  One job a module, in the order of the flow:

    plugin     fetching Debian's qemu-plugin.h and building the plugin (anatomy/vmexec_anatomy.c)
    guest      booting the icount guest with the plugin, and the script it runs there
    phases     which phase of an interception each function belongs to
    counts     parsing the plugin's counts, symbolising them (kallsyms, the driver's ELF), the analysis,
               and reading an anatomy.json back
    model      the host cost model fitted to the anatomy (`anatomy-model`)
    composed   the estimate composed from prices measured on the host (`prices`; the parts are
               measured by bench.measure.prices)

Presentation is bench.render.anatomy's and bench.render.prices's; options and files are
bench.commands.anatomy's and bench.commands.prices's.
"""
