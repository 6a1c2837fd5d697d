/* Unit tests of the store: publishing, versions, tombstones, expiry,
 * removal passes, counters, caps, and readers racing writers. */
#include <criterion/criterion.h>

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "hlc.h"
#include "store.h"

static store_t *store;

static void store_setup(void)
{
    cr_assert_eq(hash_init(), PC_OK);
    store_thread_register();
    cr_assert_eq(store_new(&store), PC_OK);
}

static void store_teardown(void)
{
    store_destroy(&store);
    store_thread_unregister();
}

TestSuite(store, .init = store_setup, .fini = store_teardown);

static pc_version_t version_of(uint64_t hlc, uint64_t origin)
{
    return (pc_version_t){.hlc = hlc, .origin = origin};
}

static store_entry_t *make_entry_bytes(const void *key, size_t key_len,
                                       const void *value, size_t value_len,
                                       pc_version_t version, int64_t expire_ms,
                                       uint32_t flags)
{
    store_entry_t *entry = NULL;
    pc_err_t err = store_entry_new(hash_bytes(key, key_len), key, key_len,
                                   value, value_len, expire_ms, version,
                                   flags, &entry);
    cr_assert_eq(err, PC_OK);
    cr_assert_not_null(entry);
    return entry;
}

static store_entry_t *make_entry(const char *key, const char *value,
                                 pc_version_t version, int64_t expire_ms)
{
    return make_entry_bytes(key, strlen(key), value, strlen(value), version,
                            expire_ms, 0);
}

static store_entry_t *make_tombstone(const char *key, pc_version_t version)
{
    return make_entry_bytes(key, strlen(key), NULL, 0, version, 0,
                            STORE_FLAG_TOMBSTONE);
}

/* Publishes an entry the way a primary does: under the key's lock. */
static void put_locked(store_entry_t *entry)
{
    uint64_t hash = entry->hash;

    store_key_lock(store, hash);
    store_put(store, entry);
    store_key_unlock(store, hash);
}

/* Returns a copy of the live value of key at now_ms, or NULL. The caller
 * frees it. Copying lets the check run outside the read-side section. */
static char *lookup_value(const char *key, int64_t now_ms)
{
    char *copy = NULL;

    store_read_lock();
    const store_entry_t *entry =
        store_lookup(store, hash_bytes(key, strlen(key)), key, strlen(key),
                     now_ms);
    if (entry != NULL)
        copy = strndup(entry->value, entry->value_len);
    store_read_unlock();

    return copy;
}

static bool key_is_live(const char *key, int64_t now_ms)
{
    char *value = lookup_value(key, now_ms);
    bool live = value != NULL;

    free(value);
    return live;
}

/* Returns the version stored for key, tombstones and expired entries
 * included, or hlc 0 when the key is absent. */
static pc_version_t stored_version(const char *key)
{
    pc_version_t version = {0, 0};

    store_read_lock();
    const store_entry_t *entry =
        store_lookup_any(store, hash_bytes(key, strlen(key)), key, strlen(key));
    if (entry != NULL)
        version = entry->version;
    store_read_unlock();

    return version;
}

/* ---- publishing and lookups ---- */

Test(store, put_lookup)
{
    put_locked(make_entry("alpha", "one", version_of(10, 1), 0));

    store_read_lock();
    const store_entry_t *entry = store_lookup(
        store, hash_bytes("alpha", 5), "alpha", 5, 1000);
    cr_assert_not_null(entry);
    cr_assert_eq(entry->key_len, 5);
    cr_assert_eq(memcmp(entry->key, "alpha", 5), 0);
    cr_assert_eq(entry->value_len, 3);
    cr_assert_str_eq(entry->value, "one");
    cr_assert_eq(entry->version.hlc, 10);
    cr_assert_eq(entry->version.origin, 1);
    cr_assert_eq(entry->expire_ms, 0);
    cr_assert_eq(entry->flags, 0);
    cr_assert_eq(entry->hash, hash_bytes("alpha", 5));
    store_read_unlock();

    cr_assert_null(lookup_value("beta", 1000));
    cr_assert_null(lookup_value("alph", 1000));
}

Test(store, put_replaces)
{
    put_locked(make_entry("alpha", "one", version_of(10, 1), 0));
    put_locked(make_entry("alpha", "two-longer", version_of(11, 1), 0));

    char *value = lookup_value("alpha", 1000);
    cr_assert_str_eq(value, "two-longer");
    free(value);

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 1);
}

Test(store, put_ignores_version)
{
    put_locked(make_entry("alpha", "new", version_of(50, 1), 0));
    put_locked(make_entry("alpha", "old", version_of(5, 1), 0));

    char *value = lookup_value("alpha", 1000);
    cr_assert_str_eq(value, "old");
    free(value);
}

Test(store, binary_key_value)
{
    const char key[] = {'k', '\0', 'e', '\0', 'y'};
    const char other_key[] = {'k', '\0', 'e', '\0', 'z'};
    const char value[] = {'\0', 'v', '\0', '\xff', '\0', 'w'};

    put_locked(make_entry_bytes(key, sizeof(key), value, sizeof(value),
                                version_of(1, 1), 0, 0));

    store_read_lock();
    const store_entry_t *entry =
        store_lookup(store, hash_bytes(key, sizeof(key)), key, sizeof(key), 0);
    cr_assert_not_null(entry);
    cr_assert_eq(entry->key_len, sizeof(key));
    cr_assert_eq(memcmp(entry->key, key, sizeof(key)), 0);
    cr_assert_eq(entry->value_len, sizeof(value));
    cr_assert_eq(memcmp(entry->value, value, sizeof(value)), 0);
    cr_assert_eq(entry->value[sizeof(value)], '\0');

    /* Same length, differs only after the embedded NUL bytes. */
    const store_entry_t *other =
        store_lookup(store, hash_bytes(other_key, sizeof(other_key)),
                     other_key, sizeof(other_key), 0);
    cr_assert_null(other);
    store_read_unlock();
}

Test(store, empty_key_value)
{
    put_locked(make_entry_bytes("", 0, NULL, 0, version_of(1, 1), 0, 0));

    store_read_lock();
    const store_entry_t *entry =
        store_lookup(store, hash_bytes("", 0), "", 0, 0);
    cr_assert_not_null(entry);
    cr_assert_eq(entry->key_len, 0);
    cr_assert_eq(entry->value_len, 0);
    cr_assert_not_null(entry->value);
    cr_assert_eq(entry->value[0], '\0');
    store_read_unlock();
}

Test(store, hash_collision)
{
    /* Two keys forced onto one hash must stay separate entries. */
    store_entry_t *first = NULL;
    store_entry_t *second = NULL;
    cr_assert_eq(store_entry_new(42, "first", 5, "1", 1, 0, version_of(1, 1),
                                 0, &first),
                 PC_OK);
    cr_assert_eq(store_entry_new(42, "other", 5, "2", 1, 0, version_of(1, 1),
                                 0, &second),
                 PC_OK);
    put_locked(first);
    put_locked(second);

    store_read_lock();
    const store_entry_t *found = store_lookup(store, 42, "first", 5, 0);
    cr_assert_not_null(found);
    cr_assert_str_eq(found->value, "1");
    found = store_lookup(store, 42, "other", 5, 0);
    cr_assert_not_null(found);
    cr_assert_str_eq(found->value, "2");
    store_read_unlock();

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 2);
}

Test(store, entry_new2_concatenates)
{
    store_entry_t *entry = NULL;
    pc_err_t err = store_entry_new2(hash_bytes("k", 1), "k", 1, "abc", 3,
                                    "de\0f", 4, 77, version_of(3, 9), 0,
                                    &entry);
    cr_assert_eq(err, PC_OK);
    cr_assert_eq(entry->value_len, 7);
    cr_assert_eq(memcmp(entry->value, "abcde\0f", 7), 0);
    cr_assert_eq(entry->value[7], '\0');
    cr_assert_eq(entry->expire_ms, 77);
    cr_assert_eq(entry->version.origin, 9);
    store_entry_free(entry);

    err = store_entry_new2(hash_bytes("k", 1), "k", 1, NULL, 0, "xy", 2, 0,
                           version_of(3, 9), 0, &entry);
    cr_assert_eq(err, PC_OK);
    cr_assert_str_eq(entry->value, "xy");
    store_entry_free(entry);
}

Test(store, entry_free_null)
{
    store_entry_free(NULL);
}

Test(store, destroy_null)
{
    store_t *none = NULL;
    store_destroy(&none);
    cr_assert_null(none);
}

Test(store, destroy_with_entries)
{
    store_t *other = NULL;
    cr_assert_eq(store_new(&other), PC_OK);

    store_entry_t *entry = make_entry("alpha", "one", version_of(1, 1), 0);
    store_key_lock(other, entry->hash);
    store_put(other, entry);
    store_key_unlock(other, entry->hash);

    store_destroy(&other);
    cr_assert_null(other);
}

#ifndef NDEBUG
Test(store, nested_key_lock_aborts, .signal = SIGABRT)
{
    store_key_lock(store, 1);
    store_key_lock(store, 2);
}

Test(store, sweep_under_lock_aborts, .signal = SIGABRT)
{
    /* The table is empty, so without the assert the sweep would return. */
    store_key_lock(store, 1);
    store_sweep(store, 0, 0);
}
#endif

/* ---- caps ---- */

Test(store, value_over_cap)
{
    /* The buffer is far smaller than the length: the cap must be checked
     * before any byte is read, or the sanitizer build reports it. */
    char small[4] = "abc";
    store_entry_t *entry = (store_entry_t *)small;

    pc_err_t err = store_entry_new(hash_bytes("k", 1), "k", 1, small,
                                   (size_t)STORE_MAX_VALUE_BYTES + 1, 0,
                                   version_of(1, 1), 0, &entry);
    cr_assert_eq(err, PC_ERR_TOO_BIG);
    cr_assert_eq((void *)entry, (void *)small);
}

Test(store, key_over_cap)
{
    char small[4] = "abc";
    store_entry_t *entry = NULL;

    pc_err_t err = store_entry_new(1, small, (size_t)STORE_MAX_KEY_BYTES + 1,
                                   "v", 1, 0, version_of(1, 1), 0, &entry);
    cr_assert_eq(err, PC_ERR_TOO_BIG);
    cr_assert_null(entry);
}

Test(store, parts_over_cap)
{
    char small[4] = "abc";
    store_entry_t *entry = NULL;

    /* Each part fits, their sum does not. */
    pc_err_t err = store_entry_new2(1, "k", 1, small, STORE_MAX_VALUE_BYTES,
                                    small, 1, 0, version_of(1, 1), 0, &entry);
    cr_assert_eq(err, PC_ERR_TOO_BIG);
    cr_assert_null(entry);

    /* A sum that wraps around size_t must not pass the check. */
    err = store_entry_new2(1, "k", 1, small, 2, small, SIZE_MAX, 0,
                           version_of(1, 1), 0, &entry);
    cr_assert_eq(err, PC_ERR_TOO_BIG);
    cr_assert_null(entry);
}

/* ---- versions and tombstones ---- */

Test(store, tombstone_hides_key)
{
    put_locked(make_entry("alpha", "one", version_of(10, 1), 0));
    put_locked(make_tombstone("alpha", version_of(20, 1)));

    cr_assert_not(key_is_live("alpha", 0));

    store_read_lock();
    const store_entry_t *entry = store_lookup_any(
        store, hash_bytes("alpha", 5), "alpha", 5);
    cr_assert_not_null(entry);
    cr_assert_eq(entry->flags & STORE_FLAG_TOMBSTONE, STORE_FLAG_TOMBSTONE);
    cr_assert_eq(entry->value_len, 0);
    cr_assert_eq(entry->version.hlc, 20);
    store_read_unlock();
}

Test(store, tombstone_blocks_older)
{
    cr_assert_eq(store_apply(store, make_tombstone("alpha", version_of(20, 1))),
                 PC_OK);

    pc_err_t err =
        store_apply(store, make_entry("alpha", "late", version_of(15, 1), 0));
    cr_assert_eq(err, PC_ERR_STALE);
    cr_assert_not(key_is_live("alpha", 0));
    cr_assert_eq(stored_version("alpha").hlc, 20);
}

Test(store, newer_apply_revives)
{
    cr_assert_eq(store_apply(store, make_tombstone("alpha", version_of(20, 1))),
                 PC_OK);

    pc_err_t err =
        store_apply(store, make_entry("alpha", "back", version_of(21, 1), 0));
    cr_assert_eq(err, PC_OK);

    char *value = lookup_value("alpha", 0);
    cr_assert_str_eq(value, "back");
    free(value);

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 1);
    cr_assert_eq(stats.tombstones, 0);
}

Test(store, apply_reordered)
{
    /* Versions arrive out of order, and only newer ones take effect. */
    static const uint64_t order[] = {5, 3, 9, 1, 9, 7, 12, 2, 12, 11};
    static const pc_err_t expected[] = {
        PC_OK,          PC_ERR_STALE, PC_OK,        PC_ERR_STALE,
        PC_ERR_STALE,   PC_ERR_STALE, PC_OK,        PC_ERR_STALE,
        PC_ERR_STALE,   PC_ERR_STALE,
    };

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        char value[32];
        snprintf(value, sizeof(value), "v%" PRIu64, order[i]);

        pc_err_t err = store_apply(
            store, make_entry("alpha", value, version_of(order[i], 1), 0));
        cr_assert_eq(err, expected[i], "apply of version %" PRIu64
                     " returned %s", order[i], pc_err_name(err));
    }

    char *value = lookup_value("alpha", 0);
    cr_assert_str_eq(value, "v12");
    free(value);
}

Test(store, apply_tie_origin)
{
    cr_assert_eq(
        store_apply(store, make_entry("alpha", "o5", version_of(10, 5), 0)),
        PC_OK);
    cr_assert_eq(
        store_apply(store, make_entry("alpha", "o3", version_of(10, 3), 0)),
        PC_ERR_STALE);
    cr_assert_eq(
        store_apply(store, make_entry("alpha", "o5b", version_of(10, 5), 0)),
        PC_ERR_STALE);
    cr_assert_eq(
        store_apply(store, make_entry("alpha", "o7", version_of(10, 7), 0)),
        PC_OK);

    char *value = lookup_value("alpha", 0);
    cr_assert_str_eq(value, "o7");
    free(value);
}

/* ---- expiry and removal passes ---- */

Test(store, lazy_expiry)
{
    put_locked(make_entry("alpha", "one", version_of(1, 1), 1000));

    cr_assert(key_is_live("alpha", 999));
    cr_assert_not(key_is_live("alpha", 1000));
    cr_assert_not(key_is_live("alpha", 5000));

    /* Expired but not swept: still visible to version checks. */
    cr_assert_eq(stored_version("alpha").hlc, 1);
}

Test(store, sweep_expired)
{
    put_locked(make_entry("gone", "x", version_of(1, 1), 1000));
    put_locked(make_entry("edge", "x", version_of(1, 1), 2000));
    put_locked(make_entry("later", "x", version_of(1, 1), 2001));
    put_locked(make_entry("forever", "x", version_of(1, 1), 0));

    uint64_t removed = store_sweep(store, 2000, 0);
    cr_assert_eq(removed, 2);

    cr_assert_eq(stored_version("gone").hlc, 0);
    cr_assert_eq(stored_version("edge").hlc, 0);
    cr_assert(key_is_live("later", 2000));
    cr_assert(key_is_live("forever", 2000));

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.expired, 2);
    cr_assert_eq(stats.keys, 2);
    cr_assert_eq(stats.expiring, 1);
}

Test(store, sweep_old_tombstones)
{
    /* Tombstones written at 1000, 4000, 5000 and 9000 ms. With now at
     * 10000 ms and a 5000 ms grace, only those written before 5000 ms go. */
    put_locked(make_tombstone("old", version_of(hlc_make(1000, 0), 1)));
    put_locked(make_tombstone("recent", version_of(hlc_make(4000, 7), 1)));
    put_locked(make_tombstone("edge", version_of(hlc_make(5000, 0), 1)));
    put_locked(make_tombstone("young", version_of(hlc_make(9000, 0), 1)));
    put_locked(make_entry("live", "x", version_of(hlc_make(1, 0), 1), 0));

    uint64_t removed = store_sweep(store, 10000, 5000);
    cr_assert_eq(removed, 2);

    cr_assert_eq(stored_version("old").hlc, 0);
    cr_assert_eq(stored_version("recent").hlc, 0);
    cr_assert_neq(stored_version("edge").hlc, 0);
    cr_assert_neq(stored_version("young").hlc, 0);
    cr_assert(key_is_live("live", 10000));

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.tombstones, 2);
    cr_assert_eq(stats.keys, 1);
    cr_assert_eq(stats.expired, 0);
}

static bool key_starts_with_drop(const store_entry_t *entry, void *arg)
{
    int *calls = arg;

    (*calls)++;
    return entry->key_len >= 4 && memcmp(entry->key, "drop", 4) == 0;
}

Test(store, drop_if)
{
    put_locked(make_entry("drop-1", "x", version_of(1, 1), 0));
    put_locked(make_entry("drop-2", "x", version_of(1, 1), 500));
    put_locked(make_tombstone("drop-3", version_of(1, 1)));
    put_locked(make_entry("keep-1", "x", version_of(1, 1), 0));

    int calls = 0;
    uint64_t removed = store_drop_if(store, key_starts_with_drop, &calls);
    cr_assert_eq(removed, 3);
    cr_assert_eq(calls, 4);

    cr_assert_eq(stored_version("drop-1").hlc, 0);
    cr_assert_eq(stored_version("drop-2").hlc, 0);
    cr_assert_eq(stored_version("drop-3").hlc, 0);
    cr_assert(key_is_live("keep-1", 0));

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.evicted, 3);
    cr_assert_eq(stats.keys, 1);
    cr_assert_eq(stats.tombstones, 0);
    cr_assert_eq(stats.expiring, 0);
}

Test(store, clear)
{
    put_locked(make_entry("a", "x", version_of(1, 1), 0));
    put_locked(make_entry("b", "x", version_of(1, 1), 900));
    put_locked(make_tombstone("c", version_of(1, 1)));

    cr_assert_eq(store_clear(store), 3);
    cr_assert_eq(stored_version("a").hlc, 0);
    cr_assert_eq(stored_version("c").hlc, 0);

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 0);
    cr_assert_eq(stats.expiring, 0);
    cr_assert_eq(stats.tombstones, 0);
    cr_assert_eq(stats.bytes, 0);
    cr_assert_eq(stats.expired, 0);
    cr_assert_eq(stats.evicted, 0);

    cr_assert_eq(store_clear(store), 0);
}

/* ---- foreach ---- */

struct visit_count {
    int entries;
    int tombstones;
    int stop_after; /* 0: visit all */
};

static int count_visit(const store_entry_t *entry, void *arg)
{
    struct visit_count *count = arg;

    count->entries++;
    if (entry->flags & STORE_FLAG_TOMBSTONE)
        count->tombstones++;
    if (count->stop_after != 0 && count->entries == count->stop_after)
        return 7;
    return 0;
}

Test(store, foreach_all)
{
    put_locked(make_entry("a", "x", version_of(1, 1), 0));
    put_locked(make_entry("b", "x", version_of(1, 1), 100));
    put_locked(make_tombstone("c", version_of(1, 1)));

    struct visit_count count = {0};
    cr_assert_eq(store_foreach(store, count_visit, &count), 0);
    cr_assert_eq(count.entries, 3);
    cr_assert_eq(count.tombstones, 1);
}

Test(store, foreach_stops)
{
    put_locked(make_entry("a", "x", version_of(1, 1), 0));
    put_locked(make_entry("b", "x", version_of(1, 1), 0));
    put_locked(make_entry("c", "x", version_of(1, 1), 0));

    struct visit_count count = {.stop_after = 2};
    cr_assert_eq(store_foreach(store, count_visit, &count), 7);
    cr_assert_eq(count.entries, 2);
}

/* ---- counters ---- */

/* Sums over the table what the counters should report. bytes uses the size
 * of an entry with an empty key and value as the per-entry overhead. */
struct tally {
    uint64_t overhead;
    uint64_t keys;
    uint64_t expiring;
    uint64_t tombstones;
    uint64_t bytes;
};

static int tally_entry(const store_entry_t *entry, void *arg)
{
    struct tally *tally = arg;

    if (entry->flags & STORE_FLAG_TOMBSTONE) {
        tally->tombstones++;
    } else {
        tally->keys++;
        if (entry->expire_ms != 0)
            tally->expiring++;
    }
    tally->bytes += tally->overhead + entry->key_len + entry->value_len;
    return 0;
}

/* Measures in a separate store, so the store under test keeps its
 * contents. */
static uint64_t measure_overhead(void)
{
    store_t *probe = NULL;
    cr_assert_eq(store_new(&probe), PC_OK);

    store_entry_t *entry = make_entry("", "", version_of(1, 1), 0);
    store_key_lock(probe, entry->hash);
    store_put(probe, entry);
    store_key_unlock(probe, entry->hash);

    store_stats_t stats;
    store_stats(probe, &stats);
    store_destroy(&probe);

    cr_assert_gt(stats.bytes, 0);
    return stats.bytes;
}

static void assert_counters_match_table(void)
{
    struct tally tally = {.overhead = measure_overhead()};
    store_foreach(store, tally_entry, &tally);

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, tally.keys);
    cr_assert_eq(stats.expiring, tally.expiring);
    cr_assert_eq(stats.tombstones, tally.tombstones);
    cr_assert_eq(stats.bytes, tally.bytes);
}

static bool key_is_victim(const store_entry_t *entry, void *arg)
{
    (void)arg;
    return entry->key_len == 6 && memcmp(entry->key, "victim", 6) == 0;
}

Test(store, stats_exact)
{
    put_locked(make_entry("a", "short", version_of(1, 1), 0));
    put_locked(make_entry("a", "a much longer value", version_of(2, 1), 50));
    put_locked(make_entry("b", "x", version_of(1, 1), 100));
    cr_assert_eq(store_apply(store, make_tombstone("b", version_of(2, 1))),
                 PC_OK);
    cr_assert_eq(store_apply(store, make_entry("c", "y", version_of(1, 1), 0)),
                 PC_OK);
    cr_assert_eq(store_apply(store, make_entry("c", "z", version_of(1, 1), 0)),
                 PC_ERR_STALE);
    put_locked(make_entry("victim", "v", version_of(1, 1), 0));
    put_locked(make_entry("d", "expires", version_of(1, 1), 200));
    put_locked(make_tombstone("e", version_of(hlc_make(10, 0), 1)));

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 4);
    cr_assert_eq(stats.expiring, 2);
    cr_assert_eq(stats.tombstones, 2);
    assert_counters_match_table();

    cr_assert_eq(store_drop_if(store, key_is_victim, NULL), 1);
    /* At 1000 ms with a 500 ms grace: "a" (expiry 50) and "d" (200)
     * expire, and tombstones "e" (written at 10 ms) and "b" (hlc 2, so
     * 0 ms) are past the grace. */
    cr_assert_eq(store_sweep(store, 1000, 500), 4);

    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 1);
    cr_assert_eq(stats.expiring, 0);
    cr_assert_eq(stats.tombstones, 0);
    cr_assert_eq(stats.expired, 2);
    cr_assert_eq(stats.evicted, 1);
    assert_counters_match_table();

    cr_assert_eq(store_clear(store), 1);
    store_stats(store, &stats);
    cr_assert_eq(stats.keys, 0);
    cr_assert_eq(stats.bytes, 0);
    cr_assert_eq(stats.expired, 2);
    cr_assert_eq(stats.evicted, 1);
}

/* ---- concurrency ---- */

#define RACE_KEYS 64
#define RACE_READERS 4
#define RACE_WRITES 20000
#define RACE_HOT_KEYS 4 /* half the writes go here, so writers collide */
#define RACE_NOW_MS 1000000

struct race {
    _Atomic uint64_t clock;     /* source of unique, growing timestamps */
    _Atomic int writers_left;
    bool with_removals;         /* a remover thread runs as well */
    char keys[RACE_KEYS][16];
    uint64_t max_written[2][RACE_KEYS]; /* per writer, highest hlc built */
    _Atomic uint64_t lookups;
    _Atomic uint64_t failures;
    char failure[256];          /* first failure, written once */
    _Atomic int failure_claimed;
};

static struct race race;

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static void race_fail(const char *problem, const store_entry_t *entry)
{
    atomic_fetch_add(&race.failures, 1);
    if (atomic_exchange(&race.failure_claimed, 1) != 0)
        return;
    snprintf(race.failure, sizeof(race.failure), "%s (key_len %u, hlc %" PRIu64
             ", value_len %zu)", problem, entry->key_len, entry->version.hlc,
             entry->value_len);
}

/* A value encodes its key and version, then padding whose length and
 * letter derive from the version, so a torn or mixed entry shows. */
static size_t race_format_value(char *out, size_t cap, const char *key,
                                pc_version_t version)
{
    int header = snprintf(out, cap, "%s|%" PRIu64 "|%" PRIu64 "|", key,
                          version.hlc, version.origin);
    size_t padding = version.hlc % 97;

    /* Keys of at most 15 bytes and two 20-digit numbers leave room for
     * 96 bytes of padding. Worker threads run this, so it cannot use
     * cr_assert. */
    assert((size_t)header + padding < cap);
    memset(out + header, 'a' + (int)(version.hlc % 26), padding);
    return (size_t)header + padding;
}

static void race_check_entry(const store_entry_t *entry)
{
    char expected[256];
    char key[32];

    if (entry->key_len >= sizeof(key)) {
        race_fail("key too long", entry);
        return;
    }
    memcpy(key, entry->key, entry->key_len);
    key[entry->key_len] = '\0';

    if (entry->hash != hash_bytes(entry->key, entry->key_len))
        race_fail("hash does not match key", entry);
    if (entry->value[entry->value_len] != '\0')
        race_fail("value not NUL-terminated", entry);

    if (entry->flags & STORE_FLAG_TOMBSTONE) {
        if (entry->value_len != 0)
            race_fail("tombstone with a value", entry);
        return;
    }

    size_t len = race_format_value(expected, sizeof(expected), key,
                                   entry->version);
    if (entry->value_len != len || memcmp(entry->value, expected, len) != 0)
        race_fail("value does not encode its key and version", entry);
}

static void *race_reader(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
    uint64_t last_hlc[RACE_KEYS] = {0};
    uint64_t lookups = 0;

    store_thread_register();
    do {
        unsigned k = (unsigned)(xorshift(&seed) % RACE_KEYS);
        const char *key = race.keys[k];
        uint64_t hash = hash_bytes(key, strlen(key));

        store_read_lock();
        const store_entry_t *entry =
            store_lookup_any(store, hash, key, strlen(key));
        if (entry != NULL) {
            race_check_entry(entry);

            /* Without removals, a key's version only grows. */
            if (!race.with_removals && entry->version.hlc < last_hlc[k])
                race_fail("version went backwards", entry);
            last_hlc[k] = entry->version.hlc;
        }

        const store_entry_t *live =
            store_lookup(store, hash, key, strlen(key), RACE_NOW_MS);
        if (live != NULL) {
            race_check_entry(live);
            if (live->flags & STORE_FLAG_TOMBSTONE)
                race_fail("lookup returned a tombstone", live);
            if (live->expire_ms != 0 && live->expire_ms <= RACE_NOW_MS)
                race_fail("lookup returned an expired entry", live);
        }
        store_read_unlock();
        lookups++;
    } while (atomic_load(&race.writers_left) > 0);
    store_thread_unregister();

    atomic_fetch_add(&race.lookups, lookups);
    return NULL;
}

static unsigned race_pick_key(uint64_t *seed)
{
    uint64_t roll = xorshift(seed);

    if (roll & 1)
        return (unsigned)((roll >> 1) % RACE_HOT_KEYS);
    return (unsigned)((roll >> 1) % RACE_KEYS);
}

/* Builds the next write of one key: mostly values, some tombstones, and
 * with removals some entries that are already expired at RACE_NOW_MS.
 * Aborts the test process on allocation failure, since worker threads
 * cannot use cr_assert. */
static store_entry_t *race_make_write(uint64_t *seed, unsigned k,
                                      uint64_t origin)
{
    const char *key = race.keys[k];
    pc_version_t version = {atomic_fetch_add(&race.clock, 1), origin};
    race.max_written[origin - 1][k] = version.hlc;
    uint64_t roll = xorshift(seed);
    store_entry_t *entry = NULL;

    if (roll % 8 == 0) {
        if (store_entry_new(hash_bytes(key, strlen(key)), key, strlen(key),
                            NULL, 0, 0, version, STORE_FLAG_TOMBSTONE,
                            &entry) != PC_OK)
            abort();
        return entry;
    }

    int64_t expire_ms = 0;
    if (roll % 8 == 1)
        expire_ms = RACE_NOW_MS + 1000;
    else if (roll % 8 == 2 && race.with_removals)
        expire_ms = RACE_NOW_MS - 1000;

    char value[256];
    size_t len = race_format_value(value, sizeof(value), key, version);
    if (store_entry_new(hash_bytes(key, strlen(key)), key, strlen(key), value,
                        len, expire_ms, version, 0, &entry) != PC_OK)
        abort();
    return entry;
}

/* Writes the way a primary does: under the key lock, compares with the
 * stored version itself and publishes with store_put. */
static void *race_put_writer(void *arg)
{
    uint64_t seed = 12345;
    (void)arg;

    store_thread_register();
    for (int i = 0; i < RACE_WRITES; i++) {
        unsigned k = race_pick_key(&seed);
        store_entry_t *entry = race_make_write(&seed, k, 1);
        uint64_t hash = entry->hash;

        store_key_lock(store, hash);
        store_read_lock();
        const store_entry_t *current = store_lookup_any(
            store, hash, entry->key, entry->key_len);
        bool newer = current == NULL ||
                     version_cmp(entry->version, current->version) > 0;
        store_read_unlock();

        if (newer)
            store_put(store, entry);
        else
            store_entry_free(entry);
        store_key_unlock(store, hash);
    }
    store_thread_unregister();

    atomic_fetch_sub(&race.writers_left, 1);
    return NULL;
}

/* Writes the way a replica does: store_apply with last writer wins. */
static void *race_apply_writer(void *arg)
{
    uint64_t seed = 67890;
    (void)arg;

    store_thread_register();
    for (int i = 0; i < RACE_WRITES; i++) {
        unsigned k = race_pick_key(&seed);
        pc_err_t err = store_apply(store, race_make_write(&seed, k, 2));
        if (err != PC_OK && err != PC_ERR_STALE)
            atomic_fetch_add(&race.failures, 1);
    }
    store_thread_unregister();

    atomic_fetch_sub(&race.writers_left, 1);
    return NULL;
}

static bool key_index_divisible_by_5(const store_entry_t *entry, void *arg)
{
    (void)arg;
    return entry->key_len > 4 && atoi(entry->key + 4) % 5 == 0;
}

/* Runs removal passes until the writers finish: sweeps of expired
 * entries and of every tombstone, and drops of a fixed subset of keys. */
static void *race_remover(void *arg)
{
    uint64_t *passes = arg;

    store_thread_register();
    while (atomic_load(&race.writers_left) > 0) {
        store_sweep(store, RACE_NOW_MS, 0);
        store_drop_if(store, key_index_divisible_by_5, NULL);
        (*passes)++;
    }
    store_thread_unregister();
    return NULL;
}

static int count_expired(const store_entry_t *entry, void *arg)
{
    int *expired = arg;

    if (entry->expire_ms != 0 && entry->expire_ms <= RACE_NOW_MS)
        (*expired)++;
    return 0;
}

static void race_run(bool with_removals)
{
    pthread_t readers[RACE_READERS];
    pthread_t put_writer;
    pthread_t apply_writer;
    pthread_t remover;
    uint64_t remover_passes = 0;

    memset(&race, 0, sizeof(race));
    atomic_store(&race.clock, 1);
    atomic_store(&race.writers_left, 2);
    race.with_removals = with_removals;
    for (int k = 0; k < RACE_KEYS; k++)
        snprintf(race.keys[k], sizeof(race.keys[k]), "key-%d", k);

    for (uintptr_t i = 0; i < RACE_READERS; i++)
        cr_assert_eq(pthread_create(&readers[i], NULL, race_reader,
                                    (void *)(i + 1)),
                     0);
    cr_assert_eq(pthread_create(&put_writer, NULL, race_put_writer, NULL), 0);
    cr_assert_eq(pthread_create(&apply_writer, NULL, race_apply_writer, NULL),
                 0);
    if (with_removals)
        cr_assert_eq(pthread_create(&remover, NULL, race_remover,
                                    &remover_passes),
                     0);

    pthread_join(put_writer, NULL);
    pthread_join(apply_writer, NULL);
    for (int i = 0; i < RACE_READERS; i++)
        pthread_join(readers[i], NULL);
    if (with_removals)
        pthread_join(remover, NULL);

    cr_log_info("%" PRIu64 " lookups, %" PRIu64 " removal passes",
                atomic_load(&race.lookups), remover_passes);
    cr_assert_eq(atomic_load(&race.failures), 0, "first failure: %s",
                 race.failure);
    cr_assert_gt(atomic_load(&race.lookups), 0);
}

Test(store, race_readers_writers)
{
    race_run(false);
    assert_counters_match_table();

    /* Every key was written, and nothing removes entries in this run. */
    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.keys + stats.tombstones, RACE_KEYS);

    /* Each key's newest write must have won, whichever writer made it. */
    for (int k = 0; k < RACE_KEYS; k++) {
        uint64_t newest = race.max_written[0][k];
        if (race.max_written[1][k] > newest)
            newest = race.max_written[1][k];
        cr_assert_eq(stored_version(race.keys[k]).hlc, newest,
                     "%s lost its newest write", race.keys[k]);
    }
}

Test(store, race_with_removals)
{
    race_run(true);
    assert_counters_match_table();

    /* A last pass with no writers left must remove the subset, every
     * tombstone and every expired entry for good. */
    store_drop_if(store, key_index_divisible_by_5, NULL);
    store_sweep(store, RACE_NOW_MS, 0);

    for (int k = 0; k < RACE_KEYS; k += 5)
        cr_assert_eq(stored_version(race.keys[k]).hlc, 0, "%s still stored",
                     race.keys[k]);

    int expired = 0;
    store_foreach(store, count_expired, &expired);
    cr_assert_eq(expired, 0);

    store_stats_t stats;
    store_stats(store, &stats);
    cr_assert_eq(stats.tombstones, 0);
    cr_assert_gt(stats.expired, 0);
    cr_assert_gt(stats.evicted, 0);
    assert_counters_match_table();
}
