/* A deadlock on purpose: two threads take two mutexes in opposite orders, a barrier making sure each holds its
   first before it asks for its second. Natively it hangs for ever; under tandem every task is blocked with no
   timer pending, and the run ends with a report of what each task waits on. Usage: deadlock */
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both;

static void *other(void *arg) {
    (void)arg;
    pthread_mutex_lock(&b);
    pthread_barrier_wait(&both);
    pthread_mutex_lock(&a);
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_barrier_init(&both, NULL, 2);
    pthread_create(&t, NULL, other, NULL);
    pthread_mutex_lock(&a);
    pthread_barrier_wait(&both);
    printf("both hold their first mutex\n");
    fflush(stdout);
    pthread_mutex_lock(&b);
    pthread_join(t, NULL);
    printf("not reached\n");
    return 0;
}
