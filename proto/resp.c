/* resp: RESP2 request parsing, reply writing and reply reading.
 *
 * The request parser is a state machine over one growing buffer. pos is
 * the end of what has been parsed, and scan_pos is how far the search for
 * the end of the current line has gone. So a request that trickles in byte
 * by byte is still scanned only once. Nothing is allocated from a declared
 * size: the argument array grows as arguments arrive, and a bulk's bytes
 * stay in the caller's buffer.
 *
 * The parser is stricter than Redis 7.0 in a few places, each chosen so
 * that a malformed request fails at once rather than desynchronising the
 * stream:
 *  - a length line must end in CRLF ("*1\rX" is an invalid length), and a
 *    bulk must be followed by CRLF, where Redis skips any two bytes;
 *  - the '$' of a bulk header is checked as soon as it arrives, where Redis
 *    waits for the line's CR and so reports a 64 KiB line of garbage as
 *    "too big bulk count string";
 *  - a length line or an inline line longer than its cap is rejected even
 *    when its line end arrives in the same read, so that the outcome never
 *    depends on how the bytes were split;
 *  - a NUL byte in an inline request is an ordinary byte, where Redis ends
 *    the request at it.
 * A multibulk count above RESP_MAX_ARGS is rejected; Redis 7.0 accepts up
 * to INT_MAX.
 *
 * Runs on whichever thread owns the connection; the writers and the reader
 * keep no state.
 */
#include "resp.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entries reserved when a multibulk header arrives: a declared count above
 * this is trusted only as arguments actually arrive. */
#define RESP_ARGS_INITIAL 1024

/* Storage above these sizes is freed when the next request starts, so an
 * idle connection does not keep the memory of its largest request. */
#define RESP_ARGS_KEEP 1024
#define RESP_INLINE_KEEP_BYTES 4096

/* Maximum length of a decimal long long, "-9223372036854775808". */
#define RESP_LL_MAX_DIGITS 20

#define RESP_SKIP_MAX_DEPTH 32

static const char ERR_MBULK_LENGTH[] = "Protocol error: invalid multibulk length";
static const char ERR_BULK_LENGTH[] = "Protocol error: invalid bulk length";
static const char ERR_MBULK_LINE[] = "Protocol error: too big mbulk count string";
static const char ERR_BULK_LINE[] = "Protocol error: too big bulk count string";
static const char ERR_BULK_CRLF[] = "Protocol error: expected CRLF after bulk data";
static const char ERR_INLINE_SIZE[] = "Protocol error: too big inline request";
static const char ERR_QUOTES[] = "Protocol error: unbalanced quotes in request";
static const char ERR_NOMEM[] = "out of memory while parsing the request";

/* ---- Numbers ---- */

/* Parses a whole decimal long long as Redis 7.0's string2ll does: an optional
 * '-', no '+', no spaces and no leading zeros ("0" itself is fine, "-0"
 * is not). Returns 1 on success. */
static int parse_ll(const char *s, size_t n, long long *out)
{
    if (n == 0 || n > RESP_LL_MAX_DIGITS)
        return 0;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }

    int negative = s[0] == '-';
    size_t i = negative ? 1 : 0;
    if (i == n || s[i] < '1' || s[i] > '9')
        return 0;

    /* Accumulate in unsigned so that LLONG_MIN's magnitude fits. */
    unsigned long long value = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned digit = (unsigned)(s[i] - '0');
        if (value > (~0ull - digit) / 10)
            return 0;
        value = value * 10 + digit;
    }

    unsigned long long limit = negative ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
    if (value > limit)
        return 0;
    *out = negative ? -(long long)(value - 1) - 1 : (long long)value;
    return 1;
}

/* Writes value in decimal to out, which has room for RESP_LL_MAX_DIGITS
 * bytes, and returns the length. */
static size_t format_ll(char *out, long long value)
{
    char digits[RESP_LL_MAX_DIGITS];
    unsigned long long magnitude = value < 0 ? 0 - (unsigned long long)value
                                             : (unsigned long long)value;
    size_t n = 0;

    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude > 0);

    size_t len = 0;
    if (value < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = digits[--n];
    return len;
}

/* ---- Parser state ---- */

static pc_err_t parser_fail(resp_parser_t *parser, pc_err_t err, const char *text)
{
    snprintf(parser->error, sizeof parser->error, "%s", text);
    return err;
}

static void request_begin(resp_parser_t *parser)
{
    if (parser->args_cap > RESP_ARGS_KEEP) {
        free(parser->args);
        parser->args = NULL;
        parser->args_cap = 0;
    }
    if (parser->inline_args.cap > RESP_INLINE_KEEP_BYTES)
        buf_fini(&parser->inline_args);
    buf_reset(&parser->inline_args);

    parser->argc = 0;
    parser->expected = -1;
    parser->bulk_len = -1;
    parser->pos = 0;
    parser->scan_pos = 0;
    parser->started = 0;
    parser->is_inline = 0;
}

void resp_parser_init(resp_parser_t *parser)
{
    parser->args = NULL;
    parser->args_cap = 0;
    buf_init(&parser->inline_args, RESP_MAX_INLINE_BYTES);
    parser->failed = PC_OK;
    parser->error[0] = '\0';
    request_begin(parser);
}

void resp_parser_fini(resp_parser_t *parser)
{
    free(parser->args);
    parser->args = NULL;
    parser->args_cap = 0;
    parser->argc = 0;
    buf_fini(&parser->inline_args);
}

void resp_parser_reset(resp_parser_t *parser)
{
    parser->failed = PC_OK;
    parser->error[0] = '\0';
    request_begin(parser);
}

const char *resp_arg_ptr(const resp_parser_t *parser, const char *buf, size_t i)
{
    assert(i < parser->argc);

    const char *base = parser->is_inline ? parser->inline_args.data : buf;
    return base + parser->args[i].offset;
}

/* Makes room for at least want entries in the argument array. */
static pc_err_t args_reserve(resp_parser_t *parser, size_t want)
{
    if (want <= parser->args_cap)
        return PC_OK;

    resp_span_t *args = realloc(parser->args, want * sizeof *args);
    if (args == NULL)
        return PC_ERR_NOMEM;
    parser->args = args;
    parser->args_cap = want;
    return PC_OK;
}

static pc_err_t args_push(resp_parser_t *parser, size_t offset, size_t len)
{
    if (parser->argc == parser->args_cap) {
        size_t want = parser->args_cap ? parser->args_cap * 2 : 8;

        /* A multibulk request never needs more than its count. */
        if (parser->expected > 0 && want > (size_t)parser->expected)
            want = (size_t)parser->expected;
        if (args_reserve(parser, want) != PC_OK)
            return PC_ERR_NOMEM;
    }

    parser->args[parser->argc].offset = offset;
    parser->args[parser->argc].len = len;
    parser->argc++;
    return PC_OK;
}

/* ---- Multibulk requests ---- */

/* Finds the CRLF that ends the length line starting at parser->pos and
 * sets *cr to the index of its CR. Returns PC_ERR_TRUNCATED until it has
 * arrived, PC_ERR_TOO_BIG when the line passes RESP_MAX_INLINE_BYTES (the
 * 64 KiB that Redis 7.0 also allows a length line) and PC_ERR_PROTOCOL
 * when the CR is not followed by LF. */
static pc_err_t find_length_line(resp_parser_t *parser, const char *buf, size_t len,
                                 size_t *cr)
{
    size_t from = parser->scan_pos > parser->pos ? parser->scan_pos : parser->pos;
    const char *found = from < len ? memchr(buf + from, '\r', len - from) : NULL;

    if (found == NULL) {
        parser->scan_pos = len;
        if (len - parser->pos > RESP_MAX_INLINE_BYTES)
            return PC_ERR_TOO_BIG;
        return PC_ERR_TRUNCATED;
    }

    size_t at = (size_t)(found - buf);
    parser->scan_pos = at;
    if (at - parser->pos > RESP_MAX_INLINE_BYTES)
        return PC_ERR_TOO_BIG;
    if (at + 1 >= len)
        return PC_ERR_TRUNCATED;
    if (buf[at + 1] != '\n')
        return PC_ERR_PROTOCOL;
    *cr = at;
    return PC_OK;
}

/* Reads the "*<count>\r\n" line. */
static pc_err_t parse_count(resp_parser_t *parser, const char *buf, size_t len)
{
    size_t cr;
    pc_err_t err = find_length_line(parser, buf, len, &cr);
    if (err == PC_ERR_TOO_BIG)
        return parser_fail(parser, err, ERR_MBULK_LINE);
    if (err == PC_ERR_PROTOCOL)
        return parser_fail(parser, err, ERR_MBULK_LENGTH);
    if (err != PC_OK)
        return err;

    long long count;
    if (!parse_ll(buf + parser->pos + 1, cr - parser->pos - 1, &count))
        return parser_fail(parser, PC_ERR_PROTOCOL, ERR_MBULK_LENGTH);
    if (count > RESP_MAX_ARGS)
        return parser_fail(parser, PC_ERR_TOO_BIG, ERR_MBULK_LENGTH);

    parser->pos = cr + 2;
    parser->scan_pos = parser->pos;
    parser->expected = count > 0 ? count : 0;
    size_t reserve = count < RESP_ARGS_INITIAL ? (size_t)parser->expected : RESP_ARGS_INITIAL;
    if (args_reserve(parser, reserve) != PC_OK)
        return parser_fail(parser, PC_ERR_NOMEM, ERR_NOMEM);
    return PC_OK;
}

/* Reads a "$<length>\r\n" line into parser->bulk_len. */
static pc_err_t parse_bulk_header(resp_parser_t *parser, const char *buf, size_t len)
{
    if (parser->pos >= len)
        return PC_ERR_TRUNCATED;

    unsigned char type = (unsigned char)buf[parser->pos];
    if (type != '$') {
        char text[RESP_ERROR_MAX_BYTES];
        if (type >= 0x20 && type < 0x7f)
            snprintf(text, sizeof text, "Protocol error: expected '$', got '%c'", type);
        else
            snprintf(text, sizeof text, "Protocol error: expected '$', got '\\x%02x'", type);
        return parser_fail(parser, PC_ERR_PROTOCOL, text);
    }

    size_t cr;
    pc_err_t err = find_length_line(parser, buf, len, &cr);
    if (err == PC_ERR_TOO_BIG)
        return parser_fail(parser, err, ERR_BULK_LINE);
    if (err == PC_ERR_PROTOCOL)
        return parser_fail(parser, err, ERR_BULK_LENGTH);
    if (err != PC_OK)
        return err;

    long long bulk_len;
    if (!parse_ll(buf + parser->pos + 1, cr - parser->pos - 1, &bulk_len) || bulk_len < 0)
        return parser_fail(parser, PC_ERR_PROTOCOL, ERR_BULK_LENGTH);
    if ((unsigned long long)bulk_len > RESP_MAX_BULK_BYTES)
        return parser_fail(parser, PC_ERR_TOO_BIG, ERR_BULK_LENGTH);

    parser->pos = cr + 2;
    parser->scan_pos = parser->pos;
    parser->bulk_len = bulk_len;
    return PC_OK;
}

/* Takes the bulk whose header has been read, once it and its CRLF are in. */
static pc_err_t parse_bulk_data(resp_parser_t *parser, const char *buf, size_t len,
                                size_t *need_hint)
{
    size_t bulk_len = (size_t)parser->bulk_len;

    if (len - parser->pos < bulk_len + 2) {
        if (need_hint != NULL)
            *need_hint = parser->pos + bulk_len + 2;
        return PC_ERR_TRUNCATED;
    }

    size_t end = parser->pos + bulk_len;
    if (buf[end] != '\r' || buf[end + 1] != '\n')
        return parser_fail(parser, PC_ERR_PROTOCOL, ERR_BULK_CRLF);
    if (args_push(parser, parser->pos, bulk_len) != PC_OK)
        return parser_fail(parser, PC_ERR_NOMEM, ERR_NOMEM);

    parser->pos = end + 2;
    parser->scan_pos = parser->pos;
    parser->bulk_len = -1;
    return PC_OK;
}

static pc_err_t parse_multibulk(resp_parser_t *parser, const char *buf, size_t len,
                                size_t *need_hint)
{
    pc_err_t err;

    if (parser->expected < 0) {
        err = parse_count(parser, buf, len);
        if (err != PC_OK)
            return err;
    }

    while (parser->argc < (size_t)parser->expected) {
        if (parser->bulk_len < 0) {
            err = parse_bulk_header(parser, buf, len);
            if (err != PC_OK)
                return err;
        }
        err = parse_bulk_data(parser, buf, len, need_hint);
        if (err != PC_OK)
            return err;
    }
    return PC_OK;
}

/* ---- Inline requests ---- */

/* Separators between inline arguments: C's isspace set. Inside an
 * unquoted argument only space, tab, CR and LF end it, so "a\vb" is one
 * argument. Both rules are those of redis-cli and Redis 7.0. */
static int is_separator(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int ends_unquoted(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one escape inside double quotes, line[*i] being the backslash,
 * and advances *i past it. "\xHH" needs two hex digits. Any other
 * backslash pair stands for its second byte unless it names a control
 * character (\n \r \t \b \a). */
static char unescape_double(const char *line, size_t n, size_t *i)
{
    size_t at = *i;

    if (at + 3 < n && line[at + 1] == 'x' && hex_value(line[at + 2]) >= 0 &&
        hex_value(line[at + 3]) >= 0) {
        *i = at + 4;
        return (char)(hex_value(line[at + 2]) * 16 + hex_value(line[at + 3]));
    }

    *i = at + 2;
    switch (line[at + 1]) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'b': return '\b';
    case 'a': return '\a';
    default: return line[at + 1];
    }
}

/* Copies the quoted part of an argument, line[*i] being the first byte
 * after the opening quote, to out and advances *i past the closing quote.
 * Returns the bytes written, or -1 for unbalanced quotes: a quote left
 * open, or a closing quote followed by anything but a separator. */
static long inline_quoted(const char *line, size_t n, size_t *i, char quote, char *out)
{
    long written = 0;
    size_t at = *i;

    while (at < n) {
        char c = line[at];

        if (c == quote) {
            if (at + 1 < n && !is_separator(line[at + 1]))
                return -1;
            *i = at + 1;
            return written;
        }

        if (quote == '"' && c == '\\' && at + 1 < n) {
            out[written++] = unescape_double(line, n, &at);
        } else if (quote == '\'' && c == '\\' && at + 1 < n && line[at + 1] == '\'') {
            out[written++] = '\'';
            at += 2;
        } else {
            out[written++] = c;
            at++;
        }
    }
    return -1;
}

/* Copies one argument starting at line[*i] to out, removing its quotes
 * and escapes, and advances *i past it. A quote may open mid-argument
 * (a"b c" is "ab c"), and its closing quote ends the argument. Returns the
 * bytes written or -1 for unbalanced quotes. */
static long inline_token(const char *line, size_t n, size_t *i, char *out)
{
    long written = 0;
    size_t at = *i;

    while (at < n && !ends_unquoted(line[at])) {
        char c = line[at];

        if (c == '"' || c == '\'') {
            at++;
            long quoted = inline_quoted(line, n, &at, c, out + written);
            if (quoted < 0)
                return -1;
            written += quoted;
            break;
        }
        out[written++] = c;
        at++;
    }

    *i = at;
    return written;
}

/* Finds the LF that ends an inline request, with an optional CR before
 * it, and sets *line_len to the length of the line without them. */
static pc_err_t find_inline_line(resp_parser_t *parser, const char *buf, size_t len,
                                 size_t *line_len)
{
    size_t from = parser->scan_pos;
    const char *found = from < len ? memchr(buf + from, '\n', len - from) : NULL;

    if (found == NULL) {
        parser->scan_pos = len;

        /* Past the cap already, unless the last byte is a CR that an LF
         * may still follow. */
        if (len > RESP_MAX_INLINE_BYTES + 1 ||
            (len == RESP_MAX_INLINE_BYTES + 1 && buf[len - 1] != '\r'))
            return PC_ERR_TOO_BIG;
        return PC_ERR_TRUNCATED;
    }

    size_t lf = (size_t)(found - buf);
    size_t n = lf > 0 && buf[lf - 1] == '\r' ? lf - 1 : lf;
    if (n > RESP_MAX_INLINE_BYTES)
        return PC_ERR_TOO_BIG;
    *line_len = n;
    parser->pos = lf + 1;
    return PC_OK;
}

/* Splits an inline line into arguments, unescaped into inline_args. The
 * copy is never longer than the line, so it fits the reservation. */
static pc_err_t inline_split(resp_parser_t *parser, const char *line, size_t n)
{
    if (n > 0 && buf_reserve(&parser->inline_args, n) != PC_OK)
        return parser_fail(parser, PC_ERR_NOMEM, ERR_NOMEM);

    char *out = parser->inline_args.data;
    size_t used = 0;
    size_t i = 0;

    for (;;) {
        while (i < n && is_separator(line[i]))
            i++;
        if (i == n)
            break;

        long written = inline_token(line, n, &i, out + used);
        if (written < 0)
            return parser_fail(parser, PC_ERR_PROTOCOL, ERR_QUOTES);
        if (args_push(parser, used, (size_t)written) != PC_OK)
            return parser_fail(parser, PC_ERR_NOMEM, ERR_NOMEM);
        used += (size_t)written;
    }

    parser->inline_args.len = used;
    return PC_OK;
}

static pc_err_t parse_inline(resp_parser_t *parser, const char *buf, size_t len)
{
    size_t line_len;
    pc_err_t err = find_inline_line(parser, buf, len, &line_len);

    if (err == PC_ERR_TOO_BIG)
        return parser_fail(parser, err, ERR_INLINE_SIZE);
    if (err != PC_OK)
        return err;
    return inline_split(parser, buf, line_len);
}

/* ---- Request entry point ---- */

pc_err_t resp_parse(resp_parser_t *parser, const char *buf, size_t len,
                    size_t *consumed, size_t *need_hint)
{
    assert(parser != NULL);
    assert(consumed != NULL);
    assert(buf != NULL || len == 0);

    if (need_hint != NULL)
        *need_hint = 0;
    if (parser->failed != PC_OK)
        return parser->failed;

    if (!parser->started) {
        request_begin(parser);
        if (len == 0)
            return PC_ERR_TRUNCATED;
        parser->started = 1;
        parser->is_inline = buf[0] != '*';
    }

    pc_err_t err = parser->is_inline ? parse_inline(parser, buf, len)
                                     : parse_multibulk(parser, buf, len, need_hint);
    if (err == PC_OK) {
        *consumed = parser->pos;
        parser->started = 0;
    } else if (err != PC_ERR_TRUNCATED) {
        parser->failed = err;
    }
    return err;
}

/* ---- Reply writers ---- */

/* Appends "<type><text>\r\n", with any CR or LF in text turned into a
 * space so that the value stays on one line. */
static void add_line(pc_buf_t *out, char type, const char *text, size_t n)
{
    if (buf_reserve(out, n + 3) != PC_OK)
        return;

    char *p = out->data + out->len;
    *p++ = type;
    for (size_t i = 0; i < n; i++)
        *p++ = text[i] == '\r' || text[i] == '\n' ? ' ' : text[i];
    *p++ = '\r';
    *p = '\n';
    out->len += n + 3;
}

#define RESP_HEADER_MAX_BYTES (1 + RESP_LL_MAX_DIGITS + 2)

/* Writes "<type><value>\r\n" to line and returns its length. */
static size_t format_header(char line[RESP_HEADER_MAX_BYTES], char type, long long value)
{
    size_t n = 0;

    line[n++] = type;
    n += format_ll(line + n, value);
    line[n++] = '\r';
    line[n++] = '\n';
    return n;
}

static void add_header(pc_buf_t *out, char type, long long value)
{
    char line[RESP_HEADER_MAX_BYTES];

    buf_append(out, line, format_header(line, type, value));
}

void resp_add_simple(pc_buf_t *out, const char *text)
{
    add_line(out, '+', text, strlen(text));
}

void resp_add_error(pc_buf_t *out, const char *text)
{
    add_line(out, '-', text, strlen(text));
}

void resp_add_errorf(pc_buf_t *out, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    int n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (n < 0) {
        if (out->err == PC_OK)
            out->err = PC_ERR_INVALID;
        return;
    }

    /* Format in place: the NUL that vsnprintf writes lands where the
     * CR goes, so n + 3 bytes are enough. */
    if (buf_reserve(out, (size_t)n + 3) != PC_OK)
        return;
    char *text = out->data + out->len + 1;
    va_start(args, fmt);
    vsnprintf(text, (size_t)n + 1, fmt, args);
    va_end(args);

    out->data[out->len] = '-';
    for (int i = 0; i < n; i++) {
        if (text[i] == '\r' || text[i] == '\n')
            text[i] = ' ';
    }
    text[n] = '\r';
    text[n + 1] = '\n';
    out->len += (size_t)n + 3;
}

void resp_add_int(pc_buf_t *out, long long value)
{
    add_header(out, ':', value);
}

void resp_add_bulk(pc_buf_t *out, const void *data, size_t len)
{
    assert(data != NULL || len == 0);

    /* One reservation for the header, the data and the CRLF. */
    char header[RESP_HEADER_MAX_BYTES];
    size_t header_len = format_header(header, '$', (long long)len);
    if (buf_reserve(out, header_len + len + 2) != PC_OK)
        return;
    buf_append(out, header, header_len);
    buf_append(out, data, len);
    buf_append(out, "\r\n", 2);
}

void resp_add_cstr(pc_buf_t *out, const char *text)
{
    resp_add_bulk(out, text, strlen(text));
}

void resp_add_null(pc_buf_t *out)
{
    buf_append(out, "$-1\r\n", 5);
}

void resp_add_null_array(pc_buf_t *out)
{
    buf_append(out, "*-1\r\n", 5);
}

void resp_add_array(pc_buf_t *out, size_t count)
{
    assert(count <= (size_t)LLONG_MAX);
    add_header(out, '*', (long long)count);
}

/* ---- Reply reader ---- */

/* Finds the CRLF ending the line that starts at buf[0] and sets *cr to the
 * index of its CR. */
static pc_err_t find_reply_line(const char *buf, size_t len, size_t *cr)
{
    const char *found = memchr(buf, '\r', len);

    if (found == NULL)
        return PC_ERR_TRUNCATED;
    size_t at = (size_t)(found - buf);
    if (at + 1 >= len)
        return PC_ERR_TRUNCATED;
    if (buf[at + 1] != '\n')
        return PC_ERR_PROTOCOL;
    *cr = at;
    return PC_OK;
}

/* Reads the length of a bulk or an array: -1 for null, else 0..max. */
static pc_err_t read_reply_length(const char *text, size_t n, unsigned long long max,
                                  long long *length)
{
    if (!parse_ll(text, n, length) || *length < -1)
        return PC_ERR_PROTOCOL;
    if (*length > 0 && (unsigned long long)*length > max)
        return PC_ERR_PROTOCOL;
    return PC_OK;
}

/* Reads the data of a bulk whose header line ends at header_end. */
static pc_err_t read_reply_bulk(const char *buf, size_t len, size_t header_end,
                                resp_value_t *value, size_t *consumed)
{
    if (value->integer < 0) {
        *consumed = header_end;
        return PC_OK;
    }

    size_t bulk_len = (size_t)value->integer;
    if (len - header_end < bulk_len + 2)
        return PC_ERR_TRUNCATED;

    size_t end = header_end + bulk_len;
    if (buf[end] != '\r' || buf[end + 1] != '\n')
        return PC_ERR_PROTOCOL;
    value->str = buf + header_end;
    value->len = bulk_len;
    *consumed = end + 2;
    return PC_OK;
}

pc_err_t resp_read_value(const char *buf, size_t len, resp_value_t *value,
                         size_t *consumed)
{
    assert(buf != NULL || len == 0);

    if (len == 0)
        return PC_ERR_TRUNCATED;
    char type = buf[0];
    if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*')
        return PC_ERR_PROTOCOL;

    size_t cr;
    pc_err_t err = find_reply_line(buf + 1, len - 1, &cr);
    if (err != PC_OK)
        return err;
    const char *text = buf + 1;
    size_t header_end = 1 + cr + 2;

    value->type = (resp_type_t)type;
    value->integer = 0;
    value->str = NULL;
    value->len = 0;

    switch (type) {
    case '+':
    case '-':
        value->str = text;
        value->len = cr;
        break;
    case ':':
        if (!parse_ll(text, cr, &value->integer))
            return PC_ERR_PROTOCOL;
        break;
    case '$':
        err = read_reply_length(text, cr, RESP_MAX_BULK_BYTES, &value->integer);
        if (err != PC_OK)
            return err;
        return read_reply_bulk(buf, len, header_end, value, consumed);
    default:
        err = read_reply_length(text, cr, RESP_MAX_ARGS, &value->integer);
        if (err != PC_OK)
            return err;
        break;
    }

    *consumed = header_end;
    return PC_OK;
}

pc_err_t resp_skip_value(const char *buf, size_t len, size_t *consumed)
{
    /* remaining[d] counts the values still to read at nesting depth d.
     * Depth 0 has the one top-level value. */
    long long remaining[RESP_SKIP_MAX_DEPTH + 1];
    int depth = 0;
    size_t at = 0;

    if (len == 0)
        return PC_ERR_TRUNCATED;
    remaining[0] = 1;
    while (depth >= 0) {
        if (remaining[depth] == 0) {
            depth--;
            continue;
        }

        resp_value_t value;
        size_t used;
        pc_err_t err = resp_read_value(buf + at, len - at, &value, &used);
        if (err != PC_OK)
            return err;
        at += used;
        remaining[depth]--;

        if (value.type == RESP_ARRAY && value.integer > 0) {
            if (depth == RESP_SKIP_MAX_DEPTH)
                return PC_ERR_PROTOCOL;
            remaining[++depth] = value.integer;
        }
    }

    *consumed = at;
    return PC_OK;
}
