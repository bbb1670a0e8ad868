/* Unlocks a mutex that is initialised but not held by any thread. */
#include <pthread.h>

static pthread_mutex_t mutex;

static void release_without_lock(void)
{
    pthread_mutex_unlock(&mutex); /* UNLOCK_LINE */
}

int main(void)
{
    pthread_mutex_init(&mutex, NULL); /* INIT_LINE */
    release_without_lock();
    pthread_mutex_destroy(&mutex); /* DESTROY_LINE */
    return 0;
}
