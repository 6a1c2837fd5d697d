/* store: the node's local key-value store, a concurrent hash table of
 * immutable, versioned entries.
 *
 * Built on liburcu's lock-free hash table (cds_lfht) with the memb RCU
 * flavor. An update builds a whole new entry and publishes it with one
 * atomic replace, so a reader sees the old or the new entry, never a torn
 * one, and takes no lock. A replaced or removed entry is freed through
 * call_rcu only after every reader that could still see it has left its
 * read-side section.
 *
 * Writers of one key are serialised by a striped mutex (store_key_lock),
 * which makes read-modify-write commands atomic on the primary and lets
 * store_apply compare versions without a race. Readers never take it.
 *
 * Threads: every thread that calls into the store must first call
 * store_thread_register and, before it exits, store_thread_unregister.
 * Entry pointers returned by lookups are valid only inside
 * store_read_lock / store_read_unlock on the same thread.
 *
 * Expiry times are absolute milliseconds since the Unix epoch (0: none). An
 * entry whose expiry is at or before "now" is treated as missing by
 * lookups (lazy expiry) and removed by store_sweep. Deletes are tombstones
 * that carry a version, so an older write arriving later cannot resurrect
 * the key; store_sweep removes tombstones once their version is older than
 * the grace period given.
 */
#ifndef PC_STORE_H
#define PC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hlc.h"

/* Largest key and largest value, as Redis's proto-max-bulk-len. */
#define STORE_MAX_KEY_BYTES (512u * 1024 * 1024)
#define STORE_MAX_VALUE_BYTES (512u * 1024 * 1024)

#define STORE_FLAG_TOMBSTONE 0x1u

typedef struct store store_t;

/* One immutable version of a key. Fields are read-only once the entry is
 * published; the hidden part holds the hash-table node and the RCU head. */
typedef struct store_entry {
    pc_version_t version;
    uint64_t hash;       /* hash_bytes(key) */
    int64_t expire_ms;   /* absolute expiry, 0 for none */
    uint32_t flags;      /* STORE_FLAG_TOMBSTONE */
    uint32_t key_len;
    size_t value_len;    /* 0 for a tombstone */
    const char *key;     /* key_len bytes, inside the entry's allocation */
    const char *value;   /* value_len bytes, followed by a NUL byte */
} store_entry_t;

typedef struct store_stats {
    uint64_t keys;        /* live entries: neither tombstones nor swept */
    uint64_t expiring;    /* live entries with an expiry time */
    uint64_t tombstones;
    uint64_t bytes;       /* memory of all entries, headers included */
    uint64_t expired;     /* entries removed by expiry, since start */
    uint64_t evicted;     /* entries removed by store_drop_if, since start */
} store_stats_t;

/* Creates an empty store. Returns PC_OK and the store in *out (the caller
 * owns it) or PC_ERR_NOMEM. The calling thread must be registered. */
pc_err_t store_new(store_t **out);

/* Frees every entry and the table, and sets *store to NULL; accepts NULL.
 * No other thread may use the store any more. The calling thread must be
 * registered and outside a read-side section. */
void store_destroy(store_t **store);

/* Registers or unregisters the calling thread with RCU. */
void store_thread_register(void);
void store_thread_unregister(void);

/* Enters and leaves an RCU read-side section; sections nest. */
void store_read_lock(void);
void store_read_unlock(void);

/* Finds the live entry of a key, inside a read-side section. Returns NULL
 * when the key is missing, is a tombstone, or has expired at now_ms. */
const store_entry_t *store_lookup(store_t *store, uint64_t hash,
                                  const void *key, size_t key_len,
                                  int64_t now_ms);

/* As store_lookup, but also returns tombstones and expired entries, for
 * version comparisons. */
const store_entry_t *store_lookup_any(store_t *store, uint64_t hash,
                                      const void *key, size_t key_len);

/* Serialises writers of the key at hash; readers never wait on it. Locks
 * of one thread may not nest. While holding one, a thread must not call
 * store_drop_if, store_clear, store_sweep or store_destroy. Those take
 * key locks themselves, and removals wait for a key lock inside a read-side
 * section, so a lock holder must never wait for readers. */
void store_key_lock(store_t *store, uint64_t hash);
void store_key_unlock(store_t *store, uint64_t hash);

/* Builds an unpublished entry: copies the key and value, the value
 * followed by a NUL byte. value may be NULL when value_len is 0. Returns
 * PC_OK and the entry in *out (the caller owns it until it passes it to
 * store_put or store_apply, or frees it with store_entry_free),
 * PC_ERR_TOO_BIG past the key or value cap, or PC_ERR_NOMEM. */
pc_err_t store_entry_new(uint64_t hash, const void *key, size_t key_len,
                         const void *value, size_t value_len,
                         int64_t expire_ms, pc_version_t version,
                         uint32_t flags, store_entry_t **out);

/* Builds an entry whose value is the concatenation of two parts, so that
 * APPEND and SETRANGE need no intermediate copy. Same rules as
 * store_entry_new. */
pc_err_t store_entry_new2(uint64_t hash, const void *key, size_t key_len,
                          const void *part1, size_t len1, const void *part2,
                          size_t len2, int64_t expire_ms, pc_version_t version,
                          uint32_t flags, store_entry_t **out);

/* Frees an entry that was never published; accepts NULL. */
void store_entry_free(store_entry_t *entry);

/* Publishes entry as the key's current version, replacing whatever is
 * there without comparing versions. The caller holds the key's lock and
 * has checked the version; the store owns the entry afterwards. */
void store_put(store_t *store, store_entry_t *entry);

/* Publishes entry only when its version is newer than the stored one
 * (last writer wins), taking the key's lock itself. Returns PC_OK when
 * applied, or PC_ERR_STALE when an equal or newer version is stored, in
 * which case the entry is freed. The store owns the entry either way. */
pc_err_t store_apply(store_t *store, store_entry_t *entry);

/* Calls fn for every entry, tombstones and expired ones included, inside
 * one read-side section; fn must not call into the store's write side.
 * Stops early and returns fn's result when it is not 0; returns 0
 * otherwise. */
int store_foreach(store_t *store,
                  int (*fn)(const store_entry_t *entry, void *arg), void *arg);

/* Removes, without tombstones, every entry for which pred returns true,
 * for example keys this node no longer owns. Returns how many were
 * removed. The calling thread must not be in a read-side section. */
uint64_t store_drop_if(store_t *store,
                       bool (*pred)(const store_entry_t *entry, void *arg),
                       void *arg);

/* Removes every entry. Returns how many were removed. */
uint64_t store_clear(store_t *store);

/* Removes entries expired at now_ms and tombstones whose version
 * timestamp is older than now_ms - tombstone_grace_ms. Returns how many
 * were removed. The calling thread must not be in a read-side section. */
uint64_t store_sweep(store_t *store, int64_t now_ms,
                     int64_t tombstone_grace_ms);

/* Fills *stats from the store's counters. */
void store_stats(store_t *store, store_stats_t *stats);

#endif
