/* Reads one int just past the end of a 16-byte heap block. */
#include <stdio.h>
#include <stdlib.h>

static int read_past_end(const int *block)
{
    return block[4]; /* INVALID_READ_LINE */
}

int main(void)
{
    int *block = malloc(4 * sizeof(int)); /* ALLOC_LINE */
    if (block == NULL)
        return 1;
    for (int i = 0; i < 4; i++)
        block[i] = i;
    printf("%d\n", read_past_end(block)); /* CALL_LINE */
    free(block);
    return 0;
}
