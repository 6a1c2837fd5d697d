/* harness: starts and stops peercached processes for system tests, and a
 * small blocking RESP client to talk to them.
 *
 * Criterion runs each test in its own process, so the harness keeps its
 * state (the temporary directory, the nodes started, the ports handed out)
 * per process. harness_setup and harness_teardown are the suite's .init
 * and .fini. Nodes are children of the test process and run with a
 * parent-death signal (SIGKILL), so a test that crashes or times out
 * cannot leave a node running. Teardown stops every node still running.
 * After a failed test it also prints the tail of each node's log to
 * stderr and keeps the directory.
 *
 * Only the test's main thread may start or stop nodes: the kernel sends
 * the parent-death signal when the thread that forked exits. A connection
 * belongs to one thread at a time. The client reads replies with its own
 * reader rather than proto/resp, so a bug in the node's protocol code
 * cannot hide itself in the test. All traffic goes to 127.0.0.1.
 */
#ifndef PC_HARNESS_H
#define PC_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <sys/types.h>

#define HARNESS_MAX_NODES 8
#define HARNESS_STOP_TIMEOUT_MS 5000
#define HARNESS_READY_TIMEOUT_MS 30000
#define HARNESS_IO_TIMEOUT_MS 5000
#define HARNESS_MAX_REPLY_DEPTH 32
#define HARNESS_MAX_REPLY_BYTES (256u * 1024 * 1024)
#define HARNESS_PIPELINE_BATCH 1000

typedef struct harness_node {
    char id[32];
    int port;        /* RESP client port */
    int peer_port;   /* ZeroMQ ROUTER port */
    int pub_port;    /* ZeroMQ PUB port */
    int replicas;    /* --replicas */
    int seed_port;   /* peer port of the seed, 0 to start a new cluster */
    pid_t pid;       /* 0 when not running */
    char log_path[PATH_MAX + 64];
} harness_node_t;

/* Creates this test's temporary directory under /tmp and registers an
 * exit handler that kills any node still running. Use as Criterion .init;
 * it does not assert, so a failure shows up when a node cannot start. */
void harness_setup(void);

/* Stops every node still running (SIGTERM, then SIGKILL after
 * HARNESS_STOP_TIMEOUT_MS). Unless harness_mark_passed ran, it prints each
 * node's log tail and keeps the directory; otherwise it removes the
 * directory. Use as Criterion .fini. */
void harness_teardown(void);

/* Records that the test body reached its end, which makes teardown quiet. */
void harness_mark_passed(void);

/* Registers a node with the given id and three fresh loopback ports
 * (client, peer, publish) not handed out before in this process. seed is
 * the node to join through, or NULL to start a new cluster. Does not
 * start it. Returns NULL when HARNESS_MAX_NODES are registered or no port
 * is free; the harness owns the result. */
harness_node_t *harness_node_add(const char *id, int replicas,
                                 const harness_node_t *seed);

/* Starts the node's process with its output appended to its log file.
 * Returns false, with the reason on stderr, if it is already running or
 * the fork failed. Does not wait for readiness. Main thread only. */
bool harness_node_start(harness_node_t *node);

/* Sends SIGTERM and waits up to timeout_ms for the node to exit. Returns
 * true with the wait status in *status when it exited in time; otherwise
 * kills it with SIGKILL, reaps it, and returns false. Main thread only. */
bool harness_node_stop(harness_node_t *node, int timeout_ms, int *status);

/* Stops every running node with HARNESS_STOP_TIMEOUT_MS each. Returns
 * true when all exited in time with status 0 and no node's log, including
 * those of nodes stopped earlier, contains a sanitizer report. Names the
 * others on stderr. Main thread only. */
bool harness_stop_all(void);

/* Registers count nodes named node1..nodeN, the first starting the
 * cluster and the others joining through it, starts them, and waits until
 * each lists count members up. Fills nodes[0..count). Returns false, with
 * the reason on stderr, on any failure. Main thread only. */
bool harness_start_cluster(harness_node_t **nodes, size_t count,
                           int replicas);

/* Polls until every node replies +PONG to PING and its CLUSTER NODES lists
 * `members` members in state "up", or timeout_ms passes. Returns whether
 * all were ready; on timeout prints what each node last reported. */
bool harness_wait_ready(harness_node_t *const *nodes, size_t count,
                        size_t members, int timeout_ms);

/* Returns whether the node's log contains needle, ignoring case. */
bool harness_log_contains(const harness_node_t *node, const char *needle);

/* Prints the last lines of every registered node's log to stderr. */
void harness_dump_logs(void);

/* Milliseconds from a monotonic clock, for deadlines. */
long long harness_now_ms(void);

/* Sleeps for ms milliseconds. */
void harness_sleep_ms(int ms);

/* One reply, with its elements when it is an array. */
typedef struct harness_reply {
    char type;          /* '+', '-', ':', '$' or '*' */
    long long integer;  /* ':' value; for '$' and '*' the length, -1 nil */
    char *str;          /* '+', '-', '$' bytes plus a NUL; NULL for nil */
    size_t len;         /* bytes in str, without the NUL */
    size_t count;       /* '*' elements */
    struct harness_reply **elements;
} harness_reply_t;

/* One command for harness_pipeline. lens may be NULL for C strings. */
typedef struct harness_command {
    size_t argc;
    const char *const *argv;
    const size_t *lens;
} harness_command_t;

typedef struct harness_conn harness_conn_t;

/* Connects to 127.0.0.1:port with HARNESS_IO_TIMEOUT_MS send and receive
 * timeouts. Returns NULL, printing nothing, when the connection fails. */
harness_conn_t *harness_connect(int port);

/* Closes the connection and sets *conn to NULL; NULL is ignored. */
void harness_conn_close(harness_conn_t **conn);

/* Buffers one multibulk command; lens NULL means each argument is a C
 * string. Nothing is sent until harness_flush. */
void harness_append(harness_conn_t *conn, size_t argc,
                    const char *const *argv, const size_t *lens);

/* Buffers raw bytes to send as they are. */
void harness_append_raw(harness_conn_t *conn, const void *data, size_t len);

/* Sends everything buffered. Returns false, with the reason on stderr,
 * if the send failed or timed out. */
bool harness_flush(harness_conn_t *conn);

/* Reads one whole reply. Returns NULL, with the reason on stderr, on
 * timeout, closed connection, a malformed reply, or one over
 * HARNESS_MAX_REPLY_BYTES or HARNESS_MAX_REPLY_DEPTH. The caller frees
 * the result with harness_reply_free. */
harness_reply_t *harness_read(harness_conn_t *conn);

/* Reads up to cap raw bytes, first from what the client already buffered.
 * Returns the count, 0 when the node closed the connection, or -1 on
 * timeout or error. */
ssize_t harness_read_raw(harness_conn_t *conn, void *buf, size_t cap);

/* Frees a reply and its elements; NULL is ignored. */
void harness_reply_free(harness_reply_t *reply);

/* Sends one command and reads its reply, as harness_read returns it. */
harness_reply_t *harness_cmdv(harness_conn_t *conn, size_t argc,
                              const char *const *argv, const size_t *lens);

/* harness_cmdv for C-string arguments ending with NULL. */
harness_reply_t *harness_cmd(harness_conn_t *conn, const char *arg, ...)
    __attribute__((sentinel));

/* Runs a command that must return an integer and stores it in *value.
 * Returns false, printing the reply it got, for any other reply. */
bool harness_cmd_int(harness_conn_t *conn, long long *value,
                     const char *arg, ...) __attribute__((sentinel));

/* Runs a command that must return a bulk string or nil. On success
 * *data is a malloc'd copy with a NUL after *len bytes, or NULL for nil;
 * the caller frees it. Returns false, printing the reply it got, for any
 * other reply. */
bool harness_cmd_bulk(harness_conn_t *conn, char **data, size_t *len,
                      const char *arg, ...) __attribute__((sentinel));

/* Runs a command and returns its simple-string reply ("OK") as a
 * malloc'd string, or NULL, printing the reply it got, for any other
 * reply. The caller frees the result. */
char *harness_cmd_status(harness_conn_t *conn, const char *arg, ...)
    __attribute__((sentinel));

/* Sends count commands in batches of HARNESS_PIPELINE_BATCH, each batch in
 * one write followed by reading its replies, so neither side's buffers
 * fill up. replies[i] gets the reply to commands[i]. Returns how many
 * replies were read; fewer than count means a read failed and the rest of
 * replies is NULL. */
size_t harness_pipeline(harness_conn_t *conn, size_t count,
                        const harness_command_t *commands,
                        harness_reply_t **replies);

#endif
