/* cmd: the command table and the context command handlers run in.
 *
 * A handler executes one command against this node's local store and
 * appends exactly one RESP2 reply to ctx->out. Routing (which node runs a
 * command) is decided before the handler is called, from the table's flags
 * and key positions: a handler never forwards. Every write a handler makes
 * is built as a new entry with a fresh version, published with store_put
 * while the handler holds the key's lock, and passed to ctx->replicate so
 * that the cluster can send it to the other owners.
 *
 * Handlers run on client I/O threads (for keys this node serves) and on
 * the cluster actor thread (for requests forwarded by peers); both are
 * registered with the store.
 */
#ifndef PC_CMD_H
#define PC_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "hlc.h"
#include "store.h"

struct node;
struct client;

typedef struct cmd_arg {
    const char *ptr; /* not NUL-terminated */
    size_t len;
} cmd_arg_t;

typedef struct cmd_ctx {
    store_t *store;
    pc_hlc_t *clock;
    uint64_t origin;     /* hash_bytes of this node's id, for versions */
    int64_t now_ms;      /* wall clock when the command started */
    pc_buf_t *out;       /* the reply is appended here */

    /* Called once for every entry a handler publishes, while the key's
     * lock is still held, so that the stream order per key matches the
     * version order. May be NULL (tests). */
    void (*replicate)(void *arg, const store_entry_t *entry);
    void *replicate_arg;

    struct node *node;     /* NULL outside a running node (tests) */
    struct client *client; /* NULL for forwarded requests */
} cmd_ctx_t;

typedef void cmd_fn_t(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv);

/* Routing classes. */
enum {
    CMD_READ = 1u << 0,      /* reads keys: any owner serves it */
    CMD_WRITE = 1u << 1,     /* writes keys: the primary runs it */
    CMD_NOKEY = 1u << 2,     /* no keys: the receiving node runs it */
    CMD_ALL_NODES = 1u << 3, /* runs on every member (FLUSHALL) */
    CMD_CLIENT = 1u << 4,    /* needs the client (QUIT, CLIENT, HELLO): never forwarded */
};

/* How replies of a multi-key command split across owners are merged. */
typedef enum {
    CMD_MERGE_NONE = 0, /* single key, or all keys on one node */
    CMD_MERGE_ARRAY,    /* MGET: array elements back in key order */
    CMD_MERGE_SUM,      /* DEL, EXISTS, TOUCH, UNLINK: sum of integers */
    CMD_MERGE_OK,       /* MSET: +OK when every part replied +OK */
    CMD_MERGE_CONCAT,   /* KEYS: the elements of every part's array */
    CMD_MERGE_SCAN,     /* SCAN: cursor 0 and every part's keys */
} cmd_merge_t;

typedef struct cmd_def {
    const char *name;   /* lower case */
    int arity;          /* as Redis: N exactly, or -N for at least N (name included) */
    unsigned flags;     /* CMD_READ, CMD_WRITE, ... */
    int first_key;      /* argv index of the first key, 0 for none */
    int last_key;       /* argv index of the last key, -1 for the last argument */
    int key_step;       /* distance between keys (2 for MSET) */
    cmd_merge_t merge;
    cmd_fn_t *fn;
} cmd_def_t;

/* Finds a command by name, case-insensitively. Returns NULL when unknown. */
const cmd_def_t *cmd_lookup(const char *name, size_t len);

/* Returns whether argc satisfies def's arity. */
int cmd_arity_ok(const cmd_def_t *def, int argc);

/* Appends Redis's "wrong number of arguments" error for def's command. */
void cmd_reply_arity_error(pc_buf_t *out, const char *name);

/* Appends Redis's unknown-command error, quoting up to the first few
 * arguments as Redis 7 does. */
void cmd_reply_unknown(pc_buf_t *out, int argc, const cmd_arg_t *argv);

/* Runs the command in argv (argv[0] is its name) locally: looks it up,
 * checks the arity and calls its handler. Used for requests that peers
 * forward. */
void cmd_execute(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv);

/* Tables of the modules, terminated by an entry with a NULL name. */
extern const cmd_def_t cmd_keys_table[];   /* cmd_keys.c: strings and keys */
extern const cmd_def_t cmd_server_table[]; /* cmd_server.c: connection and server */

/* Helpers shared by the handlers. */

/* Parses a whole decimal integer the way Redis's string2ll does: an
 * optional '-', no spaces, no leading zeros, no '+', within long long.
 * Returns 0 on success, -1 otherwise. */
int cmd_parse_ll(const char *ptr, size_t len, long long *out);

/* Case-insensitive comparison of an argument with a lower-case word. */
int cmd_arg_is(const cmd_arg_t *arg, const char *word);

#endif
