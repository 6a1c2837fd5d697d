/* hlc: hybrid logical clock.
 *
 * The whole clock state is one atomic word, the largest timestamp issued or
 * observed, so hlc_now and hlc_observe are lock-free and any thread may
 * call them. Invariant: clock->last never decreases.
 */
#include "hlc.h"

#include <stdatomic.h>
#include <time.h>

uint64_t pc_time_ms(void)
{
    struct timespec now;

    /* POSIX requires CLOCK_REALTIME, and the only other error (EFAULT)
     * needs a bad pointer, so the result is not checked. */
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

void hlc_init(pc_hlc_t *clock)
{
    atomic_init(&clock->last, 0);
}

uint64_t hlc_now(pc_hlc_t *clock)
{
    return hlc_now_at(clock, pc_time_ms());
}

uint64_t hlc_now_at(pc_hlc_t *clock, uint64_t wall_ms)
{
    uint64_t wall = hlc_make(wall_ms, 0);
    uint64_t last = atomic_load(&clock->last);
    uint64_t next;

    do {
        /* last + 1 carries a full counter into the milliseconds, which is
         * how the clock runs ahead of the wall clock when one millisecond
         * has more than 65536 events. */
        /* NOTE: a clock already at UINT64_MAX (only reachable by observing
         * a forged timestamp) stays there instead of wrapping to 0, so
         * timestamps stop increasing. Callers should reject remote
         * timestamps far ahead of their own wall clock. */
        next = last == UINT64_MAX ? UINT64_MAX : last + 1;
        if (wall > next)
            next = wall;
    } while (!atomic_compare_exchange_weak(&clock->last, &last, next));
    return next;
}

void hlc_observe(pc_hlc_t *clock, uint64_t remote)
{
    uint64_t last = atomic_load(&clock->last);

    /* A failed exchange reloads last, so the loop ends once the clock is at
     * or past remote, whichever thread moved it there. */
    while (last < remote &&
           !atomic_compare_exchange_weak(&clock->last, &last, remote)) {
    }
}

int version_cmp(pc_version_t a, pc_version_t b)
{
    if (a.hlc != b.hlc)
        return a.hlc < b.hlc ? -1 : 1;
    if (a.origin != b.origin)
        return a.origin < b.origin ? -1 : 1;
    return 0;
}
