/* main.c: placeholder for lora-merge until it lands; says so and fails. */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "lora-merge: not built yet\n");
    return 1;
}
