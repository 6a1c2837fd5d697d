/* node: the state one peercached process shares between its threads.
 *
 * The main thread fills a node_t, starts the cluster actor and the client
 * I/O threads, and stops them in the reverse order. Fields set before the
 * threads start are read-only afterwards. The stats are atomic counters
 * that any thread may add to. The view is published by the cluster actor
 * through RCU, and every other thread reads it inside store_read_lock /
 * store_read_unlock.
 */
#ifndef PC_NODE_H
#define PC_NODE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "hlc.h"
#include "store.h"
#include "view.h"

#define CLIENT_NAME_MAX_BYTES 128

typedef struct node_stats {
    _Atomic uint64_t connections_received;
    _Atomic uint64_t connections_rejected;
    _Atomic uint64_t connected_clients;
    _Atomic uint64_t commands_processed;
    _Atomic uint64_t net_input_bytes;
    _Atomic uint64_t net_output_bytes;
    _Atomic uint64_t forwarded_requests;   /* sent to a peer */
    _Atomic uint64_t forwarded_failures;   /* unreachable peer or timeout */
    _Atomic uint64_t peer_requests_served; /* executed for a peer */
    _Atomic uint64_t repl_sent;
    _Atomic uint64_t repl_applied;
    _Atomic uint64_t repl_stale;           /* lost to a newer version */
    _Atomic uint64_t repl_gaps;            /* missing sequence numbers */
    _Atomic uint64_t resyncs_requested;    /* after gaps */
    _Atomic uint64_t peer_messages_malformed;
    _Atomic uint64_t handoff_keys_sent;
    _Atomic uint64_t handoff_keys_received;
    _Atomic uint64_t keys_dropped;         /* no longer owned */
} node_stats_t;

/* The part of a client connection that command handlers see. */
struct client {
    uint64_t id;
    char name[CLIENT_NAME_MAX_BYTES + 1];
    bool close_after_reply; /* QUIT */
};

typedef struct node {
    config_t cfg;
    store_t *store;
    pc_hlc_t clock;
    uint64_t origin;        /* hash_bytes(cfg.node_id) */
    uint64_t start_ms;      /* wall clock at start, also the stream epoch */
    void *zmq_ctx;
    view_t *view;           /* RCU-protected; NULL until the node has joined */
    node_stats_t stats;
    _Atomic uint64_t next_client_id;
    struct cluster *cluster;
    struct server *server;
} node_t;

static inline void stat_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static inline uint64_t stat_get(_Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

#endif
