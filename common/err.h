/* err: the project's one error enum, with a stable name and a message per
 * code.
 *
 * Every module returns pc_err_t (PC_OK is 0) and puts results in
 * out-parameters. errno, zmq_errno(), msgpack and libsodium failures are
 * translated into these codes once, where they are first seen. Any thread
 * may call these functions.
 */
#ifndef PC_ERR_H
#define PC_ERR_H

typedef enum {
    PC_OK = 0,
    PC_ERR_NOMEM,     /* an allocation failed */
    PC_ERR_INVALID,   /* an argument or input value is invalid */
    PC_ERR_TOO_BIG,   /* an input exceeds its documented cap */
    PC_ERR_PROTOCOL,  /* a client or peer broke the wire protocol */
    PC_ERR_TRUNCATED, /* more input is needed to finish decoding */
    PC_ERR_NOT_FOUND, /* the key or item does not exist */
    PC_ERR_EXISTS,    /* the key or item already exists */
    PC_ERR_STALE,     /* a write lost to a newer version already stored */
    PC_ERR_IO,        /* a system call failed; details were logged */
    PC_ERR_ZMQ,       /* a ZeroMQ call failed; details were logged */
    PC_ERR_TIMEOUT,   /* an operation did not finish before its deadline */
    PC_ERR_CLOSED,    /* the object was stopped or the peer went away */
    PC_ERR__COUNT
} pc_err_t;

/* Returns the code's stable upper-case name, for example "PC_ERR_NOMEM".
 * The result is a static string; unknown codes give "PC_ERR_UNKNOWN". */
const char *pc_err_name(pc_err_t err);

/* Returns a short lower-case description of the code, for log lines and
 * error replies. The result is a static string. */
const char *pc_err_message(pc_err_t err);

#endif
