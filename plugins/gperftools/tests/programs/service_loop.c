/* Service-like fixture: burns CPU in serve_forever() and allocates a little
 * in handle_request() until it is killed. It installs no signal handlers, so
 * SIGTERM takes the default action (immediate termination, no atexit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile unsigned long sink;
static void *retained[4096];

__attribute__((noinline)) void handle_request(unsigned long n) {
    size_t slot = n % 4096;
    free(retained[slot]);
    retained[slot] = malloc(256);
    memset(retained[slot], (int)n, 256);
    for (int i = 0; i < 20000; i++) {
        sink += (unsigned long)i * n;
    }
}

__attribute__((noinline)) void serve_forever(void) {
    for (unsigned long n = 1;; n++) {
        handle_request(n);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("ready\n");
    serve_forever();
    return 0;
}
