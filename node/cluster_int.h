/* cluster_int: the actor's private state, shared by cluster.c (sockets,
 * forwarding, replication stream) and membership.c (member list, joining,
 * handoff). Only the actor thread touches any of it.
 */
#ifndef PC_CLUSTER_INT_H
#define PC_CLUSTER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "buf.h"
#include "cluster.h"
#include "msg.h"
#include "view.h"

#define CLUSTER_BEAT_INTERVAL_MS 200
#define CLUSTER_GOSSIP_INTERVAL_MS 1000
#define CLUSTER_SWEEP_INTERVAL_MS 100
#define CLUSTER_TOMBSTONE_GRACE_MS 60000
#define CLUSTER_JOIN_BACKOFF_MIN_MS 250
#define CLUSTER_JOIN_BACKOFF_MAX_MS 5000
#define CLUSTER_SUBSCRIBE_WAIT_MS 2000
#define CLUSTER_SYNC_TIMEOUT_MS 120000
/* Nodes that no longer own a key keep it this long after the view
 * changes, so that peers still routing by the old view find it. */
#define CLUSTER_DROP_GRACE_MS 3000
#define HANDOFF_BATCH_ENTRIES 256
#define HANDOFF_BATCH_BYTES (1u << 20)
#define HANDOFF_WINDOW 4
#define CLUSTER_SOCKET_HWM 1000000
/* Versions more than this far ahead of the local clock are rejected. */
#define CLUSTER_MAX_CLOCK_AHEAD_MS (60 * 60 * 1000)
/* A forwarded request whose peer is not connected yet (just joined, or
 * reconnecting) waits this long in the actor before it fails. */
#define CLUSTER_FORWARD_HOLD_MS 1000
#define CLUSTER_HOLD_RETRY_MS 5
#define CLUSTER_SCRATCH_MAX_BYTES (MSG_MAX_FRAME_BYTES)

typedef enum {
    JOIN_DONE = 0,  /* serving: started alone or finished joining */
    JOIN_SEEDING,   /* sending JOIN to the seeds until one replies */
    JOIN_SUBSCRIBING, /* waiting for a BEAT from every member */
    JOIN_SYNCING,   /* waiting for the handoff from every member */
} join_state_t;

/* A stream of HANDOFF batches to one joining node. */
typedef struct handoff {
    pc_buf_t *batches;   /* encoded HANDOFF messages, in order */
    size_t count;
    size_t sent;         /* batches sent so far */
    size_t acked;        /* highest batch number acknowledged */
    uint64_t keys;       /* entries in the whole stream */
    int64_t started_ms;
} handoff_t;

/* A forwarded request waiting for its peer's connection. */
typedef struct held_request {
    struct held_request *next;
    uint64_t req_id;
    int64_t deadline_ms;
    char target[PIPE_ID_BYTES];
    size_t len;
    char data[];
} held_request_t;

typedef struct peer {
    member_t member;
    void *dealer;               /* DEALER connected to the peer's ROUTER */
    char sub_endpoint[300];     /* SUB connection, "" when not connected */
    uint64_t out_seq;           /* last REPL sequence number sent to it */
    uint64_t in_epoch;          /* its stream to us: epoch, 0 before any */
    uint64_t in_seq;            /* and the highest sequence number seen */
    int64_t last_beat_ms;       /* 0 until a BEAT arrived */
    bool sync_sent;             /* we asked it for our keys */
    bool sync_done;             /* its handoff to us has ended */
    uint64_t sync_keys;         /* entries received from it */
    handoff_t *handoff;         /* our stream to it, when it is joining */
    bool resync_running;        /* we asked it to resend our keys after a gap */
    bool resync_again;          /* another gap arrived while it ran */
} peer_t;

struct cluster {
    node_t *node;
    pthread_t thread;
    void *control_main;  /* main thread's end of the control pipe */
    void *control;       /* actor's end */
    void *router;
    void *pub;
    void *sub;
    void **pipes;        /* one PAIR per I/O thread */
    unsigned pipe_count;

    member_t self;
    peer_t *peers;       /* every other member */
    size_t peer_count;
    size_t peer_cap;
    view_t *view;        /* the view last published; the actor owns it */
    uint64_t generation;

    join_state_t join_state;
    void **seed_dealers;
    size_t seed_dealer_count;
    unsigned join_attempts;
    int64_t next_join_ms;
    int64_t join_deadline_ms;

    int64_t drop_at_ms;  /* 0 when no drop is scheduled */
    int64_t next_beat_ms;
    int64_t next_gossip_ms;
    int64_t next_sweep_ms;
    int64_t malformed_logged_ms;
    uint64_t malformed_suppressed;
    int64_t gap_logged_ms;
    int64_t forward_failure_logged_ms;

    pc_buf_t scratch;    /* encoding buffer, reused */
    held_request_t *held_head; /* in arrival order */
    held_request_t *held_tail;
};

/* cluster.c */
int64_t cluster_now_ms(void);
peer_t *cluster_find_peer(cluster_t *c, const char *id, size_t len);
int cluster_send_dealer(cluster_t *c, peer_t *peer, const pc_buf_t *payload);
/* Replies on the ROUTER to the peer whose routing id is given. */
void cluster_send_router(cluster_t *c, zmq_msg_t *routing_id, const pc_buf_t *payload);
void cluster_set_routing_id(cluster_t *c, void *dealer);
void cluster_note_malformed(cluster_t *c, const char *peer, const char *why);
void cluster_publish_entry(cluster_t *c, const char *const *targets,
                           size_t target_count, const msg_entry_t *entry);
pc_err_t cluster_apply_entry(cluster_t *c, const msg_entry_t *entry);
/* Counts and logs an entry that cluster_apply_entry rejected. */
void cluster_note_apply_failure(cluster_t *c, msg_bytes_t from, pc_err_t err);

/* membership.c */
pc_err_t membership_start(cluster_t *c);
void membership_stop(cluster_t *c);
void membership_tick(cluster_t *c, int64_t now);
int64_t membership_next_deadline(cluster_t *c);
void membership_fill_self(cluster_t *c, msg_member_t *out);
pc_err_t membership_encode(cluster_t *c, msg_type_t type, pc_buf_t *out);
bool membership_merge(cluster_t *c, const msg_member_t *members, size_t count,
                      const char *source);
void membership_publish_view(cluster_t *c);
void membership_broadcast(cluster_t *c);
void membership_on_join(cluster_t *c, zmq_msg_t *routing_id, const msg_t *msg);
void membership_on_welcome(cluster_t *c, const msg_t *msg);
void membership_on_sync(cluster_t *c, const msg_t *msg);
void membership_on_handoff(cluster_t *c, zmq_msg_t *routing_id, const msg_t *msg);
void membership_on_ack(cluster_t *c, peer_t *peer, const msg_t *msg);
void membership_on_beat(cluster_t *c, const msg_t *msg);
void membership_request_resync(cluster_t *c, peer_t *peer);
void membership_remove_peer_sockets(cluster_t *c, peer_t *peer);

#endif
