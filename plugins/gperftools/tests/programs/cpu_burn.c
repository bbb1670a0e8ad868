/* CPU-bound fixture. burn_cpu() spins for ~1 s and light_work() for
 * ~0.11 s, both directly from main(), so burn_cpu should be the leaf of
 * ~90% of the samples and light_work of ~10%. The integer loop is inline in
 * each function (not in a shared helper) so that the function itself is the
 * sampled leaf. */
#include <stdio.h>
#include <time.h>

static volatile unsigned long sink;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void burn_cpu(void) {
    double end = now_seconds() + 1.0;
    while (now_seconds() < end) {
        for (unsigned long i = 0; i < 200000; i++) {
            sink += i * 2654435761u;
        }
    }
}

__attribute__((noinline)) void light_work(void) {
    double end = now_seconds() + 0.11;
    while (now_seconds() < end) {
        for (unsigned long i = 0; i < 200000; i++) {
            sink += i * 40503u;
        }
    }
}

int main(void) {
    burn_cpu();
    light_work();
    printf("%lu\n", sink);
    return 0;
}
