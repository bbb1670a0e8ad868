/* Takes two mutexes in opposite orders from two threads, one after the
 * other, so the inversion is observable without ever deadlocking. */
#include <pthread.h>

static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t second = PTHREAD_MUTEX_INITIALIZER;

static void *first_then_second(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&first); /* AB_OUTER_LINE */
    pthread_mutex_lock(&second); /* AB_INNER_LINE */
    pthread_mutex_unlock(&second);
    pthread_mutex_unlock(&first);
    return NULL;
}

static void *second_then_first(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&second);
    pthread_mutex_lock(&first); /* BA_INNER_LINE */
    pthread_mutex_unlock(&first);
    pthread_mutex_unlock(&second);
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, first_then_second, NULL);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, second_then_first, NULL); /* CREATE_BA_LINE */
    pthread_join(t, NULL);
    return 0;
}
