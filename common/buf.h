/* buf: a growable byte buffer with a hard maximum size and a sticky error.
 *
 * Every buffer that grows from client or peer input is a pc_buf_t created
 * with the cap that bounds it. Once an append fails (cap reached or out of
 * memory) the buffer keeps the error and ignores further appends, so a
 * writer can append a whole reply and check buf_error() once. A buffer
 * belongs to one thread at a time.
 */
#ifndef PC_BUF_H
#define PC_BUF_H

#include <stddef.h>

#include "err.h"

typedef struct pc_buf {
    char *data;     /* owned; NULL until the first append */
    size_t len;     /* bytes in use, from data[0] */
    size_t cap;     /* bytes allocated */
    size_t max;     /* the cap: len never exceeds it */
    pc_err_t err;   /* sticky: PC_OK until an append fails */
} pc_buf_t;

/* Initialises an empty buffer that may grow to max bytes. */
void buf_init(pc_buf_t *buf, size_t max);

/* Frees the storage and leaves the buffer empty and reusable, error
 * cleared. */
void buf_fini(pc_buf_t *buf);

/* Makes room for extra more bytes past len. Returns PC_OK,
 * PC_ERR_TOO_BIG when len + extra would pass max, or PC_ERR_NOMEM; either
 * failure is also stored as the sticky error. */
pc_err_t buf_reserve(pc_buf_t *buf, size_t extra);

/* Appends bytes; a no-op once the buffer holds an error. Returns the
 * sticky error. */
pc_err_t buf_append(pc_buf_t *buf, const void *data, size_t len);

/* Appends printf-formatted text; the same error rules as buf_append. */
pc_err_t buf_printf(pc_buf_t *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(pc_buf_t *buf, size_t n);

/* Sets len to 0 and clears the error; keeps the storage. */
void buf_reset(pc_buf_t *buf);

/* Returns the sticky error. */
static inline pc_err_t buf_error(const pc_buf_t *buf) { return buf->err; }

#endif
