/* Tests for resp: the request parser, the reply writers and the reply
 * reader. The first tests are usage examples. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define LIT(s) (s), (sizeof(s) - 1)

/* ---- Helpers ---- */

/* Parses one request that is wholly in buf. */
static pc_err_t parse_once(resp_parser_t *parser, const char *buf, size_t len,
                           size_t *consumed)
{
    *consumed = 0;
    return resp_parse(parser, buf, len, consumed, NULL);
}

static void assert_arg(const resp_parser_t *parser, const char *buf, size_t i,
                       const char *expected, size_t expected_len)
{
    cr_assert_lt(i, parser->argc, "argument %zu is missing", i);
    cr_assert_eq(parser->args[i].len, expected_len, "argument %zu: length %zu, expected %zu",
                 i, parser->args[i].len, expected_len);
    cr_assert_arr_eq(resp_arg_ptr(parser, buf, i), expected, expected_len,
                     "argument %zu has the wrong bytes", i);
}

/* Parses buf as one request and expects the given error and text. */
static void assert_parse_error(const char *buf, size_t len, pc_err_t expected,
                               const char *text)
{
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    pc_err_t err = parse_once(&parser, buf, len, &consumed);
    cr_assert_eq(err, expected, "%.*s: got %s, expected %s", (int)(len < 40 ? len : 40), buf,
                 pc_err_name(err), pc_err_name(expected));
    cr_assert_str_eq(parser.error, text);
    resp_parser_fini(&parser);
}

/* Appends a parsed request's arguments to a transcript. */
static void record_request(pc_buf_t *log, const resp_parser_t *parser, const char *buf,
                           size_t consumed)
{
    buf_printf(log, "OK consumed=%zu argc=%zu", consumed, parser->argc);
    for (size_t i = 0; i < parser->argc; i++) {
        buf_printf(log, " [%zu]", parser->args[i].len);
        buf_append(log, resp_arg_ptr(parser, buf, i), parser->args[i].len);
    }
    buf_append(log, "\n", 1);
}

/* Feeds stream to a parser in pieces that end at each offset of arrivals
 * (the last being len), and returns the transcript in log. Each call gets
 * a fresh buffer of exactly the bytes received so far, so that ASan
 * catches any read past them. */
static void transcribe(const char *stream, size_t len, const size_t *arrivals,
                       size_t arrival_count, pc_buf_t *log)
{
    resp_parser_t parser;
    size_t start = 0;

    resp_parser_init(&parser);
    buf_init(log, 1 << 20);
    for (size_t a = 0; a < arrival_count; a++) {
        size_t end = arrivals[a];

        for (;;) {
            size_t have = end - start;
            char *copy = malloc(have ? have : 1);
            cr_assert_not_null(copy);
            memcpy(copy, stream + start, have);

            size_t consumed = 0;
            pc_err_t err = resp_parse(&parser, copy, have, &consumed, NULL);
            if (err == PC_OK)
                record_request(log, &parser, copy, consumed);
            free(copy);

            if (err == PC_ERR_TRUNCATED)
                break;
            if (err != PC_OK) {
                buf_printf(log, "%s %s\n", pc_err_name(err), parser.error);
                resp_parser_fini(&parser);
                return;
            }
            start += consumed;
        }
    }
    buf_printf(log, "left=%zu\n", len - start);
    resp_parser_fini(&parser);
}

static void assert_same_log(const pc_buf_t *actual, const pc_buf_t *expected,
                            const char *label)
{
    cr_assert_eq(actual->len, expected->len, "%s: transcript length %zu, expected %zu:\n%.*s",
                 label, actual->len, expected->len, (int)actual->len, actual->data);
    cr_assert_arr_eq(actual->data, expected->data, expected->len,
                     "%s: transcript differs:\n%.*s", label, (int)actual->len, actual->data);
}

/* Checks that stream gives the same transcript whole, byte by byte, and
 * split in two at every offset. */
static void assert_split_invariant(const char *stream, size_t len)
{
    pc_buf_t whole, pieces;
    size_t *arrivals = malloc((len + 1) * sizeof *arrivals);
    cr_assert_not_null(arrivals);

    transcribe(stream, len, &len, 1, &whole);

    for (size_t i = 0; i <= len; i++)
        arrivals[i] = i;
    transcribe(stream, len, arrivals, len + 1, &pieces);
    assert_same_log(&pieces, &whole, "byte by byte");
    buf_fini(&pieces);

    for (size_t cut = 0; cut <= len; cut++) {
        size_t two[2] = {cut, len};
        transcribe(stream, len, two, 2, &pieces);
        char label[64];
        snprintf(label, sizeof label, "split at %zu", cut);
        assert_same_log(&pieces, &whole, label);
        buf_fini(&pieces);
    }

    free(arrivals);
    buf_fini(&whole);
}

/* ---- Usage ---- */

Test(resp, parse_multibulk_request)
{
    const char request[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(resp_parse(&parser, LIT(request), &consumed, NULL), PC_OK);
    cr_assert_eq(consumed, sizeof request - 1);
    cr_assert_eq(parser.argc, 2);
    assert_arg(&parser, request, 0, LIT("GET"));
    assert_arg(&parser, request, 1, LIT("key"));

    /* Multibulk arguments are not copied. */
    cr_assert_eq(resp_arg_ptr(&parser, request, 1), request + 17);
    resp_parser_fini(&parser);
}

Test(resp, parse_inline_request)
{
    const char request[] = "SET greeting \"hello world\"\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(resp_parse(&parser, LIT(request), &consumed, NULL), PC_OK);
    cr_assert_eq(consumed, sizeof request - 1);
    cr_assert_eq(parser.argc, 3);
    assert_arg(&parser, request, 0, LIT("SET"));
    assert_arg(&parser, request, 1, LIT("greeting"));
    assert_arg(&parser, request, 2, LIT("hello world"));
    resp_parser_fini(&parser);
}

Test(resp, parse_arrives_in_pieces)
{
    const char request[] = "*1\r\n$4\r\nPING\r\n";
    resp_parser_t parser;
    size_t consumed = 0;
    size_t need = 0;

    resp_parser_init(&parser);
    cr_assert_eq(resp_parse(&parser, request, 6, &consumed, &need), PC_ERR_TRUNCATED);
    cr_assert_eq(resp_parse(&parser, request, 9, &consumed, &need), PC_ERR_TRUNCATED);
    cr_assert_eq(need, sizeof request - 1);
    cr_assert_eq(resp_parse(&parser, LIT(request), &consumed, &need), PC_OK);
    cr_assert_eq(consumed, sizeof request - 1);
    assert_arg(&parser, request, 0, LIT("PING"));
    resp_parser_fini(&parser);
}

Test(resp, write_reply)
{
    pc_buf_t out;
    const char expected[] = "*3\r\n+OK\r\n:42\r\n$5\r\nhello\r\n";

    buf_init(&out, 1024);
    resp_add_array(&out, 3);
    resp_add_simple(&out, "OK");
    resp_add_int(&out, 42);
    resp_add_cstr(&out, "hello");
    cr_assert_eq(buf_error(&out), PC_OK);
    cr_assert_eq(out.len, sizeof expected - 1);
    cr_assert_arr_eq(out.data, expected, sizeof expected - 1);
    buf_fini(&out);
}

Test(resp, read_reply)
{
    const char reply[] = "$5\r\nhello\r\n:7\r\n";
    resp_value_t value;
    size_t consumed;

    cr_assert_eq(resp_read_value(LIT(reply), &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_BULK);
    cr_assert_eq(value.len, 5);
    cr_assert_arr_eq(value.str, "hello", 5);
    cr_assert_eq(consumed, 11);

    cr_assert_eq(resp_read_value(reply + consumed, sizeof reply - 1 - consumed, &value,
                                 &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_INT);
    cr_assert_eq(value.integer, 7);
}

/* ---- Multibulk requests ---- */

Test(resp, multibulk_empty_counts)
{
    static const char *const requests[] = {"*0\r\n", "*-1\r\n", "*-5\r\n"};

    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        resp_parser_t parser;
        size_t consumed;

        resp_parser_init(&parser);
        cr_assert_eq(parse_once(&parser, requests[i], strlen(requests[i]), &consumed), PC_OK,
                     "%s", requests[i]);
        cr_assert_eq(parser.argc, 0, "%s", requests[i]);
        cr_assert_eq(consumed, strlen(requests[i]), "%s", requests[i]);
        resp_parser_fini(&parser);
    }
}

Test(resp, multibulk_count_invalid)
{
    static const char *const requests[] = {
        "*abc\r\n", "*01\r\n", "*+1\r\n", "*\r\n", "*1 \r\n", "* 1\r\n", "*-0\r\n",
        "*99999999999999999999\r\n", "*1\rX", "*1\n$4\r\n",
    };

    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++)
        assert_parse_error(requests[i], strlen(requests[i]), PC_ERR_PROTOCOL,
                           "Protocol error: invalid multibulk length");
}

Test(resp, multibulk_count_over_max)
{
    assert_parse_error(LIT("*1048577\r\n"), PC_ERR_TOO_BIG,
                       "Protocol error: invalid multibulk length");
}

Test(resp, multibulk_count_reserves_little)
{
    resp_parser_t parser;
    size_t consumed;

    /* The maximum count is accepted, but its array is not allocated up
     * front. */
    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT("*1048576\r\n$1\r\na\r\n"), &consumed),
                 PC_ERR_TRUNCATED);
    cr_assert_eq(parser.argc, 1);
    cr_assert_leq(parser.args_cap, 1024);
    resp_parser_fini(&parser);
}

Test(resp, multibulk_args_grow)
{
    enum { COUNT = 3000 };
    pc_buf_t request;
    resp_parser_t parser;
    size_t consumed;

    buf_init(&request, 1 << 20);
    buf_printf(&request, "*%d\r\n", COUNT);
    for (int i = 0; i < COUNT; i++) {
        char arg[16];
        int n = snprintf(arg, sizeof arg, "a%d", i);
        buf_printf(&request, "$%d\r\n%s\r\n", n, arg);
    }

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, request.data, request.len, &consumed), PC_OK);
    cr_assert_eq(consumed, request.len);
    cr_assert_eq(parser.argc, COUNT);
    cr_assert_leq(parser.args_cap, COUNT);
    for (int i = 0; i < COUNT; i++) {
        char arg[16];
        int n = snprintf(arg, sizeof arg, "a%d", i);
        assert_arg(&parser, request.data, (size_t)i, arg, (size_t)n);
    }

    /* The next request starts with a small array again. */
    cr_assert_eq(parse_once(&parser, LIT("*1\r\n$4\r\nPING\r\n"), &consumed), PC_OK);
    cr_assert_leq(parser.args_cap, 1024);

    resp_parser_fini(&parser);
    buf_fini(&request);
}

Test(resp, multibulk_count_line_too_big)
{
    enum { CAP = RESP_MAX_INLINE_BYTES };
    char *request = malloc(CAP + 3);
    resp_parser_t parser;
    size_t consumed;

    cr_assert_not_null(request);
    request[0] = '*';
    memset(request + 1, '1', CAP + 2);

    /* A line of exactly the cap may still end in CRLF. */
    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, request, CAP, &consumed), PC_ERR_TRUNCATED);
    resp_parser_fini(&parser);

    assert_parse_error(request, CAP + 1, PC_ERR_TOO_BIG,
                       "Protocol error: too big mbulk count string");

    /* The outcome does not depend on the CRLF arriving with the line. */
    memcpy(request + CAP + 1, "\r\n", 2);
    assert_parse_error(request, CAP + 3, PC_ERR_TOO_BIG,
                       "Protocol error: too big mbulk count string");
    free(request);
}

Test(resp, bulk_expected_dollar)
{
    assert_parse_error(LIT("*1\r\nfoo\r\n"), PC_ERR_PROTOCOL,
                       "Protocol error: expected '$', got 'f'");
    assert_parse_error(LIT("*2\r\n$1\r\na\r\n:1\r\n"), PC_ERR_PROTOCOL,
                       "Protocol error: expected '$', got ':'");

    /* A byte that is not printable is shown as a hex escape. */
    assert_parse_error(LIT("*1\r\n\x01"), PC_ERR_PROTOCOL,
                       "Protocol error: expected '$', got '\\x01'");
    assert_parse_error(LIT("*1\r\n\r\n"), PC_ERR_PROTOCOL,
                       "Protocol error: expected '$', got '\\x0d'");
}

Test(resp, bulk_length_invalid)
{
    static const char *const requests[] = {
        "*1\r\n$-1\r\n", "*1\r\n$abc\r\n", "*1\r\n$04\r\n", "*1\r\n$\r\n", "*1\r\n$ 1\r\n",
        "*1\r\n$1 \r\n", "*1\r\n$-0\r\n", "*1\r\n$4\rPING\r\n",
        "*1\r\n$99999999999999999999\r\n",
    };

    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++)
        assert_parse_error(requests[i], strlen(requests[i]), PC_ERR_PROTOCOL,
                           "Protocol error: invalid bulk length");
}

Test(resp, bulk_length_over_max)
{
    assert_parse_error(LIT("*1\r\n$536870913\r\n"), PC_ERR_TOO_BIG,
                       "Protocol error: invalid bulk length");
}

Test(resp, bulk_length_max_hint)
{
    const char request[] = "*2\r\n$3\r\nSET\r\n$536870912\r\n";
    resp_parser_t parser;
    size_t consumed;
    size_t need = 0;

    /* The largest bulk is accepted, and the hint gives the bytes to buffer. */
    resp_parser_init(&parser);
    cr_assert_eq(resp_parse(&parser, LIT(request), &consumed, &need), PC_ERR_TRUNCATED);
    cr_assert_eq(need, sizeof request - 1 + 536870912ull + 2);
    cr_assert_eq(parser.argc, 1);
    resp_parser_fini(&parser);
}

Test(resp, bulk_count_line_too_big)
{
    enum { CAP = RESP_MAX_INLINE_BYTES };
    char *request = malloc(4 + CAP + 1);
    cr_assert_not_null(request);
    memcpy(request, "*1\r\n$", 5);
    memset(request + 5, '9', CAP);

    assert_parse_error(request, 4 + CAP + 1, PC_ERR_TOO_BIG,
                       "Protocol error: too big bulk count string");
    free(request);
}

Test(resp, bulk_missing_crlf)
{
    static const char *const requests[] = {
        "*1\r\n$4\r\nPINGxy", "*1\r\n$4\r\nPING\rx", "*1\r\n$4\r\nPING\n\r",
        "*1\r\n$0\r\nxx",
    };

    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++)
        assert_parse_error(requests[i], strlen(requests[i]), PC_ERR_PROTOCOL,
                           "Protocol error: expected CRLF after bulk data");
}

Test(resp, bulk_binary_safe)
{
    const char request[] = "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$9\r\n\0\r\n$*\r\n\n\xff\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT(request), &consumed), PC_OK);
    cr_assert_eq(consumed, sizeof request - 1);
    cr_assert_eq(parser.argc, 3);
    assert_arg(&parser, request, 1, "", 0);
    assert_arg(&parser, request, 2, LIT("\0\r\n$*\r\n\n\xff"));
    resp_parser_fini(&parser);
}

Test(resp, parse_pipeline)
{
    enum { COUNT = 1000 };
    pc_buf_t stream;
    resp_parser_t parser;

    /* Every third request is an inline one. */
    buf_init(&stream, 1 << 20);
    for (int i = 0; i < COUNT; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);

        if (i % 3 == 2)
            buf_printf(&stream, "INCR %s\r\n", key);
        else
            buf_printf(&stream, "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", n, key);
    }
    cr_assert_eq(buf_error(&stream), PC_OK);

    resp_parser_init(&parser);
    size_t start = 0;
    for (int i = 0; i < COUNT; i++) {
        size_t consumed;
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);

        cr_assert_eq(parse_once(&parser, stream.data + start, stream.len - start, &consumed),
                     PC_OK, "request %d", i);
        cr_assert_eq(parser.argc, 2, "request %d", i);
        assert_arg(&parser, stream.data + start, 0, LIT("INCR"));
        assert_arg(&parser, stream.data + start, 1, key, (size_t)n);
        start += consumed;
    }
    cr_assert_eq(start, stream.len);

    size_t consumed;
    cr_assert_eq(parse_once(&parser, stream.data + start, 0, &consumed), PC_ERR_TRUNCATED);
    resp_parser_fini(&parser);
    buf_fini(&stream);
}

Test(resp, error_is_sticky)
{
    const char bad[] = "*1\r\nx";
    const char good[] = "*1\r\n$4\r\nPING\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT(bad), &consumed), PC_ERR_PROTOCOL);
    cr_assert_eq(parse_once(&parser, LIT(good), &consumed), PC_ERR_PROTOCOL);
    cr_assert_str_eq(parser.error, "Protocol error: expected '$', got 'x'");

    resp_parser_reset(&parser);
    cr_assert_eq(parse_once(&parser, LIT(good), &consumed), PC_OK);
    cr_assert_str_eq(parser.error, "");
    resp_parser_fini(&parser);
}

Test(resp, reset_drops_partial_request)
{
    const char good[] = "*1\r\n$4\r\nPING\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT("*2\r\n$3\r\nGE"), &consumed), PC_ERR_TRUNCATED);
    resp_parser_reset(&parser);
    cr_assert_eq(parse_once(&parser, LIT(good), &consumed), PC_OK);
    cr_assert_eq(parser.argc, 1);
    assert_arg(&parser, good, 0, LIT("PING"));
    resp_parser_fini(&parser);
}

/* ---- Inline requests ---- */

struct inline_case {
    const char *line;
    size_t line_len;
    size_t argc;
    struct {
        const char *data;
        size_t len;
    } args[3];
};

#define ARG(s) {(s), sizeof(s) - 1}

Test(resp, inline_quoting)
{
    static const struct inline_case cases[] = {
        {LIT("SET k v\r\n"), 3, {ARG("SET"), ARG("k"), ARG("v")}},
        {LIT("  SET\tk   v  \r\n"), 3, {ARG("SET"), ARG("k"), ARG("v")}},
        {LIT("ECHO \"a\\x41\\n\"\r\n"), 2, {ARG("ECHO"), ARG("aA\n")}},
        {LIT("ECHO \"a\\x4\"\r\n"), 2, {ARG("ECHO"), ARG("ax4")}},
        {LIT("ECHO \"a\\xzz\"\r\n"), 2, {ARG("ECHO"), ARG("axzz")}},
        {LIT("ECHO \"\\q\\b\\a\\t\\r\\\\\\\"\"\r\n"), 2, {ARG("ECHO"), ARG("q\b\a\t\r\\\"")}},
        {LIT("ECHO \"\\x00\\xfF\"\r\n"), 2, {ARG("ECHO"), ARG("\0\xff")}},
        {LIT("ECHO 'a\\'b'\r\n"), 2, {ARG("ECHO"), ARG("a'b")}},
        {LIT("ECHO 'a\\nb'\r\n"), 2, {ARG("ECHO"), ARG("a\\nb")}},
        {LIT("ECHO a\"b c\"\r\n"), 2, {ARG("ECHO"), ARG("ab c")}},
        {LIT("ECHO \"a b\" 'c d'\r\n"), 3, {ARG("ECHO"), ARG("a b"), ARG("c d")}},
        {LIT("ECHO \"\"\r\n"), 2, {ARG("ECHO"), ARG("")}},
        {LIT("ECHO ''\r\n"), 2, {ARG("ECHO"), ARG("")}},
        {LIT("ECHO a\vb\r\n"), 2, {ARG("ECHO"), ARG("a\vb")}},
        {LIT("ECHO a\rb\r\n"), 3, {ARG("ECHO"), ARG("a"), ARG("b")}},
        {LIT("ECHO \"a\"\vx\r\n"), 3, {ARG("ECHO"), ARG("a"), ARG("x")}},
        {LIT("ECHO a\0b\r\n"), 2, {ARG("ECHO"), ARG("a\0b")}},
        {LIT("PING\n"), 1, {ARG("PING")}},
        {LIT("PING"), 1, {ARG("PING")}},
        {LIT("\r\n"), 0, {{NULL, 0}}},
        {LIT("\n"), 0, {{NULL, 0}}},
        {LIT(" \t \r\n"), 0, {{NULL, 0}}},
    };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct inline_case *test = &cases[c];
        resp_parser_t parser;
        size_t consumed;

        /* A line without its end is given one, to test the line itself. */
        char line[64];
        size_t len = test->line_len;
        memcpy(line, test->line, len);
        if (len == 0 || line[len - 1] != '\n')
            line[len++] = '\n';

        resp_parser_init(&parser);
        cr_assert_eq(parse_once(&parser, line, len, &consumed), PC_OK, "case %zu", c);
        cr_assert_eq(consumed, len, "case %zu", c);
        cr_assert_eq(parser.argc, test->argc, "case %zu: argc %zu", c, parser.argc);
        for (size_t i = 0; i < test->argc; i++) {
            cr_assert_eq(parser.args[i].len, test->args[i].len, "case %zu argument %zu", c, i);
            cr_assert_arr_eq(resp_arg_ptr(&parser, line, i), test->args[i].data,
                             test->args[i].len, "case %zu argument %zu", c, i);
        }
        resp_parser_fini(&parser);
    }
}

Test(resp, inline_unbalanced_quotes)
{
    static const char *const lines[] = {
        "PING \"a\r\n", "ECHO \"a\"b\r\n", "ECHO a'b c'd\r\n", "ECHO 'abc\r\n",
        "ECHO \"abc\\\"\r\n", "ECHO 'a'b'\r\n", "ECHO \"a\\\r\n", "\"\r\n",
    };

    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_parse_error(lines[i], strlen(lines[i]), PC_ERR_PROTOCOL,
                           "Protocol error: unbalanced quotes in request");
}

Test(resp, inline_line_ends)
{
    const char stream[] = "\r\n\nPING\nECHO x\r\n";
    resp_parser_t parser;
    size_t start = 0;
    size_t consumed;

    /* Empty lines are requests with no arguments, and LF alone ends a
     * line. */
    static const size_t lengths[] = {2, 1, 5, 8};
    static const size_t argcs[] = {0, 0, 1, 2};

    resp_parser_init(&parser);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(parse_once(&parser, stream + start, sizeof stream - 1 - start, &consumed),
                     PC_OK, "request %zu", i);
        cr_assert_eq(consumed, lengths[i], "request %zu", i);
        cr_assert_eq(parser.argc, argcs[i], "request %zu", i);
        start += consumed;
    }
    cr_assert_eq(start, sizeof stream - 1);
    resp_parser_fini(&parser);
}

Test(resp, inline_args_copied)
{
    const char request[] = "GET key\r\n";
    resp_parser_t parser;
    size_t consumed;

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT(request), &consumed), PC_OK);
    const char *arg = resp_arg_ptr(&parser, request, 1);
    cr_assert(arg < request || arg >= request + sizeof request);
    cr_assert_arr_eq(arg, "key", 3);
    resp_parser_fini(&parser);
}

Test(resp, inline_too_big)
{
    enum { CAP = RESP_MAX_INLINE_BYTES };
    char *line = malloc(CAP + 3);
    resp_parser_t parser;
    size_t consumed;

    cr_assert_not_null(line);
    memset(line, 'P', CAP + 1);
    resp_parser_init(&parser);

    /* A line of exactly the cap is accepted, with CRLF or LF. */
    cr_assert_eq(parse_once(&parser, line, CAP, &consumed), PC_ERR_TRUNCATED);
    line[CAP] = '\r';
    cr_assert_eq(parse_once(&parser, line, CAP + 1, &consumed), PC_ERR_TRUNCATED);
    line[CAP + 1] = '\n';
    cr_assert_eq(parse_once(&parser, line, CAP + 2, &consumed), PC_OK);
    cr_assert_eq(parser.argc, 1);
    cr_assert_eq(parser.args[0].len, CAP);
    line[CAP] = '\n';
    cr_assert_eq(parse_once(&parser, line, CAP + 1, &consumed), PC_OK);
    cr_assert_eq(consumed, CAP + 1);
    resp_parser_fini(&parser);

    /* One byte more is rejected, whether or not the line end arrived. */
    line[CAP] = 'P';
    assert_parse_error(line, CAP + 1, PC_ERR_TOO_BIG, "Protocol error: too big inline request");
    memcpy(line + CAP + 1, "\r\n", 2);
    assert_parse_error(line, CAP + 3, PC_ERR_TOO_BIG, "Protocol error: too big inline request");
    free(line);
}

/* ---- Incremental parsing ---- */

Test(resp, parse_keeps_position)
{
    resp_parser_t parser;
    size_t consumed;

    /* A parsed argument and a partly scanned line are not read again. */
    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT("*2\r\n$4\r\nECHO\r\n$10"), &consumed),
                 PC_ERR_TRUNCATED);
    cr_assert_eq(parser.argc, 1);
    cr_assert_eq(parser.pos, 14);
    cr_assert_eq(parser.scan_pos, 17);
    resp_parser_fini(&parser);

    resp_parser_init(&parser);
    cr_assert_eq(parse_once(&parser, LIT("GET ke"), &consumed), PC_ERR_TRUNCATED);
    cr_assert_eq(parser.scan_pos, 6);
    resp_parser_fini(&parser);
}

Test(resp, split_every_byte)
{
    pc_buf_t stream;
    char big[300];

    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);

    buf_init(&stream, 1 << 16);
    buf_printf(&stream, "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
    buf_append(&stream, LIT("*3\r\n$3\r\nSET\r\n$1\r\n\0\r\n$5\r\n\r\n\0\n\r\r\n"));
    buf_printf(&stream, "*0\r\n*-1\r\n");
    buf_printf(&stream, "SET 'k 1' \"v\\x41\\n\"\r\n\r\nPING\n");
    buf_printf(&stream, "*3\r\n$4\r\nECHO\r\n$0\r\n\r\n$%zu\r\n", sizeof big);
    buf_append(&stream, big, sizeof big);
    buf_printf(&stream, "\r\n*1\r\n$4\r\nPI");
    cr_assert_eq(buf_error(&stream), PC_OK);

    pc_buf_t whole;
    transcribe(stream.data, stream.len, &stream.len, 1, &whole);
    cr_assert(memmem(whole.data, whole.len, "argc=3 [3]SET [1]", 17) != NULL);
    cr_assert(memmem(whole.data, whole.len, "left=10", 7) != NULL);
    buf_fini(&whole);

    assert_split_invariant(stream.data, stream.len);
    buf_fini(&stream);
}

Test(resp, split_every_byte_errors)
{
    static const char *const streams[] = {
        "*1\r\n$4\r\nPING\r\n*1\r\n$-2\r\n",
        "PING\r\n*1\r\n$4\r\nPINGxy",
        "*1\r\n$3\r\nGET\r\nECHO \"a\r\n",
        "*2\r\n$3\r\nGET\r\nk\r\n",
        "*1\r\n$1\r\na\r\n*x\r\n",
    };

    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++)
        assert_split_invariant(streams[i], strlen(streams[i]));
}

Test(resp, split_long_lines)
{
    enum { CAP = RESP_MAX_INLINE_BYTES };
    char *stream = malloc(CAP + 8);
    cr_assert_not_null(stream);

    /* Only some splits, since each one rescans the whole line. */
    memset(stream, 'P', CAP + 8);
    size_t lengths[] = {CAP - 1, CAP, CAP + 1, CAP + 2, CAP + 3};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        pc_buf_t whole, pieces;
        size_t len = lengths[i];
        size_t arrivals[] = {1, CAP / 2, CAP - 2, CAP - 1, CAP, CAP + 1, CAP + 2, len};

        memcpy(stream + len - 2, "\r\n", 2);
        transcribe(stream, len, &len, 1, &whole);
        size_t count = 0;
        while (arrivals[count] < len)
            count++;
        arrivals[count] = len;
        transcribe(stream, len, arrivals, count + 1, &pieces);
        assert_same_log(&pieces, &whole, "long line");
        buf_fini(&whole);
        buf_fini(&pieces);
        memset(stream + len - 2, 'P', 2);
    }
    free(stream);
}

/* ---- Reply writers ---- */

static void assert_output(const pc_buf_t *out, const char *expected, size_t len)
{
    cr_assert_eq(buf_error(out), PC_OK);
    cr_assert_eq(out->len, len, "output %.*s, expected %.*s", (int)out->len, out->data,
                 (int)len, expected);
    cr_assert_arr_eq(out->data, expected, len, "output %.*s, expected %.*s", (int)out->len,
                     out->data, (int)len, expected);
}

Test(resp, write_simple)
{
    pc_buf_t out;

    buf_init(&out, 1024);
    resp_add_simple(&out, "OK");
    resp_add_simple(&out, "two\r\nlines");
    assert_output(&out, LIT("+OK\r\n+two  lines\r\n"));
    buf_fini(&out);
}

Test(resp, write_error)
{
    pc_buf_t out;

    buf_init(&out, 1024);
    resp_add_error(&out, "ERR syntax error");
    resp_add_error(&out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    resp_add_error(&out, "ERR bad\r\nline\n");
    assert_output(&out, LIT("-ERR syntax error\r\n"
                            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
                            "-ERR bad  line \r\n"));
    buf_fini(&out);
}

Test(resp, write_errorf)
{
    pc_buf_t out;
    char name[300];

    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    name[10] = '\n';

    buf_init(&out, 1024);
    resp_add_errorf(&out, "ERR unknown command '%s'", "foo");
    assert_output(&out, LIT("-ERR unknown command 'foo'\r\n"));

    /* Longer than any fixed buffer, and with a line break to replace. */
    buf_reset(&out);
    resp_add_errorf(&out, "ERR unknown command '%s'", name);
    name[10] = ' ';
    char expected[400];
    int n = snprintf(expected, sizeof expected, "-ERR unknown command '%s'\r\n", name);
    assert_output(&out, expected, (size_t)n);
    buf_fini(&out);
}

Test(resp, write_int)
{
    pc_buf_t out;

    buf_init(&out, 1024);
    resp_add_int(&out, 0);
    resp_add_int(&out, -1);
    resp_add_int(&out, 1234567);
    resp_add_int(&out, LLONG_MAX);
    resp_add_int(&out, LLONG_MIN);
    assert_output(&out, LIT(":0\r\n:-1\r\n:1234567\r\n:9223372036854775807\r\n"
                            ":-9223372036854775808\r\n"));
    buf_fini(&out);
}

Test(resp, write_bulk)
{
    pc_buf_t out;

    buf_init(&out, 1024);
    resp_add_bulk(&out, "hello", 5);
    resp_add_bulk(&out, NULL, 0);
    resp_add_bulk(&out, "\0\r\n", 3);
    resp_add_cstr(&out, "text");
    assert_output(&out, LIT("$5\r\nhello\r\n$0\r\n\r\n$3\r\n\0\r\n\r\n$4\r\ntext\r\n"));
    buf_fini(&out);
}

Test(resp, write_nulls_and_arrays)
{
    pc_buf_t out;

    buf_init(&out, 1024);
    resp_add_null(&out);
    resp_add_null_array(&out);
    resp_add_array(&out, 0);
    resp_add_array(&out, 12);
    assert_output(&out, LIT("$-1\r\n*-1\r\n*0\r\n*12\r\n"));
    buf_fini(&out);
}

Test(resp, write_over_cap)
{
    pc_buf_t out;

    buf_init(&out, 8);
    resp_add_bulk(&out, "hello", 5);
    cr_assert_eq(buf_error(&out), PC_ERR_TOO_BIG);

    /* The error is sticky, so later small values are dropped too. */
    resp_add_int(&out, 1);
    resp_add_errorf(&out, "ERR %d", 1);
    cr_assert_eq(buf_error(&out), PC_ERR_TOO_BIG);
    cr_assert_eq(out.len, 0);
    buf_fini(&out);
}

/* ---- Reply reader ---- */

Test(resp, read_round_trip)
{
    pc_buf_t out;
    resp_value_t value;
    size_t consumed;
    size_t at = 0;

    buf_init(&out, 1024);
    resp_add_simple(&out, "OK");
    resp_add_error(&out, "ERR no");
    resp_add_int(&out, LLONG_MIN);
    resp_add_bulk(&out, "a\r\nb", 4);
    resp_add_null(&out);
    resp_add_array(&out, 2);
    resp_add_null_array(&out);
    cr_assert_eq(buf_error(&out), PC_OK);

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_SIMPLE);
    cr_assert_eq(value.len, 2);
    cr_assert_arr_eq(value.str, "OK", 2);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_ERROR);
    cr_assert_eq(value.len, 6);
    cr_assert_arr_eq(value.str, "ERR no", 6);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_INT);
    cr_assert_eq(value.integer, LLONG_MIN);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_BULK);
    cr_assert_eq(value.integer, 4);
    cr_assert_eq(value.len, 4);
    cr_assert_arr_eq(value.str, "a\r\nb", 4);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_BULK);
    cr_assert_eq(value.integer, -1);
    cr_assert_null(value.str);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_ARRAY);
    cr_assert_eq(value.integer, 2);
    at += consumed;

    cr_assert_eq(resp_read_value(out.data + at, out.len - at, &value, &consumed), PC_OK);
    cr_assert_eq(value.type, RESP_ARRAY);
    cr_assert_eq(value.integer, -1);
    at += consumed;

    cr_assert_eq(at, out.len);
    cr_assert_eq(resp_read_value(out.data + at, 0, &value, &consumed), PC_ERR_TRUNCATED);
    buf_fini(&out);
}

Test(resp, skip_nested_arrays)
{
    const char reply[] = "*3\r\n*2\r\n:1\r\n$1\r\na\r\n*-1\r\n*0\r\n+tail\r\n";
    size_t consumed;

    cr_assert_eq(resp_skip_value(LIT(reply), &consumed), PC_OK);
    cr_assert_eq(consumed, sizeof reply - 1 - 7);

    /* Every shorter prefix is incomplete. */
    for (size_t len = 0; len < consumed; len++) {
        char *copy = malloc(len ? len : 1);
        cr_assert_not_null(copy);
        memcpy(copy, reply, len);
        cr_assert_eq(resp_skip_value(copy, len, &consumed), PC_ERR_TRUNCATED,
                     "prefix of %zu bytes", len);
        free(copy);
    }
}

Test(resp, read_truncated)
{
    static const char *const replies[] = {
        "+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n",
    };

    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        size_t whole = strlen(replies[i]);
        resp_value_t value;
        size_t consumed;

        cr_assert_eq(resp_read_value(replies[i], whole, &value, &consumed), PC_OK, "%s",
                     replies[i]);
        cr_assert_eq(consumed, whole, "%s", replies[i]);
        for (size_t len = 0; len < whole; len++) {
            cr_assert_eq(resp_read_value(replies[i], len, &value, &consumed), PC_ERR_TRUNCATED,
                         "%s cut to %zu bytes", replies[i], len);
        }
    }
}

Test(resp, read_garbage)
{
    static const char *const replies[] = {
        "?x\r\n", "OK\r\n", ":abc\r\n", ":\r\n", ":1\rx", ":01\r\n", "$-2\r\n", "$x\r\n",
        "$3\r\nabcxx", "$3\r\nabc\rx", "*-2\r\n", "*x\r\n", "+OK\rx",
        "$536870913\r\n", "*1048577\r\n",
    };

    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        resp_value_t value;
        size_t consumed;

        cr_assert_eq(resp_read_value(replies[i], strlen(replies[i]), &value, &consumed),
                     PC_ERR_PROTOCOL, "%s", replies[i]);
        cr_assert_eq(resp_skip_value(replies[i], strlen(replies[i]), &consumed),
                     PC_ERR_PROTOCOL, "%s", replies[i]);
    }
}

Test(resp, skip_garbage_element)
{
    size_t consumed;

    cr_assert_eq(resp_skip_value(LIT("*2\r\n:1\r\n?\r\n"), &consumed), PC_ERR_PROTOCOL);
}

Test(resp, skip_depth_limit)
{
    pc_buf_t reply;
    size_t consumed;

    /* 32 nested arrays are allowed, 33 are not. */
    buf_init(&reply, 1024);
    for (int i = 0; i < 32; i++)
        buf_append(&reply, LIT("*1\r\n"));
    buf_append(&reply, LIT(":1\r\n"));
    cr_assert_eq(resp_skip_value(reply.data, reply.len, &consumed), PC_OK);
    cr_assert_eq(consumed, reply.len);

    buf_reset(&reply);
    for (int i = 0; i < 33; i++)
        buf_append(&reply, LIT("*1\r\n"));
    buf_append(&reply, LIT(":1\r\n"));
    cr_assert_eq(resp_skip_value(reply.data, reply.len, &consumed), PC_ERR_PROTOCOL);
    buf_fini(&reply);
}
