/* Parsing a length-prefixed record from a network buffer. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "packet.h"

int read_record(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t out_len)
{
    size_t len = pkt[0];

    /* trusts the length byte: reads past pkt and writes past out */
    memcpy(out, pkt + 1, len);
    return (int)len;
}

int read_record_checked(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t out_len)
{
    size_t len;

    if (pkt_len < 1)
        return -1;
    len = pkt[0];
    if (len > pkt_len - 1 || len > out_len)
        return -1;
    memcpy(out, pkt + 1, len);
    return (int)len;
}
