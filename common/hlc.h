/* hlc: hybrid logical clock timestamps, and the versions built on them.
 *
 * A timestamp is a uint64_t: the top 48 bits are milliseconds since the
 * Unix epoch and the low 16 bits a logical counter. hlc_now returns values
 * that strictly increase on one clock, and hlc_observe makes the clock pass
 * every timestamp it has seen, so a write that causally follows another
 * gets a larger timestamp even when wall clocks disagree. When the counter
 * overflows, the millisecond part moves ahead of the wall clock by one.
 *
 * A version is a timestamp plus the writing node's origin (hash_bytes of
 * its node id) as a tie-breaker. All functions are thread-safe (one atomic
 * compare-and-swap per call).
 */
#ifndef PC_HLC_H
#define PC_HLC_H

#include <stdint.h>

#define HLC_LOGICAL_BITS 16
#define HLC_LOGICAL_MASK 0xffffu

typedef struct pc_hlc {
    _Atomic uint64_t last; /* largest timestamp issued or observed */
} pc_hlc_t;

typedef struct pc_version {
    uint64_t hlc;    /* timestamp of the write */
    uint64_t origin; /* hash_bytes of the writing node's id */
} pc_version_t;

/* Returns the wall clock in milliseconds since the Unix epoch. */
uint64_t pc_time_ms(void);

/* Initialises the clock at 0. */
void hlc_init(pc_hlc_t *clock);

/* Returns a new timestamp, larger than every one issued or observed
 * before, using the wall clock. */
uint64_t hlc_now(pc_hlc_t *clock);

/* As hlc_now with the wall clock given, for tests. */
uint64_t hlc_now_at(pc_hlc_t *clock, uint64_t wall_ms);

/* Advances the clock past a timestamp received from a peer. */
void hlc_observe(pc_hlc_t *clock, uint64_t remote);

/* Returns the milliseconds part of a timestamp. */
static inline uint64_t hlc_ms(uint64_t ts) { return ts >> HLC_LOGICAL_BITS; }

/* Builds a timestamp from milliseconds and a counter. */
static inline uint64_t hlc_make(uint64_t ms, uint16_t logical)
{
    return (ms << HLC_LOGICAL_BITS) | logical;
}

/* Compares two versions: negative, 0 or positive as a is older than, equal
 * to or newer than b. The timestamp decides; the origin breaks ties. */
int version_cmp(pc_version_t a, pc_version_t b);

#endif
