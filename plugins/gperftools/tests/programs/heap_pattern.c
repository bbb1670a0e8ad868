/* Heap fixture with a known allocation pattern:
 *   alloc_small() allocates and frees 1000 blocks of 100 bytes
 *                 -> 100000 bytes allocated, none in use;
 *   alloc_big()   allocates 10 blocks of 1 MiB and keeps them
 *                 -> 10 MiB in use until exit;
 *   spike()       allocates 8 blocks of 1 MiB, then frees them
 *                 -> in-use peaks at 18 MiB, then falls back to 10 MiB.
 * Intermediate dumps come from HEAP_PROFILE_ALLOCATION_INTERVAL; the heap
 * profiler writes the last dump itself at normal exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)
#define BIG_BLOCKS 10
#define SPIKE_BLOCKS 8
#define SMALL_BLOCKS 1000
#define SMALL_SIZE 100

static void *kept[BIG_BLOCKS];

__attribute__((noinline)) void alloc_small(void) {
    for (int i = 0; i < SMALL_BLOCKS; i++) {
        char *p = malloc(SMALL_SIZE);
        memset(p, i, SMALL_SIZE);
        free(p);
    }
}

__attribute__((noinline)) void alloc_big(void) {
    for (int i = 0; i < BIG_BLOCKS; i++) {
        kept[i] = malloc(MIB);
        memset(kept[i], i, MIB);
    }
}

__attribute__((noinline)) void spike(void) {
    void *temp[SPIKE_BLOCKS];
    for (int i = 0; i < SPIKE_BLOCKS; i++) {
        temp[i] = malloc(MIB);
        memset(temp[i], i, MIB);
    }
    for (int i = 0; i < SPIKE_BLOCKS; i++) {
        free(temp[i]);
    }
}

int main(void) {
    alloc_small();
    alloc_big();
    spike();
    unsigned long sum = 0;
    for (int i = 0; i < BIG_BLOCKS; i++) {
        sum += ((unsigned char *)kept[i])[MIB - 1];
    }
    printf("%lu\n", sum);
    return 0;
}
