/* buf: growable byte buffer with a cap. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_ALLOC_BYTES 256

void buf_init(pc_buf_t *buf, size_t max)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->max = max;
    buf->err = PC_OK;
}

void buf_fini(pc_buf_t *buf)
{
    free(buf->data);
    buf_init(buf, buf->max);
}

pc_err_t buf_reserve(pc_buf_t *buf, size_t extra)
{
    if (buf->err != PC_OK)
        return buf->err;
    if (extra > buf->max - buf->len) {
        buf->err = PC_ERR_TOO_BIG;
        return buf->err;
    }

    size_t need = buf->len + extra;
    if (need <= buf->cap)
        return PC_OK;

    /* Doubling keeps appends amortised O(1); the cap bounds the double. */
    size_t cap = buf->cap ? buf->cap : BUF_MIN_ALLOC_BYTES;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > buf->max)
        cap = buf->max;

    char *data = realloc(buf->data, cap);
    if (data == NULL) {
        buf->err = PC_ERR_NOMEM;
        return buf->err;
    }
    buf->data = data;
    buf->cap = cap;
    return PC_OK;
}

pc_err_t buf_append(pc_buf_t *buf, const void *data, size_t len)
{
    if (buf_reserve(buf, len) != PC_OK)
        return buf->err;
    if (len > 0)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return PC_OK;
}

pc_err_t buf_printf(pc_buf_t *buf, const char *fmt, ...)
{
    char small[256];
    va_list args;

    va_start(args, fmt);
    int n = vsnprintf(small, sizeof small, fmt, args);
    va_end(args);
    if (n < 0) {
        buf->err = PC_ERR_INVALID;
        return buf->err;
    }
    if ((size_t)n < sizeof small)
        return buf_append(buf, small, (size_t)n);

    if (buf_reserve(buf, (size_t)n + 1) != PC_OK)
        return buf->err;
    va_start(args, fmt);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, args);
    va_end(args);
    buf->len += (size_t)n;
    return PC_OK;
}

void buf_consume(pc_buf_t *buf, size_t n)
{
    if (n >= buf->len) {
        buf->len = 0;
        return;
    }
    memmove(buf->data, buf->data + n, buf->len - n);
    buf->len -= n;
}

void buf_reset(pc_buf_t *buf)
{
    buf->len = 0;
    buf->err = PC_OK;
}
