/* store: the node's local key-value store on liburcu's RCU hash table.
 *
 * Owns the table, every entry published into it, the key lock stripes and
 * the counters. Any registered thread may call in: readers run lock-free
 * inside memb-flavor read-side sections, writers of one key are serialised
 * by the key's stripe mutex, and the call_rcu worker thread frees retired
 * entries.
 *
 * Invariants:
 * - A published entry never changes. An update publishes a new allocation
 *   and retires the old one with call_rcu, which frees it once no reader
 *   can still hold it.
 * - Counters are raised before an entry is published and lowered only by
 *   the thread that unlinked it, so they never go below zero, and they
 *   equal the sum over the entries in the table once writers are idle.
 * - Removals (sweep, drop, clear) unlink an entry while holding its key's
 *   stripe mutex, and they wait for that mutex inside a read-side section.
 *   That is deadlock-free only because no holder of a stripe mutex waits
 *   for a grace period (synchronize_rcu or rcu_barrier).
 */
#include "store.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

/* Power of two, so a hash's low bits pick the stripe. */
#define STORE_LOCK_STRIPES 1024u

/* Initial and minimum bucket count. cds_lfht requires a power of two. */
/* With CDS_LFHT_ACCOUNTING the table grows only once chains average 8
 * entries, and lookups that walk them cost about twice as much (measured
 * on 100,000 keys). Without it, an add that finds a chain of 3 grows the
 * table, which keeps chains short. The price is that the table never
 * shrinks after keys are deleted. */
#define STORE_INITIAL_BUCKETS (1u << 14)

/* The allocation behind a store_entry_t: the public entry first, then the
 * table linkage, then key_len key bytes and value_len + 1 value bytes. */
struct store_node {
    store_entry_t entry;
    struct cds_lfht_node ht_node;
    struct rcu_head rcu;
};

struct store_counters {
    _Atomic uint64_t keys;
    _Atomic uint64_t expiring;
    _Atomic uint64_t tombstones;
    _Atomic uint64_t bytes;
    _Atomic uint64_t expired;
    _Atomic uint64_t evicted;
};

struct store {
    struct cds_lfht *table;
    struct store_counters counters;
    pthread_mutex_t stripes[STORE_LOCK_STRIPES];
};

/* Number of key locks the calling thread holds, 0 or 1, so the rules on
 * nesting and on removals under a key lock fail an assert when broken. */
static _Thread_local unsigned held_key_locks;

/* The lookup key handed to cds_lfht's match callback. */
struct key_ref {
    const void *bytes;
    size_t len;
};

/* What a removal pass does with one entry, and which counter it raises. */
typedef enum {
    REMOVAL_KEEP,
    REMOVAL_DROP,         /* store_clear and old tombstones: no counter */
    REMOVAL_DROP_EXPIRED, /* raises the expired counter */
    REMOVAL_DROP_EVICTED, /* raises the evicted counter */
} removal_t;

typedef removal_t (*classify_fn)(const store_entry_t *entry, void *arg);

static struct store_node *node_of_entry(const store_entry_t *entry)
{
    return caa_container_of(entry, struct store_node, entry);
}

static struct store_node *node_of_ht_node(struct cds_lfht_node *ht_node)
{
    return caa_container_of(ht_node, struct store_node, ht_node);
}

static uint64_t entry_bytes(const store_entry_t *entry)
{
    return sizeof(struct store_node) + entry->key_len + entry->value_len + 1;
}

static bool entry_is_tombstone(const store_entry_t *entry)
{
    return (entry->flags & STORE_FLAG_TOMBSTONE) != 0;
}

static bool entry_is_expired(const store_entry_t *entry, int64_t now_ms)
{
    return entry->expire_ms != 0 && entry->expire_ms <= now_ms;
}

static pthread_mutex_t *stripe_of(store_t *store, uint64_t hash)
{
    return &store->stripes[hash & (STORE_LOCK_STRIPES - 1)];
}

/* ---- counters ---- */

static void counters_add(store_t *store, const store_entry_t *entry)
{
    struct store_counters *c = &store->counters;

    if (entry_is_tombstone(entry)) {
        atomic_fetch_add_explicit(&c->tombstones, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&c->keys, 1, memory_order_relaxed);
        if (entry->expire_ms != 0)
            atomic_fetch_add_explicit(&c->expiring, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&c->bytes, entry_bytes(entry),
                              memory_order_relaxed);
}

static void counters_sub(store_t *store, const store_entry_t *entry)
{
    struct store_counters *c = &store->counters;

    if (entry_is_tombstone(entry)) {
        atomic_fetch_sub_explicit(&c->tombstones, 1, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&c->keys, 1, memory_order_relaxed);
        if (entry->expire_ms != 0)
            atomic_fetch_sub_explicit(&c->expiring, 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&c->bytes, entry_bytes(entry),
                              memory_order_relaxed);
}

static void counters_count_removal(store_t *store, removal_t removal)
{
    if (removal == REMOVAL_DROP_EXPIRED)
        atomic_fetch_add_explicit(&store->counters.expired, 1,
                                  memory_order_relaxed);
    else if (removal == REMOVAL_DROP_EVICTED)
        atomic_fetch_add_explicit(&store->counters.evicted, 1,
                                  memory_order_relaxed);
}

/* ---- lifetime ---- */

pc_err_t store_new(store_t **out)
{
    store_t *store = calloc(1, sizeof(*store));
    if (store == NULL)
        return PC_ERR_NOMEM;

    for (unsigned i = 0; i < STORE_LOCK_STRIPES; i++) {
        int rc = pthread_mutex_init(&store->stripes[i], NULL);
        assert(rc == 0);
        (void)rc;
    }

    store->table = cds_lfht_new_flavor(STORE_INITIAL_BUCKETS,
                                       STORE_INITIAL_BUCKETS, 0,
                                       CDS_LFHT_AUTO_RESIZE,
                                       &urcu_memb_flavor, NULL);
    if (store->table == NULL) {
        free(store);
        return PC_ERR_NOMEM;
    }

    *out = store;
    return PC_OK;
}

void store_destroy(store_t **store)
{
    if (*store == NULL)
        return;
    assert(!urcu_memb_read_ongoing());
    assert(held_key_locks == 0);

    store_clear(*store);

    /* Wait for the call_rcu callbacks of every retired entry, so nothing
     * is still queued for freeing once the store is gone. */
    urcu_memb_barrier();

    int rc = cds_lfht_destroy((*store)->table, NULL);
    assert(rc == 0);
    (void)rc;

    for (unsigned i = 0; i < STORE_LOCK_STRIPES; i++)
        pthread_mutex_destroy(&(*store)->stripes[i]);
    free(*store);
    *store = NULL;
}

void store_thread_register(void)
{
    urcu_memb_register_thread();
}

void store_thread_unregister(void)
{
    urcu_memb_unregister_thread();
}

void store_read_lock(void)
{
    urcu_memb_read_lock();
}

void store_read_unlock(void)
{
    urcu_memb_read_unlock();
}

/* ---- entries ---- */

pc_err_t store_entry_new(uint64_t hash, const void *key, size_t key_len,
                         const void *value, size_t value_len,
                         int64_t expire_ms, pc_version_t version,
                         uint32_t flags, store_entry_t **out)
{
    return store_entry_new2(hash, key, key_len, value, value_len, NULL, 0,
                            expire_ms, version, flags, out);
}

pc_err_t store_entry_new2(uint64_t hash, const void *key, size_t key_len,
                          const void *part1, size_t len1, const void *part2,
                          size_t len2, int64_t expire_ms, pc_version_t version,
                          uint32_t flags, store_entry_t **out)
{
    assert((flags & ~STORE_FLAG_TOMBSTONE) == 0);
    assert(!(flags & STORE_FLAG_TOMBSTONE) || (len1 == 0 && len2 == 0));

    /* Check the caps before touching any byte, and without computing
     * len1 + len2, which could wrap. */
    if (key_len > STORE_MAX_KEY_BYTES)
        return PC_ERR_TOO_BIG;
    if (len1 > STORE_MAX_VALUE_BYTES || len2 > STORE_MAX_VALUE_BYTES - len1)
        return PC_ERR_TOO_BIG;

    size_t value_len = len1 + len2;
    struct store_node *node =
        malloc(sizeof(*node) + key_len + value_len + 1);
    if (node == NULL)
        return PC_ERR_NOMEM;

    /* memcpy with a NULL source is undefined even for 0 bytes. */
    char *key_copy = (char *)(node + 1);
    char *value_copy = key_copy + key_len;
    if (key_len > 0)
        memcpy(key_copy, key, key_len);
    if (len1 > 0)
        memcpy(value_copy, part1, len1);
    if (len2 > 0)
        memcpy(value_copy + len1, part2, len2);
    value_copy[value_len] = '\0';

    node->entry = (store_entry_t){
        .version = version,
        .hash = hash,
        .expire_ms = expire_ms,
        .flags = flags,
        .key_len = (uint32_t)key_len,
        .value_len = value_len,
        .key = key_copy,
        .value = value_copy,
    };
    cds_lfht_node_init(&node->ht_node);

    *out = &node->entry;
    return PC_OK;
}

void store_entry_free(store_entry_t *entry)
{
    if (entry != NULL)
        free(node_of_entry(entry));
}

static void free_node_rcu(struct rcu_head *head)
{
    free(caa_container_of(head, struct store_node, rcu));
}

/* ---- lookups ---- */

static int match_key(struct cds_lfht_node *ht_node, const void *key)
{
    const store_entry_t *entry = &node_of_ht_node(ht_node)->entry;
    const struct key_ref *ref = key;

    if (entry->key_len != ref->len)
        return 0;
    return ref->len == 0 || memcmp(entry->key, ref->bytes, ref->len) == 0;
}

const store_entry_t *store_lookup_any(store_t *store, uint64_t hash,
                                      const void *key, size_t key_len)
{
    assert(urcu_memb_read_ongoing());

    struct key_ref ref = {key, key_len};
    struct cds_lfht_iter iter;
    cds_lfht_lookup(store->table, hash, match_key, &ref, &iter);

    struct cds_lfht_node *ht_node = cds_lfht_iter_get_node(&iter);
    if (ht_node == NULL)
        return NULL;
    return &node_of_ht_node(ht_node)->entry;
}

const store_entry_t *store_lookup(store_t *store, uint64_t hash,
                                  const void *key, size_t key_len,
                                  int64_t now_ms)
{
    const store_entry_t *entry =
        store_lookup_any(store, hash, key, key_len);

    if (entry == NULL || entry_is_tombstone(entry) ||
        entry_is_expired(entry, now_ms))
        return NULL;
    return entry;
}

/* ---- writes ---- */

void store_key_lock(store_t *store, uint64_t hash)
{
    assert(held_key_locks == 0);

    int rc = pthread_mutex_lock(stripe_of(store, hash));
    assert(rc == 0);
    (void)rc;
    held_key_locks++;
}

void store_key_unlock(store_t *store, uint64_t hash)
{
    assert(held_key_locks == 1);

    held_key_locks--;
    int rc = pthread_mutex_unlock(stripe_of(store, hash));
    assert(rc == 0);
    (void)rc;
}

void store_put(store_t *store, store_entry_t *entry)
{
    struct store_node *node = node_of_entry(entry);
    struct key_ref ref = {entry->key, entry->key_len};

    /* Counting first keeps a remover that unlinks the new entry at once
     * from lowering a counter before it was raised. */
    counters_add(store, entry);

    urcu_memb_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_replace(
        store->table, entry->hash, match_key, &ref, &node->ht_node);
    urcu_memb_read_unlock();

    if (old != NULL) {
        struct store_node *old_node = node_of_ht_node(old);
        counters_sub(store, &old_node->entry);
        urcu_memb_call_rcu(&old_node->rcu, free_node_rcu);
    }
}

pc_err_t store_apply(store_t *store, store_entry_t *entry)
{
    store_key_lock(store, entry->hash);

    urcu_memb_read_lock();
    const store_entry_t *current =
        store_lookup_any(store, entry->hash, entry->key, entry->key_len);
    bool stale =
        current != NULL && version_cmp(entry->version, current->version) <= 0;
    urcu_memb_read_unlock();

    if (!stale)
        store_put(store, entry);
    store_key_unlock(store, entry->hash);

    if (stale) {
        store_entry_free(entry);
        return PC_ERR_STALE;
    }
    return PC_OK;
}

/* ---- iteration and removal ---- */

/* Steps through the table inside a read-side section. Unlike
 * cds_lfht_for_each_entry, this never applies container_of to the NULL
 * that ends the walk, which is undefined and trips UBSan. */
static struct store_node *walk_first(store_t *store,
                                     struct cds_lfht_iter *iter)
{
    cds_lfht_first(store->table, iter);
    struct cds_lfht_node *ht_node = cds_lfht_iter_get_node(iter);
    return ht_node == NULL ? NULL : node_of_ht_node(ht_node);
}

static struct store_node *walk_next(store_t *store,
                                    struct cds_lfht_iter *iter)
{
    cds_lfht_next(store->table, iter);
    struct cds_lfht_node *ht_node = cds_lfht_iter_get_node(iter);
    return ht_node == NULL ? NULL : node_of_ht_node(ht_node);
}

int store_foreach(store_t *store,
                  int (*fn)(const store_entry_t *entry, void *arg), void *arg)
{
    struct cds_lfht_iter iter;
    struct store_node *node;
    int result = 0;

    urcu_memb_read_lock();
    for (node = walk_first(store, &iter); node != NULL;
         node = walk_next(store, &iter)) {
        result = fn(&node->entry, arg);
        if (result != 0)
            break;
    }
    urcu_memb_read_unlock();

    return result;
}

/* Unlinks one node, inside a read-side section. Holding the key's lock
 * orders the removal with that key's writers, so the entry a writer looked
 * up under the lock stays current until that writer publishes. Returns
 * false when a writer replaced or another remover unlinked the node first. */
static bool remove_node(store_t *store, struct store_node *node)
{
    store_key_lock(store, node->entry.hash);
    int rc = cds_lfht_del(store->table, &node->ht_node);
    store_key_unlock(store, node->entry.hash);

    if (rc != 0)
        return false;

    counters_sub(store, &node->entry);
    urcu_memb_call_rcu(&node->rcu, free_node_rcu);
    return true;
}

/* Removes every entry that classify marks for removal and raises the
 * counter that classify picks. Returns how many entries this call
 * unlinked. */
static uint64_t remove_where(store_t *store, classify_fn classify, void *arg)
{
    struct cds_lfht_iter iter;
    struct store_node *node;
    uint64_t removed = 0;

    urcu_memb_read_lock();
    for (node = walk_first(store, &iter); node != NULL;
         node = walk_next(store, &iter)) {
        removal_t removal = classify(&node->entry, arg);
        if (removal == REMOVAL_KEEP)
            continue;

        if (remove_node(store, node)) {
            counters_count_removal(store, removal);
            removed++;
        }
    }
    urcu_memb_read_unlock();

    return removed;
}

struct drop_if_args {
    bool (*pred)(const store_entry_t *entry, void *arg);
    void *arg;
};

static removal_t classify_drop_if(const store_entry_t *entry, void *arg)
{
    const struct drop_if_args *args = arg;

    return args->pred(entry, args->arg) ? REMOVAL_DROP_EVICTED
                                        : REMOVAL_KEEP;
}

uint64_t store_drop_if(store_t *store,
                       bool (*pred)(const store_entry_t *entry, void *arg),
                       void *arg)
{
    assert(!urcu_memb_read_ongoing());
    assert(held_key_locks == 0);

    struct drop_if_args args = {pred, arg};
    return remove_where(store, classify_drop_if, &args);
}

static removal_t classify_clear(const store_entry_t *entry, void *arg)
{
    (void)entry;
    (void)arg;
    return REMOVAL_DROP;
}

uint64_t store_clear(store_t *store)
{
    assert(held_key_locks == 0);
    return remove_where(store, classify_clear, NULL);
}

struct sweep_args {
    int64_t now_ms;
    int64_t tombstone_cutoff_ms; /* tombstones written before it go */
};

static removal_t classify_sweep(const store_entry_t *entry, void *arg)
{
    const struct sweep_args *args = arg;

    if (entry_is_tombstone(entry)) {
        int64_t written_ms = (int64_t)hlc_ms(entry->version.hlc);
        return written_ms < args->tombstone_cutoff_ms ? REMOVAL_DROP
                                                      : REMOVAL_KEEP;
    }
    return entry_is_expired(entry, args->now_ms) ? REMOVAL_DROP_EXPIRED
                                                 : REMOVAL_KEEP;
}

uint64_t store_sweep(store_t *store, int64_t now_ms,
                     int64_t tombstone_grace_ms)
{
    assert(!urcu_memb_read_ongoing());
    assert(held_key_locks == 0);
    assert(tombstone_grace_ms >= 0);

    struct sweep_args args = {
        .now_ms = now_ms,
        .tombstone_cutoff_ms = now_ms - tombstone_grace_ms,
    };
    return remove_where(store, classify_sweep, &args);
}

void store_stats(store_t *store, store_stats_t *stats)
{
    struct store_counters *c = &store->counters;

    stats->keys = atomic_load_explicit(&c->keys, memory_order_relaxed);
    stats->expiring =
        atomic_load_explicit(&c->expiring, memory_order_relaxed);
    stats->tombstones =
        atomic_load_explicit(&c->tombstones, memory_order_relaxed);
    stats->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
    stats->expired = atomic_load_explicit(&c->expired, memory_order_relaxed);
    stats->evicted = atomic_load_explicit(&c->evicted, memory_order_relaxed);
}
