/* Loses exactly one block of 1234 bytes: the only pointer to it goes out of scope. */
#include <stdlib.h>
#include <string.h>

static void leak_it(void)
{
    char *lost = malloc(1234); /* LEAK_LINE */
    if (lost != NULL)
        memset(lost, 'x', 1234);
}

int main(void)
{
    leak_it(); /* CALL_LINE */
    return 0;
}
