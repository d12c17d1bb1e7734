#ifndef PACKET_H
#define PACKET_H

#include <stddef.h>
#include <stdint.h>

int read_record(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t out_len);
int read_record_checked(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t out_len);

static inline size_t record_size(const uint8_t *pkt)
{
    return (size_t)pkt[0] + 1;
}

#endif
