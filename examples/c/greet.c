/* A classic: a fixed-size stack buffer filled from caller-controlled input. */
#include <stdio.h>
#include <string.h>

void greet(const char *name)
{
    char buf[32];

    strcpy(buf, name); /* no bound: a name of 32 bytes or more overflows buf */
    printf("hello, %s\n", buf);
}

void greet_bounded(const char *name)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%s", name);
    printf("hello, %s\n", buf);
}
