/* SPDX-License-Identifier: MIT */
/*
 * vmexec-anatomy: a QEMU TCG plugin (QEMU 7.2 API, version 1) that counts the
 * guest's executed instructions per program counter, on every vCPU, only
 * between the tracee's loop markers (LOOP_MARK_BEGIN/LOOP_MARK_END in
 * tracee/tracee.h), and classifies each instruction by its bytes into the
 * classes whose hardware cost is far above one cycle.
 *
 * Arguments: out=FILE (required; appended to).
 *
 * How it counts: every translated instruction gets an inline 64-bit add
 * (no helper call) on a counter shared by all translations of the same code
 * (program counter + bytes).  Executing a marker runs a callback that
 * snapshots every counter (BEGIN) or writes every counter's growth since the
 * snapshot (END): one "window" per loop.  The 7.2 API cannot read registers
 * and has no interrupt/exception callback, so markers are matched by their
 * bytes at translation time, and exceptions/interrupts are counted later
 * (bench/anatomy/) from the executions of the kernel's entry stubs.
 *
 * Output (text, one window per loop):
 *   window N begin_pc=0x.. end_pc=0x.. begin_vcpu=V end_vcpu=V insns=T
 *   PC_HEX COUNT CLASSES BYTES_HEX [STARTS]  (one line per instruction executed;
 *                                         STARTS for REP string ops: how many of the
 *                                         COUNT executions began a new instruction,
 *                                         the rest being its further iterations)
 *   class NAME COUNT                      (totals per class)
 *   end N
 * and "exit windows=N records=R" when QEMU exits.
 *
 * Assumes icount (-icount shift=0), under which TCG runs all vCPUs in one
 * thread, so the plain inline adds and the snapshots do not race.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VMEXEC_ANATOMY_CLASSIFY_MAIN
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;
#endif

/* Instruction classes, one bit each (names in class_names, same order). */
enum {
	C_CR3_WRITE = 1 << 0,	/* mov %reg, %cr3 */
	C_CR_WRITE = 1 << 1,	/* mov to another control or debug register */
	C_WRMSR = 1 << 2,
	C_RDMSR = 1 << 3,
	C_SWAPGS = 1 << 4,
	C_SYSCALL = 1 << 5,
	C_SYSRET = 1 << 6,
	C_IRET = 1 << 7,
	C_XSAVE = 1 << 8,	/* xsave, xsaveopt, xsavec, xsaves (and 64) */
	C_XRSTOR = 1 << 9,	/* xrstor, xrstors (and 64) */
	C_SERIALIZING = 1 << 10,	/* architecturally serialising (Intel SDM 9.3) */
	C_FENCE = 1 << 11,	/* lfence, mfence, sfence */
	C_TLB_FLUSH = 1 << 12,	/* invlpg, invpcid */
	C_HLT = 1 << 13,
	C_REP_STRING = 1 << 14,	/* rep/repe/repne string op: TCG runs (and icount and this
				 * plugin count) every iteration as one instruction */
	C_NCLASSES = 15
};
static const char *const class_names[C_NCLASSES] = {
	"cr3_write", "cr_write", "wrmsr", "rdmsr", "swapgs", "syscall", "sysret", "iret",
	"xsave", "xrstor", "serializing", "fence", "tlb_flush", "hlt", "rep_string",
};

static const uint8_t mark_begin[8] = { 0x0f, 0x1f, 0x84, 0x00, 'V', 'M', 'X', 'B' };
static const uint8_t mark_end[8] = { 0x0f, 0x1f, 0x84, 0x00, 'V', 'M', 'X', 'E' };

#define MAX_BYTES 16

struct rec {
	uint64_t count;		/* executions since boot (inline add) */
	uint64_t base;		/* count at the window's BEGIN */
	uint64_t starts;	/* REP string ops: executions that began an instruction */
	uint64_t starts_base;
	uint64_t pc;
	uint32_t classes;
	uint8_t size;
	uint8_t bytes[MAX_BYTES];
};

/* Records live in chunks that never move (the inline adds point into them). */
#define CHUNK 65536
static struct rec **chunks;
static size_t n_chunks, n_recs;

/* Open-addressing hash table of record pointers, keyed by pc + bytes. */
static struct rec **table;
static size_t table_size;	/* a power of two */

/*
 * Every instruction also adds one to seq, so a REP string op can tell a new
 * instruction from its next iteration: TCG runs each iteration as one more
 * execution of the same instruction, with nothing in between.
 */
static uint64_t seq, last_rep_seq;
static const struct rec *last_rep;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;
static long windows;
static int in_window;
static uint64_t begin_pc;
static unsigned begin_vcpu;

/* x86-64: the class of one instruction, from its bytes. */
static uint32_t classify(const uint8_t *b, size_t n)
{
	size_t i = 0;
	int p66 = 0, pf3 = 0, pf2 = 0, rex_w = 0;

	for (; i < n; i++) {	/* legacy prefixes, then REX */
		uint8_t c = b[i];

		if (c == 0x66)
			p66 = 1;
		else if (c == 0xf3)
			pf3 = 1;
		else if (c == 0xf2)
			pf2 = 1;
		else if (c == 0xf0 || c == 0x67 || c == 0x2e || c == 0x36 ||
			 c == 0x3e || c == 0x26 || c == 0x64 || c == 0x65)
			;
		else
			break;
	}
	if (i < n && (b[i] & 0xf0) == 0x40) {
		rex_w = (b[i] & 0x08) != 0;
		i++;
	}
	(void)rex_w;
	if (i >= n)
		return 0;
	if (b[i] == 0xcf)
		return C_IRET | C_SERIALIZING;
	if (b[i] == 0xf4)
		return C_HLT;
	if ((pf3 || pf2) && b[i] >= 0xa4 && b[i] <= 0xaf && b[i] != 0xa8 && b[i] != 0xa9)
		return C_REP_STRING;	/* movs, cmps, stos, lods, scas (a8/a9: test) */
	if (b[i] != 0x0f || i + 1 >= n)
		return 0;

	uint8_t op = b[i + 1];
	int has_modrm = i + 2 < n;
	uint8_t modrm = has_modrm ? b[i + 2] : 0;
	int mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;

	switch (op) {
	case 0x05:
		return C_SYSCALL;
	case 0x07:
		return C_SYSRET;
	case 0x30:
		return C_WRMSR | C_SERIALIZING;
	case 0x32:
		return C_RDMSR;
	case 0xa2:		/* cpuid */
	case 0x08:		/* invd */
	case 0x09:		/* wbinvd */
	case 0xaa:		/* rsm */
		return C_SERIALIZING;
	case 0x22:		/* mov to CRn */
		if (!has_modrm)
			return 0;
		return (reg == 3 ? C_CR3_WRITE : C_CR_WRITE) | C_SERIALIZING;
	case 0x23:		/* mov to DRn */
		return C_CR_WRITE | C_SERIALIZING;
	case 0x00:		/* lldt /2, ltr /3 */
		if (has_modrm && (reg == 2 || reg == 3))
			return C_SERIALIZING;
		return 0;
	case 0x01:
		if (!has_modrm)
			return 0;
		if (modrm == 0xf8)
			return C_SWAPGS;
		if (modrm == 0xe8)	/* serialize */
			return C_SERIALIZING;
		if (mod != 3 && (reg == 2 || reg == 3))	/* lgdt, lidt */
			return C_SERIALIZING;
		if (mod != 3 && reg == 7)	/* invlpg */
			return C_TLB_FLUSH | C_SERIALIZING;
		return 0;
	case 0xae:
		if (!has_modrm)
			return 0;
		if (mod == 3) {
			if (pf3)	/* rd/wr fs/gs base */
				return 0;
			if (reg == 5 || reg == 6 || reg == 7)	/* lfence, mfence, sfence */
				return C_FENCE;
			return 0;
		}
		if (reg == 4)
			return C_XSAVE;
		if (reg == 5)
			return C_XRSTOR;
		if (reg == 6 && !p66)	/* xsaveopt (66: clwb) */
			return C_XSAVE;
		return 0;
	case 0xc7:
		if (!has_modrm || mod == 3)
			return 0;
		if (reg == 3)
			return C_XRSTOR;	/* xrstors */
		if (reg == 4 || reg == 5)
			return C_XSAVE;	/* xsavec, xsaves */
		return 0;
	case 0x38:		/* 66 0f 38 82: invpcid */
		if (p66 && has_modrm && b[i + 2] == 0x82)
			return C_TLB_FLUSH | C_SERIALIZING;
		return 0;
	}
	(void)rm;
	return 0;
}

#ifdef VMEXEC_ANATOMY_CLASSIFY_MAIN
/*
 * The classifier alone, for tests (no QEMU header needed):
 *   cc -DVMEXEC_ANATOMY_CLASSIFY_MAIN vmexec_anatomy.c; one hex instruction a line in,
 *   its class bits (hex) out.
 */
int main(void)
{
	char line[256];

	while (fgets(line, sizeof(line), stdin)) {
		uint8_t b[MAX_BYTES];
		size_t n = 0;
		unsigned v;

		for (char *s = line; n < MAX_BYTES && sscanf(s, "%2x", &v) == 1; s += 2)
			b[n++] = (uint8_t)v;
		printf("%x\n", classify(b, n));
	}
	return 0;
}
#else
static uint64_t hash_key(uint64_t pc, const uint8_t *bytes, size_t size)
{
	uint64_t h = pc * 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < size; i++)
		h = (h ^ bytes[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static void table_insert(struct rec *r)
{
	size_t mask = table_size - 1;
	size_t i = hash_key(r->pc, r->bytes, r->size) & mask;

	while (table[i])
		i = (i + 1) & mask;
	table[i] = r;
}

static struct rec *lookup(uint64_t pc, const uint8_t *bytes, size_t size)
{
	size_t mask = table_size - 1;
	size_t i = hash_key(pc, bytes, size) & mask;

	for (; table[i]; i = (i + 1) & mask) {
		struct rec *r = table[i];

		if (r->pc == pc && r->size == size && !memcmp(r->bytes, bytes, size))
			return r;
	}
	if ((n_recs + 1) * 2 > table_size) {	/* grow: keep the load under 1/2 */
		struct rec **old = table;
		size_t old_size = table_size;

		table_size *= 2;
		table = calloc(table_size, sizeof(*table));
		if (!table)
			abort();
		for (size_t j = 0; j < old_size; j++)
			if (old[j])
				table_insert(old[j]);
		free(old);
	}
	if (n_recs == n_chunks * CHUNK) {
		chunks = realloc(chunks, (n_chunks + 1) * sizeof(*chunks));
		if (!chunks || !(chunks[n_chunks] = calloc(CHUNK, sizeof(struct rec))))
			abort();
		n_chunks++;
	}
	struct rec *r = &chunks[n_recs / CHUNK][n_recs % CHUNK];

	n_recs++;
	r->pc = pc;
	r->size = size;
	memcpy(r->bytes, bytes, size);
	r->classes = classify(bytes, size);
	table_insert(r);
	return r;
}

#define FOR_EACH_REC(r) \
	for (size_t _k = 0; _k < n_recs; _k++) \
		for (struct rec *r = &chunks[_k / CHUNK][_k % CHUNK]; r; r = NULL)

static void on_begin(unsigned int vcpu, void *udata)
{
	struct rec *marker = udata;

	pthread_mutex_lock(&lock);
	if (in_window)
		fprintf(out, "# BEGIN again at 0x%" PRIx64 " on vCPU %u: window restarted\n",
			marker->pc, vcpu);
	FOR_EACH_REC(r) {
		r->base = r->count;
		r->starts_base = r->starts;
	}
	in_window = 1;
	begin_pc = marker->pc;
	begin_vcpu = vcpu;
	pthread_mutex_unlock(&lock);
}

static void on_end(unsigned int vcpu, void *udata)
{
	struct rec *marker = udata;
	uint64_t total = 0, per_class[C_NCLASSES] = { 0 };

	pthread_mutex_lock(&lock);
	if (!in_window) {
		fprintf(out, "# END at 0x%" PRIx64 " on vCPU %u without BEGIN: ignored\n", marker->pc, vcpu);
		pthread_mutex_unlock(&lock);
		return;
	}
	FOR_EACH_REC(r)
		total += r->count - r->base;
	fprintf(out, "window %ld begin_pc=0x%" PRIx64 " end_pc=0x%" PRIx64
		" begin_vcpu=%u end_vcpu=%u insns=%" PRIu64 "\n",
		windows, begin_pc, marker->pc, begin_vcpu, vcpu, total);
	FOR_EACH_REC(r) {
		uint64_t d = r->count - r->base;

		if (!d)
			continue;
		fprintf(out, "%" PRIx64 " %" PRIu64 " %" PRIx32 " ", r->pc, d, r->classes);
		for (int j = 0; j < r->size; j++)
			fprintf(out, "%02x", r->bytes[j]);
		if (r->classes & C_REP_STRING)
			fprintf(out, " %" PRIu64, r->starts - r->starts_base);
		fputc('\n', out);
		for (int c = 0; c < C_NCLASSES; c++)
			if (r->classes & (1u << c))
				per_class[c] += d;
	}
	for (int c = 0; c < C_NCLASSES; c++)
		fprintf(out, "class %s %" PRIu64 "\n", class_names[c], per_class[c]);
	fprintf(out, "end %ld\n", windows);
	fflush(out);
	windows++;
	in_window = 0;
	pthread_mutex_unlock(&lock);
}

static void on_rep(unsigned int vcpu, void *udata)
{
	struct rec *r = udata;

	(void)vcpu;
	if (r != last_rep || seq != last_rep_seq + 1)
		r->starts++;
	last_rep = r;
	last_rep_seq = seq;
}

static void vcpu_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);

	(void)id;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		size_t size = qemu_plugin_insn_size(insn);
		const uint8_t *data = qemu_plugin_insn_data(insn);
		struct rec *r;

		if (size > MAX_BYTES)
			size = MAX_BYTES;
		r = lookup(qemu_plugin_insn_vaddr(insn), data, size);
		qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &r->count, 1);
		qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &seq, 1);
		if (r->classes & C_REP_STRING)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_rep, QEMU_PLUGIN_CB_NO_REGS, r);
		if (size == sizeof(mark_begin) && !memcmp(data, mark_begin, size))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, r);
		else if (size == sizeof(mark_end) && !memcmp(data, mark_end, size))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, r);
	}
	pthread_mutex_unlock(&lock);
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
	(void)id, (void)p;
	pthread_mutex_lock(&lock);
	if (in_window)
		fprintf(out, "# exit inside a window (no END marker)\n");
	fprintf(out, "exit windows=%ld records=%zu\n", windows, n_recs);
	fclose(out);
	out = NULL;
	pthread_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	const char *path = NULL;

	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
		else {
			fprintf(stderr, "vmexec-anatomy: unknown argument %s (takes out=FILE)\n", argv[i]);
			return -1;
		}
	}
	if (!path) {
		fprintf(stderr, "vmexec-anatomy: out=FILE is required\n");
		return -1;
	}
	if (strcmp(info->target_name, "x86_64")) {
		fprintf(stderr, "vmexec-anatomy: decodes x86-64 only, not %s\n", info->target_name);
		return -1;
	}
	out = fopen(path, "a");
	if (!out) {
		perror(path);
		return -1;
	}
	fprintf(out, "# vmexec-anatomy: %s, vCPUs %d\n", info->target_name,
		info->system_emulation ? info->system.smp_vcpus : 1);
	table_size = 1 << 16;
	table = calloc(table_size, sizeof(*table));
	if (!table)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
	qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
	return 0;
}
#endif
