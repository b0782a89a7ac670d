/* What a line of code costs that runs once per iteration, with and without a system call between
 * iterations (issue 26, the AMD EPYC day: a price per 64-byte kernel code line run per iteration, fitted
 * beside the others, closed files and poll but not native and entry; is it the front end's?).  A chain of N
 * 64-byte blocks of user code, each 4 adds and a jump to the next line (with an argument: 3 never-taken
 * conditional branches besides), against the same adds run from 8 lines looped N/8 times; then each with
 * getppid after every iteration.  gcc -O2 -o cf code-footprint.c && taskset -c 1 ./cf [branches]
 * (code-footprint.log) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef long (*chain_fn)(long);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}

/* lines blocks of 64 bytes: 4 x `add $1,%rax` (16 bytes), then a jump to the next block; the last one
 * (of `loop` blocks) does `dec %rdi; jnz first; ret`.  rax counts the adds: the call checks it. */
static int branches;
static chain_fn build(int lines, int loop, uint8_t **mem) {
  size_t size = (size_t)lines * 64 + 4096;
  uint8_t *m = mmap(NULL, size, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) { perror("mmap"); exit(1); }
  memset(m, 0xcc, size);
  /* entry: xor eax,eax */
  uint8_t *p = m; *p++ = 0x31; *p++ = 0xc0;
  uint8_t *first = m + 64;
  *p++ = 0xe9; int32_t rel = (int32_t)(first - (p + 4)); memcpy(p, &rel, 4);
  for (int i = 0; i < loop; i++) {
    uint8_t *b = first + (size_t)i * 64;
    uint8_t *q = b;
    for (int k = 0; k < 4; k++) {
      *q++ = 0x48; *q++ = 0x83; *q++ = 0xc0; *q++ = 0x01;                    /* add $1,%rax */
      if (branches && k < 3) {                                                /* cmp $-1,%rax; je (never) */
        *q++ = 0x48; *q++ = 0x83; *q++ = 0xf8; *q++ = 0xff; *q++ = 0x74; *q = (uint8_t)(b + 63 - (q + 1)); q++;
      }
    }
    if (i < loop - 1) {
      *q++ = 0xe9; rel = (int32_t)((b + 64) - (q + 4)); memcpy(q, &rel, 4);
    } else {
      *q++ = 0x48; *q++ = 0xff; *q++ = 0xcf;                 /* dec %rdi */
      *q++ = 0x0f; *q++ = 0x85; rel = (int32_t)(first - (q + 4)); memcpy(q, &rel, 4); q += 4;  /* jnz first */
      *q++ = 0xc3;                                            /* ret */
    }
  }
  *mem = m;
  return (chain_fn)m;
}

static double per_iteration(chain_fn f, long reps, long adds, int with_syscall, long iters) {
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    if (f(reps) != adds) { fprintf(stderr, "wrong count\n"); exit(1); }
    if (with_syscall) syscall(SYS_getppid);
  }
  return (now() - t0) / iters;
}

int main(int argc, char **argv) {
  int sizes[] = {64, 128, 256, 320, 512, 1024};
  long iters = 200000;
  branches = argc > 1;
  for (int r = 0; r < 2; r++)
    for (unsigned s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      int n = sizes[s];
      uint8_t *m1, *m2;
      chain_fn spread = build(n, n, &m1), hot = build(8, 8, &m2);
      long adds = 4L * n;
      per_iteration(spread, 1, adds, 1, 1000); per_iteration(hot, n / 8, adds, 1, 1000);   /* warm */
      double a = per_iteration(spread, 1, adds, 0, iters), b = per_iteration(hot, n / 8, adds, 0, iters);
      double c = per_iteration(spread, 1, adds, 1, iters), d = per_iteration(hot, n / 8, adds, 1, iters);
      printf("lines %5d  spread %8.1f  hot %8.1f  (%+.2f ns/line)   +getppid: spread %8.1f  hot %8.1f  (%+.2f ns/line)\n",
             n, a, b, (a - b) / n, c, d, (c - d) / n);
      munmap(m1, (size_t)n * 64 + 4096); munmap(m2, 8 * 64 + 4096);
    }
  return 0;
}
