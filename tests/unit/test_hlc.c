/* Tests for the hybrid logical clock and version ordering. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "hlc.h"

#define TEST_THREADS 4
#define TEST_PER_THREAD 200000

/* 2020-01-01T00:00:00Z in milliseconds since the Unix epoch. */
#define TEST_MS_2020 UINT64_C(1577836800000)

Test(hlc, time_ms_plausible)
{
    cr_assert_gt(pc_time_ms(), TEST_MS_2020);
}

Test(hlc, first_now_after_init)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    cr_assert_eq(hlc_now_at(&clock, 1000), hlc_make(1000, 0));
}

Test(hlc, counter_within_one_ms)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    cr_assert_eq(hlc_now_at(&clock, 1000), hlc_make(1000, 0));
    cr_assert_eq(hlc_now_at(&clock, 1000), hlc_make(1000, 1));
    cr_assert_eq(hlc_now_at(&clock, 1000), hlc_make(1000, 2));
}

Test(hlc, new_ms_resets_counter)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    hlc_now_at(&clock, 1000);
    hlc_now_at(&clock, 1000);
    cr_assert_eq(hlc_now_at(&clock, 1001), hlc_make(1001, 0));
}

Test(hlc, wall_clock_backwards)
{
    pc_hlc_t clock;
    uint64_t walls[] = {5000, 4000, 4999, 3000, 5000, 5000, 1, 5001, 4500};
    uint64_t prev;

    hlc_init(&clock);
    prev = hlc_now_at(&clock, walls[0]);
    for (size_t i = 1; i < sizeof walls / sizeof walls[0]; i++) {
        uint64_t ts = hlc_now_at(&clock, walls[i]);
        cr_assert_gt(ts, prev, "wall %llu after %llu",
                     (unsigned long long)walls[i],
                     (unsigned long long)walls[i - 1]);
        prev = ts;
    }

    /* A clock that went back keeps the last millisecond and counts on. */
    cr_assert_eq(hlc_now_at(&clock, 10), prev + 1);
}

Test(hlc, observe_ahead)
{
    pc_hlc_t clock;
    uint64_t remote = hlc_make(9000, 7);

    hlc_init(&clock);
    hlc_now_at(&clock, 1000);
    hlc_observe(&clock, remote);

    uint64_t ts = hlc_now_at(&clock, 1000);
    cr_assert_gt(ts, remote);
    cr_assert_eq(ts, hlc_make(9000, 8));
}

Test(hlc, observe_behind)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    uint64_t before = hlc_now_at(&clock, 5000);
    hlc_observe(&clock, hlc_make(100, 3));

    cr_assert_eq(hlc_now_at(&clock, 5000), before + 1);
}

Test(hlc, wall_ahead_of_observed)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    hlc_observe(&clock, hlc_make(2000, 40));
    cr_assert_eq(hlc_now_at(&clock, 3000), hlc_make(3000, 0));
}

Test(hlc, counter_overflow)
{
    pc_hlc_t clock;
    uint64_t prev;

    hlc_init(&clock);
    prev = hlc_now_at(&clock, 1000);

    /* 65536 timestamps fill millisecond 1000. The rest use millisecond
     * 1001 while the wall clock still reads 1000. */
    for (uint32_t i = 1; i < 70000; i++) {
        uint64_t ts = hlc_now_at(&clock, 1000);
        cr_assert_gt(ts, prev, "event %u", i);
        prev = ts;
    }
    cr_assert_eq(hlc_ms(prev), 1001);
    cr_assert_eq(prev, hlc_make(1001, 70000 - 65536 - 1));

    /* Wall time 1001 does not reset a counter already running in 1001. */
    cr_assert_eq(hlc_now_at(&clock, 1001), prev + 1);
}

Test(hlc, saturates_at_max)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    hlc_observe(&clock, UINT64_MAX);
    cr_assert_eq(hlc_now_at(&clock, 1000), UINT64_MAX);
    cr_assert_eq(hlc_now_at(&clock, 1000), UINT64_MAX);
}

Test(hlc, now_follows_wall_clock)
{
    pc_hlc_t clock;

    hlc_init(&clock);
    uint64_t before = pc_time_ms();
    uint64_t ts = hlc_now(&clock);
    uint64_t after = pc_time_ms();

    /* A fresh clock has no counter overflow to run ahead with. */
    cr_assert_geq(hlc_ms(ts), before);
    cr_assert_leq(hlc_ms(ts), after);
}

struct worker {
    pc_hlc_t *clock;
    pthread_barrier_t *start;
    uint64_t *out;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;

    /* Starting together makes the threads contend on the clock instead of
     * running one after another. */
    pthread_barrier_wait(w->start);
    for (size_t i = 0; i < TEST_PER_THREAD; i++)
        w->out[i] = hlc_now(w->clock);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

Test(hlc, concurrent_unique)
{
    pc_hlc_t clock;
    pthread_t threads[TEST_THREADS];
    pthread_barrier_t start;
    struct worker workers[TEST_THREADS];
    size_t total = (size_t)TEST_THREADS * TEST_PER_THREAD;
    uint64_t *all = calloc(total, sizeof *all);

    cr_assert_not_null(all);
    hlc_init(&clock);
    cr_assert_eq(pthread_barrier_init(&start, NULL, TEST_THREADS), 0);
    for (size_t t = 0; t < TEST_THREADS; t++) {
        workers[t].clock = &clock;
        workers[t].start = &start;
        workers[t].out = all + t * TEST_PER_THREAD;
        cr_assert_eq(pthread_create(&threads[t], NULL, run_worker, &workers[t]),
                     0);
    }
    for (size_t t = 0; t < TEST_THREADS; t++)
        cr_assert_eq(pthread_join(threads[t], NULL), 0);
    pthread_barrier_destroy(&start);

    /* Each thread sees its own timestamps strictly increase. */
    for (size_t t = 0; t < TEST_THREADS; t++) {
        const uint64_t *out = workers[t].out;
        for (size_t i = 1; i < TEST_PER_THREAD; i++)
            cr_assert_gt(out[i], out[i - 1], "thread %zu event %zu", t, i);
    }

    qsort(all, total, sizeof *all, cmp_u64);
    for (size_t i = 1; i < total; i++)
        cr_assert_neq(all[i], all[i - 1], "duplicate timestamp %llu",
                      (unsigned long long)all[i]);
    free(all);
}

Test(hlc, version_newer_hlc_wins)
{
    pc_version_t older = {.hlc = hlc_make(1000, 5), .origin = UINT64_MAX};
    pc_version_t newer = {.hlc = hlc_make(1000, 6), .origin = 0};

    cr_assert_lt(version_cmp(older, newer), 0);
    cr_assert_gt(version_cmp(newer, older), 0);
}

Test(hlc, version_origin_breaks_tie)
{
    pc_version_t low = {.hlc = hlc_make(1000, 5), .origin = 10};
    pc_version_t high = {.hlc = hlc_make(1000, 5), .origin = 11};

    cr_assert_lt(version_cmp(low, high), 0);
    cr_assert_gt(version_cmp(high, low), 0);
}

Test(hlc, version_equal)
{
    pc_version_t a = {.hlc = hlc_make(1000, 5), .origin = 10};
    pc_version_t b = {.hlc = hlc_make(1000, 5), .origin = 10};

    cr_assert_eq(version_cmp(a, b), 0);
}

Test(hlc, version_extreme_values)
{
    /* A subtraction-based compare would overflow on these. */
    pc_version_t zero = {.hlc = 0, .origin = 0};
    pc_version_t max = {.hlc = UINT64_MAX, .origin = UINT64_MAX};
    pc_version_t max_hlc = {.hlc = UINT64_MAX, .origin = 0};

    cr_assert_lt(version_cmp(zero, max), 0);
    cr_assert_gt(version_cmp(max, zero), 0);
    cr_assert_lt(version_cmp(max_hlc, max), 0);
}
