/* A locked add against a plain one to the same word, and locked xadd and cmpxchg (issue 26): what a locked
 * instruction costs here beyond its instruction.  gcc -O2 -o lk locked-add.c && taskset -c 1 ./lk  (locked-add.log) */
#include <stdio.h>
#include <time.h>
static long word;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(void){
  long n=20000000;
  for(int r=0;r<5;r++){
    double t0=now();
    for(long i=0;i<n;i++) asm volatile("addq $1,%0":"+m"(word));
    double t1=now();
    for(long i=0;i<n;i++) asm volatile("lock addq $1,%0":"+m"(word));
    double t2=now();
    for(long i=0;i<n;i++) { long v=1; asm volatile("lock xaddq %1,%0":"+m"(word),"+r"(v)); }
    double t3=now();
    for(long i=0;i<n;i++) { long v=word, nv=v+1; asm volatile("lock cmpxchgq %2,%1":"+a"(v),"+m"(word):"r"(nv)); }
    double t4=now();
    printf("add %.2f lock add %.2f lock xadd %.2f lock cmpxchg %.2f ns\n",(t1-t0)/n,(t2-t1)/n,(t3-t2)/n,(t4-t3)/n);
  }
}
