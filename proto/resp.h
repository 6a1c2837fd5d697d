/* resp: the Redis protocol (RESP2) request parser, reply writer and reply
 * reader.
 *
 * The parser reads both multibulk requests ("*2\r\n$3\r\nGET\r\n...") and
 * inline ones ("GET key\r\n", as typed into nc or telnet). It is
 * incremental: fed a buffer that starts at the first byte of a request and
 * grows between calls, it keeps its progress and never rescans what it has
 * already parsed. The caller may move or grow the buffer between calls as
 * long as the bytes already given stay the same.
 *
 * Arguments are returned as spans (offset, length); resp_arg_ptr turns a
 * span into a pointer. A multibulk argument is a span of the request
 * buffer, so it is never copied. An inline argument may contain quotes
 * and escapes ("a\x41b") that the parser removes, so the arguments of an
 * inline request are copied, unescaped, into a buffer the parser owns,
 * and their spans are offsets into that copy.
 *
 * Limits, checked before anything is allocated for them: a bulk length
 * above RESP_MAX_BULK_BYTES, an argument count above RESP_MAX_ARGS, and an
 * inline request longer than RESP_MAX_INLINE_BYTES are protocol errors.
 * The bulk and inline limits are those of Redis 7, which accepts up to
 * INT_MAX arguments. After a protocol error the connection must reply the
 * error and close, as Redis does. A failure is sticky: every later call
 * returns it again until resp_parser_reset.
 *
 * A parser belongs to one connection and one thread.
 */
#ifndef PC_RESP_H
#define PC_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/err.h"

#define RESP_MAX_BULK_BYTES (512ull * 1024 * 1024)
#define RESP_MAX_ARGS (1024 * 1024)
#define RESP_MAX_INLINE_BYTES (64 * 1024)
#define RESP_ERROR_MAX_BYTES 128

typedef struct resp_span {
    size_t offset; /* from the first byte of the request */
    size_t len;
} resp_span_t;

typedef struct resp_parser {
    resp_span_t *args;  /* parsed arguments; valid after PC_OK */
    size_t argc;        /* arguments parsed so far */
    size_t args_cap;    /* allocated entries in args */
    long long expected; /* multibulk count, -1 before the header */
    long long bulk_len; /* length of the bulk being read, -1 if none */
    size_t pos;         /* bytes of the request consumed so far */
    size_t scan_pos;    /* where the search for the current line's end resumes */
    int started;        /* a request is in progress; 0 after PC_OK */
    int is_inline;      /* the request is an inline one */
    pc_err_t failed;    /* sticky error, PC_OK until a request fails */
    pc_buf_t inline_args; /* unescaped arguments of an inline request */
    char error[RESP_ERROR_MAX_BYTES]; /* error text after a failure */
} resp_parser_t;

/* Initialises a parser with no request in progress. */
void resp_parser_init(resp_parser_t *parser);

/* Frees the parser's argument array and inline argument buffer. */
void resp_parser_fini(resp_parser_t *parser);

/* Continues parsing the request that starts at buf[0], of which len bytes
 * have arrived. Returns:
 *  - PC_OK: a whole request was parsed. parser->args[0..argc) hold its
 *    arguments, *consumed its length in bytes. argc is 0 for an empty
 *    inline line and for a multibulk count of 0 or less ("*0", "*-1"),
 *    which Redis ignores. The next call starts a new request.
 *  - PC_ERR_TRUNCATED: more bytes are needed; *need_hint, when not NULL,
 *    gets the total request length known so far to be required: while a
 *    bulk is being read, the length up to the CRLF after it, otherwise 0
 *    (unknown). The caller can then size its buffer once for a large bulk.
 *  - PC_ERR_PROTOCOL or PC_ERR_TOO_BIG: the request is malformed or over a
 *    limit; parser->error holds the error text without the "ERR " prefix,
 *    for example "Protocol error: invalid bulk length".
 *  - PC_ERR_NOMEM: growing the argument array or the inline argument
 *    buffer failed. */
pc_err_t resp_parse(resp_parser_t *parser, const char *buf, size_t len,
                    size_t *consumed, size_t *need_hint);

/* Returns a pointer to the first byte of argument i (i < argc) of the
 * request just parsed, where buf is the buffer given to resp_parse. For a
 * multibulk request the pointer is into buf; for an inline one it is into
 * the parser and stays valid until the next call on the parser. The bytes
 * are not NUL-terminated. */
const char *resp_arg_ptr(const resp_parser_t *parser, const char *buf,
                         size_t i);

/* Forgets any request in progress and clears the sticky error, keeping
 * the argument array. */
void resp_parser_reset(resp_parser_t *parser);

/* Reply writers. Each appends one RESP2 value to out; errors are sticky
 * in out (see buf.h). */
void resp_add_simple(pc_buf_t *out, const char *text);         /* +OK */
void resp_add_error(pc_buf_t *out, const char *text);          /* -ERR x */
void resp_add_errorf(pc_buf_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void resp_add_int(pc_buf_t *out, long long value);             /* :42 */
void resp_add_bulk(pc_buf_t *out, const void *data, size_t len);
void resp_add_cstr(pc_buf_t *out, const char *text);           /* bulk */
void resp_add_null(pc_buf_t *out);                             /* $-1 */
void resp_add_null_array(pc_buf_t *out);                       /* *-1 */
void resp_add_array(pc_buf_t *out, size_t count);              /* *N */

/* One value read from a RESP2 reply stream. For an array only the header
 * is returned; its elements follow as separate values. */
typedef enum {
    RESP_SIMPLE = '+',
    RESP_ERROR = '-',
    RESP_INT = ':',
    RESP_BULK = '$',
    RESP_ARRAY = '*',
} resp_type_t;

typedef struct resp_value {
    resp_type_t type;
    long long integer; /* RESP_INT value; array count or bulk length, -1 for null */
    const char *str;   /* text of SIMPLE, ERROR and BULK values, NULL for null */
    size_t len;        /* length of str */
} resp_value_t;

/* Reads the value at buf[0..len). Returns PC_OK with *consumed set,
 * PC_ERR_TRUNCATED when the value is incomplete, or PC_ERR_PROTOCOL. A
 * bulk or array length above the parser's limits is a protocol error. */
pc_err_t resp_read_value(const char *buf, size_t len, resp_value_t *value,
                         size_t *consumed);

/* Returns the byte length of one whole value (an array with all its
 * elements) at buf[0..len) in *consumed. Returns PC_OK, PC_ERR_TRUNCATED
 * or PC_ERR_PROTOCOL; nesting deeper than 32 levels is a protocol error. */
pc_err_t resp_skip_value(const char *buf, size_t len, size_t *consumed);

#endif
