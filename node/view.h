/* view: an immutable snapshot of the membership and the rings built from
 * it, which every thread routes by.
 *
 * The cluster actor builds a new view after each membership change and
 * publishes it with rcu_xchg_pointer. Client I/O threads read the current
 * one inside an RCU read-side section, so a view never changes under them.
 *
 * Placement uses the write ring, which has every member, joining ones
 * included, so a joining node receives the writes of its future slices.
 * A joining node does not serve yet: the owners of a key are the write
 * ring's preference list without joining members. Adding one node only
 * inserts it into preference lists, so the owners that remain held the key
 * before; a restarted node keeps its old place on the ring, so its keys
 * stay with the replicas that have them. Only when every listed node is
 * joining (a replication factor of 1) do the owners come from the read
 * ring, which has the members that are up.
 */
#ifndef PC_VIEW_H
#define PC_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu/urcu-memb.h>

#include "config.h"
#include "err.h"
#include "ring.h"

#define VIEW_MAX_MEMBERS 1024
#define VIEW_MAX_REPLICAS 16

typedef enum {
    MEMBER_JOINING = 1, /* receiving its keys */
    MEMBER_UP = 2,      /* owns its slices */
} member_state_t;

typedef struct member {
    char id[CONFIG_MAX_ID_BYTES + 1];
    char host[CONFIG_MAX_HOST_BYTES + 1];
    uint16_t port;
    uint16_t peer_port;
    uint16_t pub_port;
    uint8_t state;         /* member_state_t */
    uint64_t incarnation;  /* start time in ms */
} member_t;

typedef struct view {
    member_t *members;     /* sorted by id */
    size_t count;
    int self;              /* index of this node in members */
    uint32_t replicas;     /* configured replication factor */
    uint64_t generation;   /* increases with every view the actor builds */

    ring_t *read_ring;     /* up members; NULL when none is up */
    uint32_t *read_map;    /* read ring node index -> members index */
    ring_t *write_ring;    /* up and joining members */
    uint32_t *write_map;

    struct rcu_head rcu;   /* for call_rcu when the view is replaced */
} view_t;

/* Builds a view from count members (any order; copied and sorted) in
 * which self_id must appear. Returns PC_OK and the view in *out (caller
 * owns it), PC_ERR_INVALID when self_id is missing or an id repeats, or
 * PC_ERR_NOMEM. */
pc_err_t view_new(const member_t *members, size_t count, const char *self_id,
                  uint32_t vnodes, uint32_t replicas, uint64_t generation,
                  view_t **out);

/* Frees the view and sets *view to NULL; accepts NULL. */
void view_destroy(view_t **view);

/* Writes the owners of the key at hash (primary first) into out as member
 * indexes: the nodes that serve its reads and the first of which runs its
 * writes. Returns how many, 0 when no member is up. */
size_t view_owners(const view_t *view, uint64_t hash, uint32_t *out);

/* Writes every member that must hold the key at hash: its owners and the
 * joining members that will own it, without repeats. Returns how many (at
 * most 2 * VIEW_MAX_REPLICAS). */
size_t view_holders(const view_t *view, uint64_t hash, uint32_t *out);

/* Returns whether member index is an owner of the key. */
bool view_owns(const view_t *view, uint64_t hash, uint32_t member);

/* Returns whether member index must hold the key. */
bool view_holds(const view_t *view, uint64_t hash, uint32_t member);

/* Returns the member index of id, or -1. */
int view_find(const view_t *view, const char *id);

/* Returns whether any member is joining. */
bool view_has_joining(const view_t *view);

/* Returns the state's name: "up" or "joining". */
const char *member_state_name(uint8_t state);

#endif
