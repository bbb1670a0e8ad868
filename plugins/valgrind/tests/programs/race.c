/* Two threads increment a shared counter without any lock. */
#include <pthread.h>
#include <stdio.h>

static int counter;

static void *bump(void *arg)
{
    (void)arg;
    counter++; /* RACE_LINE */
    return NULL;
}

int main(void)
{
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL); /* CREATE_A_LINE */
    pthread_create(&b, NULL, bump, NULL); /* CREATE_B_LINE */
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("%d\n", counter);
    return 0;
}
