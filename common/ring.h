/* ring: the consistent-hash ring, a pure function of the member ids.
 *
 * Each node places vnodes tokens at hash_token(id, i) for i in
 * [0, vnodes). A key at position hash_bytes(key) belongs to the owners of
 * the next tokens clockwise (a token at the key's position counts), skipping
 * nodes already chosen, until the replication factor is reached. The first
 * owner is the primary. Equal token values are ordered by node id, so every
 * node that knows the same members builds the same ring.
 *
 * A ring is immutable after ring_new, so any number of threads may read it
 * at once; the caller decides when it is destroyed (the cluster publishes
 * rings through RCU).
 */
#ifndef PC_RING_H
#define PC_RING_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define RING_MAX_NODES 1024
#define RING_MAX_VNODES 4096

typedef struct ring ring_t;

/* Builds the ring of count nodes with vnodes tokens each. node_ids must be
 * sorted ascending by strcmp and unique; node i of the ring is node_ids[i].
 * The ids are not kept. Returns PC_OK and the ring in *out (the caller owns
 * it), PC_ERR_INVALID for count 0 or above RING_MAX_NODES, vnodes 0 or
 * above RING_MAX_VNODES, or ids out of order or repeated, or PC_ERR_NOMEM. */
pc_err_t ring_new(const char *const *node_ids, size_t count, uint32_t vnodes,
                  ring_t **out);

/* Frees the ring and sets *ring to NULL; accepts NULL. */
void ring_destroy(ring_t **ring);

/* Returns the number of nodes. */
size_t ring_node_count(const ring_t *ring);

/* Writes the preference list of the key at position key_hash into
 * out_nodes, primary first, as node indexes. Returns how many were written:
 * min(replicas, node count). out_nodes must have room for that many. */
size_t ring_preference(const ring_t *ring, uint64_t key_hash, size_t replicas,
                       uint32_t *out_nodes);

/* Returns the primary node index of the key at position key_hash. */
uint32_t ring_primary(const ring_t *ring, uint64_t key_hash);

/* Returns the fraction of the 64-bit ring, from 0 to 1, whose keys have
 * node_index as primary. */
double ring_share(const ring_t *ring, uint32_t node_index);

#endif
