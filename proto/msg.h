/* msg: peer messages, encoded as one msgpack map per ZeroMQ frame.
 *
 * Every map has "v" (protocol version, MSG_PROTOCOL_VERSION), "type" (a
 * msg_type_t as a positive integer) and "from" (the sender's node id); the
 * other keys depend on the type, as docs/PROTOCOL.md tables. Unknown keys
 * are ignored so that later versions can add fields.
 *
 * Decoding never trusts its input: the frame size is capped, the msgpack
 * structure is walked first to check that every declared array, map, string
 * and binary length fits in the bytes that remain (msgpack-c would
 * otherwise allocate for a 6-byte header that claims 4 billion elements),
 * the whole input must be consumed, and every required key must be present
 * with its type and within its limit. A decoded message points into
 * storage owned by the msg_t until msg_fini.
 *
 * Encoding and decoding use no shared state; any thread may call them.
 */
#ifndef PC_MSG_H
#define PC_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/err.h"

#define MSG_PROTOCOL_VERSION 1

/* Caps applied by msg_decode (and asserted by msg_encode's callers). */
#define MSG_MAX_FRAME_BYTES (1100ull * 1024 * 1024) /* two 512 MiB bulks */
#define MSG_MAX_ID_BYTES 64
#define MSG_MAX_HOST_BYTES 255
#define MSG_MAX_MEMBERS 1024
#define MSG_MAX_ARGS (1024 * 1024)
#define MSG_MAX_ENTRIES 65536
#define MSG_MAX_DEPTH 8

typedef enum {
    MSG_JOIN = 1,  /* a node asks a seed to join */
    MSG_WELCOME,   /* the seed's reply to JOIN: the member list */
    MSG_MEMBERS,   /* the sender's member list, after a change or periodically */
    MSG_REQUEST,   /* a forwarded client command */
    MSG_REPLY,     /* the RESP reply to a REQUEST */
    MSG_REPL,      /* one replicated write, on the PUB/SUB stream */
    MSG_ACK,       /* acknowledges a HANDOFF batch */
    MSG_SYNC,      /* a joining node asks a member for the keys it now owns */
    MSG_HANDOFF,   /* a batch of entries streamed to a joining node */
    MSG_BEAT,      /* periodic heartbeat on the PUB/SUB stream */
    MSG__TYPE_COUNT
} msg_type_t;

/* Member states, in merge order: for equal incarnations the larger wins. */
typedef enum {
    MSG_STATE_JOINING = 1, /* receiving its keys; not yet serving reads */
    MSG_STATE_UP = 2,      /* owns its slices */
} msg_member_state_t;

typedef struct msg_bytes {
    const char *ptr; /* not NUL-terminated; NULL for nil */
    size_t len;
} msg_bytes_t;

typedef struct msg_member {
    msg_bytes_t id;         /* 1..MSG_MAX_ID_BYTES */
    msg_bytes_t host;       /* 1..MSG_MAX_HOST_BYTES, advertised address */
    uint16_t port;          /* RESP client port */
    uint16_t peer_port;     /* ROUTER port */
    uint16_t pub_port;      /* PUB port */
    uint8_t state;          /* msg_member_state_t */
    uint64_t incarnation;   /* start time in ms; a restart increases it */
} msg_member_t;

typedef struct msg_entry {
    msg_bytes_t key;
    msg_bytes_t value;      /* empty for a tombstone */
    uint64_t hlc;           /* version timestamp */
    uint64_t origin;        /* version tie-breaker: hash of the writer's id */
    int64_t expire_ms;      /* absolute, 0 for none */
    bool tombstone;
} msg_entry_t;

typedef struct msg {
    msg_type_t type;
    msg_bytes_t from;          /* sender node id, every type */

    uint64_t id;               /* REQUEST, REPLY: request id.
                                  HANDOFF, ACK: batch number */
    uint64_t epoch;            /* REPL, BEAT: stream epoch */
    uint64_t seq;              /* REPL: sequence number in the stream.
                                  BEAT: 0, reserved, because a BEAT goes
                                  to every subscriber */

    msg_member_t *members;     /* JOIN (exactly 1), WELCOME, MEMBERS, SYNC */
    size_t member_count;

    msg_bytes_t *args;         /* REQUEST: command and arguments, >= 1 */
    size_t arg_count;

    msg_bytes_t resp;          /* REPLY: one whole RESP2 value */

    msg_entry_t *entries;      /* REPL (exactly 1), HANDOFF (0 or more) */
    size_t entry_count;

    bool last;                 /* HANDOFF: final batch of the stream */
    uint64_t total;            /* HANDOFF with last: entries in the stream */

    void *storage;             /* private: decoder allocations */
} msg_t;

/* Returns the type's upper-case name, for example "REPL", or "UNKNOWN". */
const char *msg_type_name(msg_type_t type);

/* Appends the msgpack encoding of msg to out, checking that the fields
 * the type needs are set. Returns PC_OK, PC_ERR_INVALID for a message that
 * breaks the field rules, or out's sticky error. */
pc_err_t msg_encode(const msg_t *msg, pc_buf_t *out);

/* Decodes one frame into *msg, which the caller releases with msg_fini
 * whatever the result. Returns PC_OK, or PC_ERR_TOO_BIG / PC_ERR_PROTOCOL
 * / PC_ERR_NOMEM with a one-line reason, without the peer id, in
 * why[0..why_len). On success every pointer in *msg points into data or
 * into msg's own storage, so data must outlive msg. */
pc_err_t msg_decode(const void *data, size_t len, msg_t *msg, char *why,
                    size_t why_len);

/* Frees what msg_decode allocated and zeroes *msg. */
void msg_fini(msg_t *msg);

#endif
