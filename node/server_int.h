/* server_int: connections and I/O threads, shared by server.c (event
 * loop, reading, writing) and router.c (where each command runs). Only the
 * I/O thread that owns a connection touches it.
 */
#ifndef PC_SERVER_INT_H
#define PC_SERVER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "cmd.h"
#include "node.h"
#include "resp.h"

/* Cap of one connection's unsent replies. Past it the client is
 * disconnected, like Redis's client-output-buffer-limit. A single reply
 * may reach 512 MiB, so the cap is above that. */
#define CONN_OUTPUT_MAX_BYTES (1024ull * 1024 * 1024)
/* Past this much unsent output a connection stops reading requests until
 * the client catches up, so one slow reader cannot grow memory. */
#define CONN_OUTPUT_PAUSE_BYTES (4u * 1024 * 1024)
/* A request may carry a 512 MiB bulk plus its framing. */
#define CONN_INPUT_MAX_BYTES (RESP_MAX_BULK_BYTES + 64 * 1024 * 1024)
#define CONN_READ_BYTES (64 * 1024)
#define SERVER_MAX_CLIENTS 10000
/* How long a forwarded request may wait for its peer's reply. */
#define ROUTER_TIMEOUT_MS 5000

/* A reply whose bytes arrive later (forwarded) or that follows one that
 * does. Replies leave in request order, so a ready slot waits behind a
 * pending one. */
typedef struct slot {
    struct slot *next;
    bool ready;
    pc_buf_t data;
} slot_t;

typedef struct io_thread io_thread_t;

typedef struct conn {
    struct client info;    /* what command handlers see */
    int fd;
    io_thread_t *io;
    struct conn *prev;     /* the thread's list of connections */
    struct conn *next;
    pc_buf_t in;
    resp_parser_t parser;
    cmd_arg_t *argv;       /* reused for each request */
    size_t argv_cap;
    pc_buf_t out;          /* bytes ready to send, in order */
    size_t out_sent;       /* bytes of out already written */
    slot_t *slots_head;    /* replies not yet moved into out */
    slot_t *slots_tail;
    unsigned refs;         /* fan-outs still waiting on this connection */
    bool closed;           /* the socket is gone; free when refs is 0 */
    bool want_write;       /* EPOLLOUT is registered */
    bool paused;           /* reading stopped until output drains */
    bool protocol_error;   /* close once the error reply is sent */
} conn_t;

typedef struct router router_t;

struct io_thread {
    node_t *node;
    unsigned index;
    pthread_t thread;
    int epoll_fd;
    int listen_fd;
    int stop_fd;           /* eventfd the main thread writes to stop it */
    struct server *server;
    /* Accepted sockets that thread 0 queued for this thread. */
    pthread_mutex_t handoff_lock;
    int *handoff_fds;
    size_t handoff_count;
    size_t handoff_cap;
    int handoff_event;     /* eventfd thread 0 writes after queueing */
    void *pipe;            /* PAIR to the cluster actor */
    int pipe_fd;           /* ZMQ_FD of pipe, for epoll */
    conn_t *conns;
    router_t *router;
    bool pipe_dirty;       /* the pipe may hold messages: check it */
    uint64_t commands;     /* counts not yet added to the node's stats, */
    uint64_t input_bytes;  /* batched so that threads do not contend on */
    uint64_t output_bytes; /* the shared counters for every request */
};

/* server.c: reply slots of a connection. */
pc_buf_t *conn_reply_buf(conn_t *conn);
slot_t *conn_defer(conn_t *conn);
void conn_complete(conn_t *conn, slot_t *slot);
void conn_release(conn_t *conn);

/* router.c */
router_t *router_new(io_thread_t *io);
void router_destroy(router_t **router);

/* Runs or forwards one parsed command; its reply goes to conn in order. */
void router_dispatch(router_t *router, conn_t *conn, int argc, const cmd_arg_t *argv);

/* Handles a PIPE_REPLY from the actor. */
void router_on_reply(router_t *router, uint64_t req_id, const char *resp, size_t len);

/* Fails fan-outs whose peers did not reply in time. */
void router_expire(router_t *router, int64_t now_ms);

#endif
