/* A Safe RET return alone against one in a chain of 8 nested returns (issue 26): is the price per return one number?
 * Build and run: gcc -O2 -o chain safe-ret-chain.c && taskset -c 1 ./chain  (output: safe-ret-chain.log) */
#include <stdio.h>
#include <time.h>
/* a chain of 8 nested calls, each returning through the Safe RET copy (t) or plainly (p) */
asm(".text\n"
    "safe_ret: lea 8(%rsp),%rsp\n ret\n int3\n"
    "thunk: call safe_ret\n ud2\n"
    "plain_ret: lea 0(%rsp),%rsp\n ret\n int3\n"
    "plainret: call plain_ret\n ret\n"
    "t8: mov $1,%eax\n jmp thunk\n"
    "t7: call t8\n jmp thunk\n t6: call t7\n jmp thunk\n t5: call t6\n jmp thunk\n t4: call t5\n jmp thunk\n"
    "t3: call t4\n jmp thunk\n t2: call t3\n jmp thunk\n t1: call t2\n jmp thunk\n"
    "p8: mov $1,%eax\n jmp plainret\n"
    "p7: call p8\n jmp plainret\n p6: call p7\n jmp plainret\n p5: call p6\n jmp plainret\n p4: call p5\n jmp plainret\n"
    "p3: call p4\n jmp plainret\n p2: call p3\n jmp plainret\n p1: call p2\n jmp plainret\n");
extern int t1(void), p1(void), t8(void), p8(void);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(void){
  long n=5000000; long s=0;
  for (int r = 0; r < 4; r++) {
    double a = now();
    for (long i = 0; i < n; i++) s += p1();
    double b = now();
    for (long i = 0; i < n; i++) s += t1();
    double c = now();
    for (long i = 0; i < n; i++) s += p8();
    double d = now();
    for (long i = 0; i < n; i++) s += t8();
    double e = now();
    printf("depth 8: %.2f ns/return extra; depth 1: %.2f ns/return extra\n", ((c - b) - (b - a)) / n / 8, ((e - d) - (d - c)) / n);
  }
  return s==0;
}
