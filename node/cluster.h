/* cluster: the actor that owns every ZeroMQ socket facing peers.
 *
 * One thread runs the actor. It binds the ROUTER (--peer-port) and PUB
 * (--pub-port) sockets and connects a DEALER and the SUB socket to every
 * peer. It keeps the member list, publishes routing views, joins through
 * seeds and streams keys to joining nodes (handoff). It also applies the
 * replication stream, executes requests that peers forward, and runs the
 * periodic work: heartbeats, membership gossip, expiry sweeps and dropping
 * keys that moved away. ZeroMQ sockets are not thread-safe, so no other
 * thread touches these sockets. Client I/O thread i talks to the actor over
 * an inproc PAIR socket at the endpoint cluster_io_endpoint(i), with the
 * pipe messages below.
 */
#ifndef PC_CLUSTER_H
#define PC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "node.h"

typedef struct cluster cluster_t;

/* Pipe messages between an I/O thread and the actor. Frame 1 is a
 * pipe_hdr_t; the frames that follow depend on the kind:
 *  - PIPE_FORWARD (I/O -> actor): frame 2 is an encoded REQUEST message
 *    for hdr.target.
 *  - PIPE_REPL (I/O -> actor): frame 2 holds hdr.target_count node ids of
 *    PIPE_ID_BYTES each (NUL-padded), frame 3 the key, frame 4 the value,
 *    frame 5 a pipe_repl_meta_t.
 *  - PIPE_REPLY (actor -> I/O): frame 2 is one whole RESP value, the
 *    reply to request hdr.req_id. */
#define PIPE_ID_BYTES (CONFIG_MAX_ID_BYTES + 1)

typedef enum {
    PIPE_FORWARD = 1,
    PIPE_REPL,
    PIPE_REPLY,
} pipe_kind_t;

#define PIPE_MAX_ALTERNATES 3

typedef struct pipe_hdr {
    uint32_t kind;          /* pipe_kind_t */
    uint32_t target_count;  /* PIPE_REPL */
    uint64_t req_id;        /* PIPE_FORWARD, PIPE_REPLY */
    char target[PIPE_ID_BYTES]; /* PIPE_FORWARD */
    /* PIPE_FORWARD of a read: other owners that may serve it when the
     * target is not connected. */
    uint32_t alternate_count;
    char alternates[PIPE_MAX_ALTERNATES][PIPE_ID_BYTES];
} pipe_hdr_t;

typedef struct pipe_repl_meta {
    uint64_t hlc;
    uint64_t origin;
    int64_t expire_ms;
    uint32_t flags;         /* STORE_FLAG_TOMBSTONE */
} pipe_repl_meta_t;

/* The request id's top byte names the I/O thread that sent it, so the
 * actor can route the reply back. */
#define REQ_ID_THREAD_SHIFT 56

/* Returns the inproc endpoint of I/O thread index (a static string per
 * call site is not kept: the caller's buffer of at least 64 bytes). */
void cluster_io_endpoint(unsigned index, char *out, size_t out_len);

/* Binds the peer sockets and the I/O pipes, then starts the actor thread
 * and waits until it runs. Returns PC_OK with the actor in *out, or
 * PC_ERR_ZMQ / PC_ERR_IO when a bind fails (logged with the address). Call
 * from the main thread before the I/O threads start. */
pc_err_t cluster_start(node_t *node, cluster_t **out);

/* Returns whether the node's view has a member that is up: at once for a
 * node that starts a new cluster, and after a seed's WELCOME for one that
 * joins. Until then the node cannot route a key. Any thread registered
 * with the store may call it. */
bool cluster_ready(node_t *node);

/* Tells the actor to stop, waits for its thread to end, closes its
 * sockets and frees it. Sets *cluster to NULL; accepts NULL. */
void cluster_stop(cluster_t **cluster);

#endif
