/* Unit tests of the string and key commands (cmd_keys.c), run through
 * cmd_execute against a real store. Expected replies are the exact bytes
 * that redis-server 7.0.15 sends for the same commands. Time moves only
 * through ctx.now_ms. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "hash.h"
#include "hlc.h"
#include "resp.h"
#include "store.h"

#define TEST_MAX_ARGS 32
#define TEST_MAX_RECORDS 256
#define TEST_OUT_MAX_BYTES (64u * 1024 * 1024)
#define TEST_ORIGIN 0x1234u
#define TEST_NOW_MS 1700000000000LL /* a fixed "now" in 2023 */

/* One entry that the handlers passed to ctx.replicate, copied. */
typedef struct record {
    pc_version_t version;
    uint32_t flags;
    int64_t expire_ms;
    char *key;
    char *value;
    size_t value_len;
} record_t;

static store_t *store;
static pc_hlc_t test_clock;
static pc_buf_t out;
static cmd_ctx_t ctx;
static record_t records[TEST_MAX_RECORDS];
static size_t record_count;
static char *reply; /* the last reply, NUL-terminated */

static char *copy_bytes(const char *ptr, size_t len)
{
    char *copy = malloc(len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, ptr, len);
    copy[len] = '\0';
    return copy;
}

static void record_entry(void *arg, const store_entry_t *entry)
{
    cr_assert_lt(record_count, TEST_MAX_RECORDS);
    record_t *rec = &records[record_count++];
    rec->version = entry->version;
    rec->flags = entry->flags;
    rec->expire_ms = entry->expire_ms;
    rec->key = copy_bytes(entry->key, entry->key_len);
    rec->value = copy_bytes(entry->value, entry->value_len);
    rec->value_len = entry->value_len;
}

static void cmd_setup(void)
{
    cr_assert_eq(hash_init(), PC_OK);
    store_thread_register();
    cr_assert_eq(store_new(&store), PC_OK);
    hlc_init(&test_clock);
    buf_init(&out, TEST_OUT_MAX_BYTES);

    ctx = (cmd_ctx_t){
        .store = store,
        .clock = &test_clock,
        .origin = TEST_ORIGIN,
        .now_ms = TEST_NOW_MS,
        .out = &out,
        .replicate = record_entry,
        .replicate_arg = NULL,
    };
}

static void cmd_teardown(void)
{
    for (size_t i = 0; i < record_count; i++) {
        free(records[i].key);
        free(records[i].value);
    }
    record_count = 0;
    free(reply);
    reply = NULL;
    buf_fini(&out);
    store_destroy(&store);
    store_thread_unregister();
}

TestSuite(cmd, .init = cmd_setup, .fini = cmd_teardown);

/* Runs the NULL-terminated argument list words and returns the reply. */
static const char *run_words(const char *const *words)
{
    cmd_arg_t argv[TEST_MAX_ARGS];
    int argc = 0;
    for (; words[argc] != NULL; argc++) {
        cr_assert_lt(argc, TEST_MAX_ARGS);
        argv[argc] = (cmd_arg_t){words[argc], strlen(words[argc])};
    }

    buf_reset(&out);
    cmd_execute(&ctx, argc, argv);
    cr_assert_eq(buf_error(&out), PC_OK);

    free(reply);
    reply = copy_bytes(out.data ? out.data : "", out.len);
    return reply;
}

#define RUN(...) run_words((const char *const[]){__VA_ARGS__, NULL})

/* Asserts the exact reply of a command. */
#define EXPECT(expected, ...) \
    cr_assert_str_eq(RUN(__VA_ARGS__), (expected), "command %s", #__VA_ARGS__)

#define ERR_SYNTAX "-ERR syntax error\r\n"
#define ERR_NOT_INTEGER "-ERR value is not an integer or out of range\r\n"
#define ERR_NOT_FLOAT "-ERR value is not a valid float\r\n"
#define ERR_TOO_BIG \
    "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"

static const record_t *last_record(void)
{
    cr_assert_gt(record_count, 0);
    return &records[record_count - 1];
}

/* ---- Table ---- */

Test(cmd, table_shapes)
{
    const cmd_def_t *get = cmd_lookup("GET", 3);
    cr_assert_not_null(get);
    cr_assert_eq(get->arity, 2);
    cr_assert_eq(get->flags, CMD_READ);

    const cmd_def_t *set = cmd_lookup("set", 3);
    cr_assert_eq(set->arity, -3);
    cr_assert_eq(set->flags, CMD_WRITE);

    const cmd_def_t *mset = cmd_lookup("mset", 4);
    cr_assert_eq(mset->arity, -3);
    cr_assert_eq(mset->first_key, 1);
    cr_assert_eq(mset->last_key, -1);
    cr_assert_eq(mset->key_step, 2);
    cr_assert_eq(mset->merge, CMD_MERGE_OK);

    cr_assert_eq(cmd_lookup("mget", 4)->merge, CMD_MERGE_ARRAY);
    cr_assert_eq(cmd_lookup("del", 3)->merge, CMD_MERGE_SUM);
    cr_assert_eq(cmd_lookup("unlink", 6)->merge, CMD_MERGE_SUM);
    cr_assert_eq(cmd_lookup("exists", 6)->merge, CMD_MERGE_SUM);
    cr_assert_eq(cmd_lookup("touch", 5)->merge, CMD_MERGE_SUM);
    cr_assert_eq(cmd_lookup("msetnx", 6)->merge, CMD_MERGE_NONE);
    cr_assert_eq(cmd_lookup("getrange", 8)->arity, 4);
    cr_assert_eq(cmd_lookup("expire", 6)->arity, -3);
}

Test(cmd, table_every_command)
{
    static const char *const names[] = {
        "get", "set", "setnx", "setex", "psetex", "getset", "getdel",
        "getex", "del", "unlink", "exists", "touch", "mget", "mset",
        "msetnx", "incr", "decr", "incrby", "decrby", "incrbyfloat",
        "append", "strlen", "getrange", "setrange", "expire", "pexpire",
        "expireat", "pexpireat", "ttl", "pttl", "persist", "type",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const cmd_def_t *def = cmd_lookup(names[i], strlen(names[i]));
        cr_assert_not_null(def, "%s", names[i]);
        cr_assert_eq(def->first_key, 1, "%s", names[i]);
        cr_assert(def->flags == CMD_READ || def->flags == CMD_WRITE, "%s",
                  names[i]);
    }
}

Test(cmd, arity_errors)
{
    EXPECT("-ERR wrong number of arguments for 'get' command\r\n", "GET");
    EXPECT("-ERR wrong number of arguments for 'set' command\r\n", "SET", "k");
    EXPECT("-ERR wrong number of arguments for 'mset' command\r\n", "MSET",
           "a", "1", "b");
    EXPECT("-ERR wrong number of arguments for 'msetnx' command\r\n",
           "MSETNX", "a", "1", "b");
    EXPECT("-ERR wrong number of arguments for 'ttl' command\r\n", "TTL", "a",
           "b");
    cr_assert_eq(record_count, 0);
}

/* ---- GET and SET ---- */

Test(cmd, set_then_get)
{
    EXPECT("+OK\r\n", "SET", "foo", "bar");
    EXPECT("$3\r\nbar\r\n", "GET", "foo");
    EXPECT("$-1\r\n", "GET", "missing");
    EXPECT("+OK\r\n", "SET", "empty", "");
    EXPECT("$0\r\n\r\n", "GET", "empty");
}

Test(cmd, set_nx_xx)
{
    EXPECT("$-1\r\n", "SET", "k", "v", "XX");
    EXPECT("$-1\r\n", "GET", "k");
    EXPECT("+OK\r\n", "SET", "k", "v", "NX");
    EXPECT("$-1\r\n", "SET", "k", "w", "NX");
    EXPECT("$-1\r\n", "SET", "k", "w", "nx", "nx");
    EXPECT("$1\r\nv\r\n", "GET", "k");
    EXPECT("+OK\r\n", "SET", "k", "w", "xx");
    EXPECT("$1\r\nw\r\n", "GET", "k");
}

Test(cmd, set_get_option)
{
    EXPECT("$-1\r\n", "SET", "k", "v1", "GET");
    EXPECT("$2\r\nv1\r\n", "SET", "k", "v2", "GET");
    EXPECT("$2\r\nv2\r\n", "SET", "k", "v3", "NX", "GET");
    EXPECT("$2\r\nv2\r\n", "GET", "k");
    EXPECT("$2\r\nv2\r\n", "SET", "k", "v4", "GET", "XX");
    EXPECT("$-1\r\n", "SET", "other", "v", "XX", "GET");
    EXPECT("$-1\r\n", "GET", "other");
    EXPECT("$2\r\nv4\r\n", "SET", "k", "v5", "get", "get");
}

Test(cmd, set_syntax_errors)
{
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "NX", "XX");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "XX", "NX");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EX", "10", "PX", "100");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "PX", "10", "PXAT", "20");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EXAT", "10", "EX", "20");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EX", "10", "KEEPTTL");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "KEEPTTL", "PX", "10");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EX");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "PX", "10", "EX");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "BOGUS");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "PERSIST");
    /* A syntax error anywhere wins over a bad number. */
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EX", "abc", "NX", "XX");
    EXPECT(ERR_SYNTAX, "SET", "k", "v", "EX", "10", "PX", "abc");
    EXPECT("$-1\r\n", "GET", "k");
    cr_assert_eq(record_count, 0);
}

Test(cmd, set_expire_errors)
{
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "EX", "abc");
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "EX", "1.5");
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "EX", "01");
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "EX", "+1");
    /* The number after EX is taken even when it looks like an option. */
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "EX", "NX");
    EXPECT(ERR_NOT_INTEGER, "SET", "k", "v", "PX", "10", "PX", "abc");

    const char *invalid = "-ERR invalid expire time in 'set' command\r\n";
    EXPECT(invalid, "SET", "k", "v", "EX", "0");
    EXPECT(invalid, "SET", "k", "v", "EX", "-1");
    EXPECT(invalid, "SET", "k", "v", "PX", "0");
    EXPECT(invalid, "SET", "k", "v", "EXAT", "0");
    EXPECT(invalid, "SET", "k", "v", "PXAT", "-5");
    EXPECT(invalid, "SET", "k", "v", "EX", "9223372036854775807");
    /* Within LLONG_MAX / 1000, but past LLONG_MAX once now is added. */
    EXPECT(invalid, "SET", "k", "v", "EX", "9223372036854775");
    EXPECT(invalid, "SET", "k", "v", "PX", "9223372036854775807");
    EXPECT(invalid, "SET", "k", "v", "EXAT", "9223372036854776");
    EXPECT("$-1\r\n", "GET", "k");
    cr_assert_eq(record_count, 0);
}

Test(cmd, set_expire_limits)
{
    EXPECT("+OK\r\n", "SET", "k", "v", "PXAT", "9223372036854775807");
    cr_assert_eq(last_record()->expire_ms, LLONG_MAX);
    EXPECT("+OK\r\n", "SET", "k", "v", "EXAT", "9223372036854775");
    cr_assert_eq(last_record()->expire_ms, 9223372036854775000LL);
    EXPECT("+OK\r\n", "SET", "k", "v", "EX", "9223372036854");
    cr_assert_eq(last_record()->expire_ms, 9223372036854000LL + TEST_NOW_MS);
}

Test(cmd, set_expire_options)
{
    EXPECT("+OK\r\n", "SET", "k", "v", "EX", "100");
    EXPECT(":100\r\n", "TTL", "k");
    EXPECT(":100000\r\n", "PTTL", "k");
    cr_assert_eq(last_record()->expire_ms, TEST_NOW_MS + 100000);

    EXPECT("+OK\r\n", "SET", "k", "v", "px", "1500");
    EXPECT(":1500\r\n", "PTTL", "k");

    EXPECT("+OK\r\n", "SET", "k", "v", "EXAT", "1700000050");
    EXPECT(":50000\r\n", "PTTL", "k");

    EXPECT("+OK\r\n", "SET", "k", "v", "PXAT", "1700000000250");
    EXPECT(":250\r\n", "PTTL", "k");

    /* The last of repeated expiry options wins. */
    EXPECT("+OK\r\n", "SET", "k", "v", "EX", "abc", "EX", "10");
    EXPECT(":10\r\n", "TTL", "k");
    EXPECT("+OK\r\n", "SET", "k", "v", "Ex", "10", "eX", "20");
    EXPECT(":20\r\n", "TTL", "k");
}

Test(cmd, set_keepttl)
{
    EXPECT("+OK\r\n", "SET", "k", "v", "EX", "100");
    ctx.now_ms += 1000;
    EXPECT("+OK\r\n", "SET", "k", "w", "KEEPTTL");
    EXPECT(":99\r\n", "TTL", "k");
    EXPECT("$1\r\nw\r\n", "GET", "k");
    EXPECT("+OK\r\n", "SET", "k", "x", "keepttl", "keepttl");
    EXPECT(":99\r\n", "TTL", "k");

    /* A plain SET drops the expiry. */
    EXPECT("+OK\r\n", "SET", "k", "y");
    EXPECT(":-1\r\n", "TTL", "k");

    EXPECT("+OK\r\n", "SET", "new", "v", "KEEPTTL");
    EXPECT(":-1\r\n", "TTL", "new");
}

Test(cmd, set_past_time_deletes)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    size_t before = record_count;
    EXPECT("$1\r\nv\r\n", "SET", "k", "w", "PXAT", "1", "GET");
    EXPECT(":0\r\n", "EXISTS", "k");
    cr_assert_eq(record_count, before + 1);
    cr_assert(last_record()->flags & STORE_FLAG_TOMBSTONE);

    /* On a missing key there is nothing to delete, so nothing is written. */
    EXPECT("+OK\r\n", "SET", "k", "w", "EXAT", "1");
    EXPECT(":0\r\n", "EXISTS", "k");
    cr_assert_eq(record_count, before + 1);

    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT("$-1\r\n", "SET", "k", "w", "PXAT", "1", "NX");
    EXPECT("$1\r\nv\r\n", "GET", "k");
}

Test(cmd, expiry_follows_now)
{
    EXPECT("+OK\r\n", "SET", "k", "v", "PX", "100");
    ctx.now_ms += 99;
    EXPECT("$1\r\nv\r\n", "GET", "k");
    EXPECT(":1\r\n", "PTTL", "k");
    EXPECT(":0\r\n", "TTL", "k");

    ctx.now_ms += 1;
    EXPECT("$-1\r\n", "GET", "k");
    EXPECT(":-2\r\n", "TTL", "k");
    EXPECT(":-2\r\n", "PTTL", "k");
    EXPECT("+none\r\n", "TYPE", "k");
    EXPECT(":0\r\n", "EXISTS", "k");
    EXPECT(":0\r\n", "STRLEN", "k");

    /* An expired key counts as missing for conditions and KEEPTTL. */
    EXPECT("+OK\r\n", "SET", "k", "w", "NX", "KEEPTTL");
    EXPECT(":-1\r\n", "TTL", "k");
}

Test(cmd, ttl_rounding)
{
    EXPECT("+OK\r\n", "SET", "a", "v", "PX", "1499");
    EXPECT(":1\r\n", "TTL", "a");
    EXPECT("+OK\r\n", "SET", "a", "v", "PX", "1500");
    EXPECT(":2\r\n", "TTL", "a");
    EXPECT("+OK\r\n", "SET", "a", "v", "PX", "499");
    EXPECT(":0\r\n", "TTL", "a");
    EXPECT("+OK\r\n", "SET", "a", "v");
    EXPECT(":-1\r\n", "TTL", "a");
    EXPECT(":-1\r\n", "PTTL", "a");
    EXPECT(":-2\r\n", "TTL", "missing");
}

/* ---- SETNX, SETEX, PSETEX, GETSET, GETDEL ---- */

Test(cmd, setnx)
{
    EXPECT(":1\r\n", "SETNX", "k", "v");
    EXPECT(":0\r\n", "SETNX", "k", "w");
    EXPECT("$1\r\nv\r\n", "GET", "k");
    cr_assert_eq(record_count, 1);
}

Test(cmd, setex_psetex)
{
    EXPECT("+OK\r\n", "SETEX", "k", "10", "v");
    EXPECT(":10\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GET", "k");
    EXPECT("+OK\r\n", "PSETEX", "k", "100", "w");
    EXPECT(":100\r\n", "PTTL", "k");

    EXPECT("-ERR invalid expire time in 'setex' command\r\n", "SETEX", "k",
           "0", "v");
    EXPECT("-ERR invalid expire time in 'setex' command\r\n", "SETEX", "k",
           "-1", "v");
    EXPECT("-ERR invalid expire time in 'setex' command\r\n", "SETEX", "k",
           "9223372036854775807", "v");
    EXPECT("-ERR invalid expire time in 'psetex' command\r\n", "PSETEX", "k",
           "0", "v");
    EXPECT("-ERR invalid expire time in 'psetex' command\r\n", "PSETEX", "k",
           "9223372036854775807", "v");
    EXPECT(ERR_NOT_INTEGER, "SETEX", "k", "abc", "v");
    EXPECT("-ERR wrong number of arguments for 'setex' command\r\n", "SETEX",
           "k", "10");
    EXPECT("$1\r\nw\r\n", "GET", "k");
}

Test(cmd, getset)
{
    EXPECT("$-1\r\n", "GETSET", "k", "v");
    EXPECT("$1\r\nv\r\n", "GETSET", "k", "w");
    EXPECT("$1\r\nw\r\n", "GET", "k");

    EXPECT("+OK\r\n", "SET", "t", "v", "EX", "100");
    EXPECT("$1\r\nv\r\n", "GETSET", "t", "w");
    EXPECT(":-1\r\n", "TTL", "t");
}

Test(cmd, getdel)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    size_t before = record_count;
    EXPECT("$1\r\nv\r\n", "GETDEL", "k");
    EXPECT("$-1\r\n", "GET", "k");
    cr_assert_eq(record_count, before + 1);
    cr_assert(last_record()->flags & STORE_FLAG_TOMBSTONE);
    cr_assert_str_eq(last_record()->key, "k");
    cr_assert_eq(last_record()->value_len, 0);

    EXPECT("$-1\r\n", "GETDEL", "k");
    cr_assert_eq(record_count, before + 1);
}

/* ---- GETEX ---- */

Test(cmd, getex_options)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT("$1\r\nv\r\n", "GETEX", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "EX", "100");
    EXPECT(":100\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "PERSIST");
    EXPECT(":-1\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "PX", "1500");
    EXPECT(":1500\r\n", "PTTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "EXAT", "1700000020");
    EXPECT(":20\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "PXAT", "1700000000300");
    EXPECT(":300\r\n", "PTTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "EX", "10", "EX", "20");
    EXPECT(":20\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "persist", "persist");
    EXPECT(":-1\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "PXAT", "9223372036854775807");
    EXPECT("$1\r\nv\r\n", "GET", "k");
}

Test(cmd, getex_errors)
{
    EXPECT(ERR_SYNTAX, "GETEX", "missing", "BOGUS");
    EXPECT(ERR_SYNTAX, "GETEX", "missing", "EX");
    EXPECT(ERR_SYNTAX, "GETEX", "missing", "NX");
    EXPECT(ERR_SYNTAX, "GETEX", "missing", "KEEPTTL");

    /* A missing key replies null before the number is looked at. */
    EXPECT("$-1\r\n", "GETEX", "missing", "EX", "abc");
    EXPECT("$-1\r\n", "GETEX", "missing", "EX", "0");

    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT(ERR_SYNTAX, "GETEX", "k", "EX", "10", "PX", "10");
    EXPECT(ERR_SYNTAX, "GETEX", "k", "PX", "10", "EX", "10");
    EXPECT(ERR_SYNTAX, "GETEX", "k", "EX", "10", "PERSIST");
    EXPECT(ERR_SYNTAX, "GETEX", "k", "PERSIST", "EX", "10");
    EXPECT(ERR_SYNTAX, "GETEX", "k", "EX", "abc", "PX", "10");
    EXPECT(ERR_NOT_INTEGER, "GETEX", "k", "EX", "abc");
    EXPECT(ERR_NOT_INTEGER, "GETEX", "k", "EX", "PERSIST");
    EXPECT("-ERR invalid expire time in 'getex' command\r\n", "GETEX", "k",
           "EX", "0");
    EXPECT("-ERR invalid expire time in 'getex' command\r\n", "GETEX", "k",
           "PX", "9223372036854775807");
    EXPECT("-ERR invalid expire time in 'getex' command\r\n", "GETEX", "k",
           "EXAT", "9223372036854776");
    EXPECT(":-1\r\n", "TTL", "k");
    cr_assert_eq(record_count, 1);
}

Test(cmd, getex_past_time_deletes)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT("$1\r\nv\r\n", "GETEX", "k", "PXAT", "1");
    EXPECT(":0\r\n", "EXISTS", "k");
    cr_assert(last_record()->flags & STORE_FLAG_TOMBSTONE);
    EXPECT("$-1\r\n", "GETEX", "k", "PXAT", "1");
}

/* ---- DEL, UNLINK, EXISTS, TOUCH, MGET, MSET, MSETNX ---- */

Test(cmd, del_counts_live_keys)
{
    EXPECT("+OK\r\n", "MSET", "a", "1", "b", "2");
    size_t before = record_count;
    EXPECT(":1\r\n", "DEL", "a", "a");
    EXPECT(":1\r\n", "DEL", "b", "c", "b");
    EXPECT(":0\r\n", "DEL", "missing");
    cr_assert_eq(record_count, before + 2);
    EXPECT(":0\r\n", "EXISTS", "a", "b");

    EXPECT("+OK\r\n", "SET", "u", "1");
    EXPECT(":1\r\n", "UNLINK", "u", "u", "x");
    EXPECT("-ERR wrong number of arguments for 'del' command\r\n", "DEL");
}

Test(cmd, exists_and_touch)
{
    EXPECT("+OK\r\n", "SET", "a", "1");
    EXPECT(":3\r\n", "EXISTS", "a", "a", "b", "a");
    EXPECT(":0\r\n", "EXISTS", "b");
    EXPECT(":2\r\n", "TOUCH", "a", "a", "b");
    EXPECT("-ERR wrong number of arguments for 'touch' command\r\n", "TOUCH");
    cr_assert_eq(record_count, 1);
}

Test(cmd, mget)
{
    EXPECT("+OK\r\n", "SET", "a", "1");
    EXPECT("*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n1\r\n", "MGET", "a", "b", "a");
    EXPECT("*1\r\n$-1\r\n", "MGET", "missing");
}

Test(cmd, mset)
{
    EXPECT("+OK\r\n", "MSET", "a", "1", "b", "2", "a", "3");
    EXPECT("*2\r\n$1\r\n3\r\n$1\r\n2\r\n", "MGET", "a", "b");
    cr_assert_eq(record_count, 3);

    EXPECT("+OK\r\n", "SET", "t", "v", "EX", "100");
    EXPECT("+OK\r\n", "MSET", "t", "w");
    EXPECT(":-1\r\n", "TTL", "t");
}

Test(cmd, msetnx)
{
    EXPECT("+OK\r\n", "SET", "a", "1");
    EXPECT(":0\r\n", "MSETNX", "c", "3", "a", "9");
    EXPECT("$-1\r\n", "GET", "c");
    EXPECT("$1\r\n1\r\n", "GET", "a");
    cr_assert_eq(record_count, 1);

    EXPECT(":1\r\n", "MSETNX", "c", "3", "d", "4");
    EXPECT("*2\r\n$1\r\n3\r\n$1\r\n4\r\n", "MGET", "c", "d");
    EXPECT(":1\r\n", "MSETNX", "e", "1", "e", "2");
    EXPECT("$1\r\n2\r\n", "GET", "e");
}

/* ---- INCR family ---- */

Test(cmd, incr_decr)
{
    EXPECT(":1\r\n", "INCR", "n");
    EXPECT(":2\r\n", "INCR", "n");
    EXPECT(":1\r\n", "DECR", "n");
    EXPECT(":11\r\n", "INCRBY", "n", "10");
    EXPECT(":6\r\n", "DECRBY", "n", "5");
    EXPECT(":-4\r\n", "INCRBY", "n", "-10");
    EXPECT("$2\r\n-4\r\n", "GET", "n");
    EXPECT(":-1\r\n", "DECR", "new");
}

Test(cmd, incr_errors)
{
    EXPECT(ERR_NOT_INTEGER, "INCRBY", "n", "abc");
    EXPECT(ERR_NOT_INTEGER, "INCRBY", "n", "01");
    EXPECT(ERR_NOT_INTEGER, "INCRBY", "n", "-0");
    EXPECT("-ERR decrement would overflow\r\n", "DECRBY", "n",
           "-9223372036854775808");
    cr_assert_eq(record_count, 0);

    static const char *const bad_values[] = {
        "abc", " 1", "01", "+1", "-0", "1.0", "99999999999999999999", "",
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        EXPECT("+OK\r\n", "SET", "v", bad_values[i]);
        cr_assert_str_eq(RUN("INCR", "v"), ERR_NOT_INTEGER, "value '%s'",
                         bad_values[i]);
    }
    cr_assert_eq(record_count, sizeof bad_values / sizeof bad_values[0]);
}

Test(cmd, incr_overflow)
{
    EXPECT("+OK\r\n", "SET", "n", "9223372036854775807");
    EXPECT("-ERR increment or decrement would overflow\r\n", "INCR", "n");
    EXPECT("+OK\r\n", "SET", "n", "-9223372036854775808");
    EXPECT("-ERR increment or decrement would overflow\r\n", "DECR", "n");
    EXPECT("$20\r\n-9223372036854775808\r\n", "GET", "n");

    EXPECT("+OK\r\n", "SET", "n", "6");
    EXPECT(":-9223372036854775801\r\n", "DECRBY", "n", "9223372036854775807");
    EXPECT("-ERR increment or decrement would overflow\r\n", "DECRBY", "n",
           "9223372036854775807");
    EXPECT(":9223372036854775807\r\n", "DECRBY", "z", "-9223372036854775807");
    cr_assert_eq(record_count, 5);
}

Test(cmd, incr_keeps_ttl)
{
    EXPECT("+OK\r\n", "SETEX", "n", "100", "5");
    EXPECT(":6\r\n", "INCR", "n");
    EXPECT(":100\r\n", "TTL", "n");
}

/* ---- INCRBYFLOAT ---- */

Test(cmd, incrbyfloat_format)
{
    static const struct {
        const char *start, *increment, *reply;
    } cases[] = {
        {"10.5", "0.1", "$4\r\n10.6\r\n"},
        {"5.0e3", "2.0e2", "$4\r\n5200\r\n"},
        {"3", "-3", "$1\r\n0\r\n"},
        {"-0.0", "-0", "$1\r\n0\r\n"},
        {"0.1", "0.2", "$3\r\n0.3\r\n"},
        {"0", "1e20", "$21\r\n100000000000000000000\r\n"},
        {"0", "1.5e-10", "$13\r\n0.00000000015\r\n"},
        {"0", "1e-20", "$1\r\n0\r\n"},
        {"0", "3.0000000000000001", "$18\r\n3.0000000000000001\r\n"},
        {"0", "-1.5", "$4\r\n-1.5\r\n"},
        {"0", "0x10", "$2\r\n16\r\n"},
        {"0", "+5", "$1\r\n5\r\n"},
        {"0", ".5", "$3\r\n0.5\r\n"},
        {"0", "5.", "$1\r\n5\r\n"},
        {"0", "1e-4940", "$1\r\n0\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EXPECT("+OK\r\n", "SET", "f", cases[i].start);
        cr_assert_str_eq(RUN("INCRBYFLOAT", "f", cases[i].increment),
                         cases[i].reply, "%s + %s", cases[i].start,
                         cases[i].increment);
        /* The stored text is the reply's text. */
        cr_assert_str_eq(RUN("GET", "f"), cases[i].reply);
    }
}

Test(cmd, incrbyfloat_missing_key)
{
    EXPECT("$3\r\n1.5\r\n", "INCRBYFLOAT", "f", "1.5");
    EXPECT("$1\r\n3\r\n", "INCRBYFLOAT", "f", "1.5");
}

Test(cmd, incrbyfloat_errors)
{
    static const char *const bad[] = {
        "abc", "", " 1", "1 ", "nan", "1e5000", "1e-5000", "1e-4960", "1,5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_str_eq(RUN("INCRBYFLOAT", "f", bad[i]), ERR_NOT_FLOAT,
                         "increment '%s'", bad[i]);
    }

    const char *inf_error =
        "-ERR increment would produce NaN or Infinity\r\n";
    EXPECT(inf_error, "INCRBYFLOAT", "f", "inf");
    EXPECT(inf_error, "INCRBYFLOAT", "f", "-inf");
    EXPECT("+OK\r\n", "SET", "f", "1e4932");
    EXPECT(inf_error, "INCRBYFLOAT", "f", "1e4932");

    EXPECT("+OK\r\n", "SET", "g", " 1");
    EXPECT(ERR_NOT_FLOAT, "INCRBYFLOAT", "g", "1");
    EXPECT("+OK\r\n", "SET", "g", "");
    EXPECT(ERR_NOT_FLOAT, "INCRBYFLOAT", "g", "1");
    cr_assert_eq(record_count, 3);
}

/* Redis rejects float text of 5120 characters or more. */
Test(cmd, incrbyfloat_length_limit)
{
    char text[5121];
    memset(text, '0', sizeof text);

    text[5118] = '1';
    text[5119] = '\0';
    EXPECT("$1\r\n1\r\n", "INCRBYFLOAT", "f", text);

    text[5118] = '0';
    text[5119] = '1';
    text[5120] = '\0';
    EXPECT(ERR_NOT_FLOAT, "INCRBYFLOAT", "f", text);
}

Test(cmd, incrbyfloat_large_output)
{
    EXPECT("+OK\r\n", "SET", "f", "0");
    const char *r = RUN("INCRBYFLOAT", "f", "1e4932");
    cr_assert_eq(strncmp(r, "$4933\r\n1000000000000000000006", 29), 0);
    cr_assert_eq(strlen(r), 7 + 4933 + 2);
}

Test(cmd, incrbyfloat_keeps_ttl)
{
    EXPECT("+OK\r\n", "SETEX", "f", "100", "1");
    EXPECT("$1\r\n2\r\n", "INCRBYFLOAT", "f", "1");
    EXPECT(":100\r\n", "TTL", "f");
}

/* ---- APPEND, STRLEN, GETRANGE, SETRANGE ---- */

Test(cmd, append_and_strlen)
{
    EXPECT(":5\r\n", "APPEND", "k", "hello");
    EXPECT(":11\r\n", "APPEND", "k", " world");
    EXPECT("$11\r\nhello world\r\n", "GET", "k");
    EXPECT(":11\r\n", "STRLEN", "k");
    EXPECT(":0\r\n", "STRLEN", "missing");

    /* An empty suffix creates a missing key but rewrites nothing. */
    EXPECT(":0\r\n", "APPEND", "e", "");
    EXPECT(":1\r\n", "EXISTS", "e");
    size_t before = record_count;
    EXPECT(":11\r\n", "APPEND", "k", "");
    cr_assert_eq(record_count, before);
}

Test(cmd, append_keeps_ttl)
{
    EXPECT("+OK\r\n", "SETEX", "k", "100", "ab");
    EXPECT(":4\r\n", "APPEND", "k", "cd");
    EXPECT(":100\r\n", "TTL", "k");
}

Test(cmd, getrange_indexes)
{
    static const struct {
        const char *start, *end, *reply;
    } cases[] = {
        {"0", "4", "$5\r\nhello\r\n"},
        {"-5", "-1", "$5\r\nworld\r\n"},
        {"0", "-1", "$11\r\nhello world\r\n"},
        {"0", "100", "$11\r\nhello world\r\n"},
        {"5", "3", "$0\r\n\r\n"},
        {"-100", "-50", "$1\r\nh\r\n"},
        {"-50", "-100", "$0\r\n\r\n"},
        {"-100", "2", "$3\r\nhel\r\n"},
        {"100", "200", "$0\r\n\r\n"},
        {"-1", "-5", "$0\r\n\r\n"},
        {"3", "-100", "$0\r\n\r\n"},
        {"-5", "-100", "$0\r\n\r\n"},
        {"10", "10", "$1\r\nd\r\n"},
        {"11", "11", "$0\r\n\r\n"},
        {"0", "0", "$1\r\nh\r\n"},
        {"0", "9223372036854775807", "$11\r\nhello world\r\n"},
        {"-9223372036854775808", "-1", "$11\r\nhello world\r\n"},
    };
    EXPECT("+OK\r\n", "SET", "k", "hello world");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_str_eq(RUN("GETRANGE", "k", cases[i].start, cases[i].end),
                         cases[i].reply, "GETRANGE k %s %s", cases[i].start,
                         cases[i].end);
    }
}

Test(cmd, getrange_empty_and_errors)
{
    EXPECT("$0\r\n\r\n", "GETRANGE", "missing", "0", "-1");
    EXPECT("$0\r\n\r\n", "GETRANGE", "missing", "-1", "5");
    EXPECT("+OK\r\n", "SET", "e", "");
    EXPECT("$0\r\n\r\n", "GETRANGE", "e", "0", "-1");
    EXPECT("$0\r\n\r\n", "GETRANGE", "e", "-1", "0");
    EXPECT(ERR_NOT_INTEGER, "GETRANGE", "e", "a", "1");
    EXPECT(ERR_NOT_INTEGER, "GETRANGE", "e", "0", "b");
    EXPECT(ERR_NOT_INTEGER, "GETRANGE", "missing", "a", "b");
}

Test(cmd, setrange_overwrite_and_pad)
{
    EXPECT("+OK\r\n", "SET", "k", "hello world");
    EXPECT(":11\r\n", "SETRANGE", "k", "6", "WORLD");
    EXPECT("$11\r\nhello WORLD\r\n", "GET", "k");

    EXPECT(":21\r\n", "SETRANGE", "k", "20", "x");
    RUN("GET", "k");
    cr_assert_eq(out.len, 28);
    const char padded[] = "$21\r\nhello WORLD\0\0\0\0\0\0\0\0\0x\r\n";
    cr_assert_eq(memcmp(out.data, padded, 28), 0);

    EXPECT(":6\r\n", "SETRANGE", "new", "3", "abc");
    RUN("GET", "new");
    cr_assert_eq(out.len, 12);
    cr_assert_eq(memcmp(out.data, "$6\r\n\0\0\0abc\r\n", 12), 0);
}

Test(cmd, setrange_empty_value)
{
    EXPECT(":0\r\n", "SETRANGE", "missing", "0", "");
    EXPECT(":0\r\n", "SETRANGE", "missing", "5", "");
    EXPECT(":0\r\n", "SETRANGE", "missing", "536870912", "");
    EXPECT(":0\r\n", "EXISTS", "missing");
    cr_assert_eq(record_count, 0);

    EXPECT("+OK\r\n", "SET", "k", "abc");
    EXPECT(":3\r\n", "SETRANGE", "k", "1", "");
    EXPECT(":3\r\n", "SETRANGE", "k", "536870913", "");
    cr_assert_eq(record_count, 1);
}

Test(cmd, setrange_errors)
{
    EXPECT("-ERR offset is out of range\r\n", "SETRANGE", "k", "-1", "x");
    EXPECT(ERR_NOT_INTEGER, "SETRANGE", "k", "a", "x");
    EXPECT(ERR_TOO_BIG, "SETRANGE", "k", "536870912", "x");
    EXPECT(ERR_TOO_BIG, "SETRANGE", "k", "536870911", "xy");
    EXPECT(ERR_TOO_BIG, "SETRANGE", "k", "9223372036854775807", "x");
    EXPECT(":0\r\n", "EXISTS", "k");
    cr_assert_eq(record_count, 0);
}

/* Allocates about 1 GiB for a moment: the value is built once here and
 * copied once by the store. */
Test(cmd, setrange_max_length)
{
    EXPECT(":536870912\r\n", "SETRANGE", "k", "536870911", "x");
    EXPECT(":536870912\r\n", "STRLEN", "k");
    EXPECT("$1\r\nx\r\n", "GETRANGE", "k", "-1", "-1");
    RUN("GETRANGE", "k", "0", "1");
    cr_assert_eq(out.len, 8);
    cr_assert_eq(memcmp(out.data, "$2\r\n\0\0\r\n", 8), 0);
    EXPECT(ERR_TOO_BIG, "APPEND", "k", "y");
    EXPECT(ERR_TOO_BIG, "SETRANGE", "k", "536870911", "xy");
    cr_assert_eq(record_count, 1);
}

Test(cmd, setrange_keeps_ttl)
{
    EXPECT("+OK\r\n", "SETEX", "k", "100", "abc");
    EXPECT(":3\r\n", "SETRANGE", "k", "1", "Z");
    EXPECT(":100\r\n", "TTL", "k");
    EXPECT("$3\r\naZc\r\n", "GET", "k");
}

/* ---- EXPIRE family, PERSIST, TYPE ---- */

Test(cmd, expire_basic)
{
    EXPECT(":0\r\n", "EXPIRE", "missing", "10");
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT(":1\r\n", "EXPIRE", "k", "100");
    EXPECT(":100\r\n", "TTL", "k");
    EXPECT(":1\r\n", "PEXPIRE", "k", "1500");
    EXPECT(":1500\r\n", "PTTL", "k");
    EXPECT(":1\r\n", "EXPIREAT", "k", "1700000030");
    EXPECT(":30\r\n", "TTL", "k");
    EXPECT(":1\r\n", "PEXPIREAT", "k", "1700000000700");
    EXPECT(":700\r\n", "PTTL", "k");
    EXPECT("$1\r\nv\r\n", "GET", "k");
    EXPECT(":1\r\n", "PEXPIREAT", "k", "9223372036854775807");
    EXPECT(":1\r\n", "EXPIRE", "k", "9223372036854");
}

Test(cmd, expire_conditions)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT(":0\r\n", "EXPIRE", "k", "100", "XX");
    EXPECT(":0\r\n", "EXPIRE", "k", "100", "GT");
    EXPECT(":1\r\n", "EXPIRE", "k", "100", "NX");
    EXPECT(":0\r\n", "EXPIRE", "k", "200", "NX");
    EXPECT(":1\r\n", "EXPIRE", "k", "200", "XX");
    EXPECT(":200\r\n", "TTL", "k");
    EXPECT(":0\r\n", "EXPIRE", "k", "100", "GT");
    EXPECT(":0\r\n", "EXPIRE", "k", "200", "GT");
    EXPECT(":1\r\n", "EXPIRE", "k", "300", "gt");
    EXPECT(":0\r\n", "EXPIRE", "k", "400", "LT");
    EXPECT(":0\r\n", "EXPIRE", "k", "300", "LT");
    EXPECT(":1\r\n", "EXPIRE", "k", "100", "lt");
    EXPECT(":100\r\n", "TTL", "k");
    EXPECT(":0\r\n", "EXPIRE", "k", "10", "XX", "GT");
    EXPECT(":1\r\n", "EXPIRE", "k", "10", "XX", "LT");
    EXPECT(":1\r\n", "EXPIRE", "k", "20", "GT", "GT");

    /* A key without expiry counts as an infinite TTL for LT. */
    EXPECT(":1\r\n", "PERSIST", "k");
    EXPECT(":1\r\n", "EXPIRE", "k", "100", "LT");
    EXPECT(":100\r\n", "TTL", "k");
}

Test(cmd, expire_option_errors)
{
    EXPECT("-ERR Unsupported option bogus\r\n", "EXPIRE", "k", "10", "bogus");
    EXPECT("-ERR Unsupported option BoGuS\r\n", "EXPIRE", "k", "10", "BoGuS");
    EXPECT("-ERR Unsupported option bogus\r\n", "EXPIRE", "k", "abc",
           "bogus");
    EXPECT("-ERR Unsupported option bogus\r\n", "EXPIRE", "k", "10", "NX",
           "bogus");

    const char *nx_error = "-ERR NX and XX, GT or LT options at the same "
                           "time are not compatible\r\n";
    EXPECT(nx_error, "EXPIRE", "k", "10", "NX", "XX");
    EXPECT(nx_error, "EXPIRE", "k", "10", "NX", "GT");
    EXPECT(nx_error, "EXPIRE", "k", "abc", "NX", "XX");
    EXPECT(nx_error, "EXPIRE", "k", "10", "GT", "LT", "NX");
    EXPECT("-ERR GT and LT options at the same time are not compatible\r\n",
           "PEXPIRE", "k", "10", "GT", "LT");
    EXPECT(ERR_NOT_INTEGER, "EXPIRE", "k", "abc");
    EXPECT("-ERR wrong number of arguments for 'expire' command\r\n",
           "EXPIRE", "k");
}

Test(cmd, expire_overflow)
{
    static const struct {
        const char *command, *time, *reply;
    } cases[] = {
        {"EXPIRE", "9223372036854775807",
         "-ERR invalid expire time in 'expire' command\r\n"},
        {"EXPIRE", "9223372036854775",
         "-ERR invalid expire time in 'expire' command\r\n"},
        {"EXPIRE", "-9223372036854775808",
         "-ERR invalid expire time in 'expire' command\r\n"},
        {"PEXPIRE", "9223372036854775807",
         "-ERR invalid expire time in 'pexpire' command\r\n"},
        {"EXPIREAT", "9223372036854775807",
         "-ERR invalid expire time in 'expireat' command\r\n"},
        {"EXPIREAT", "-9223372036854775808",
         "-ERR invalid expire time in 'expireat' command\r\n"},
    };
    EXPECT("+OK\r\n", "SET", "k", "v");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_str_eq(RUN(cases[i].command, "k", cases[i].time),
                         cases[i].reply, "%s k %s", cases[i].command,
                         cases[i].time);
    }

    /* Checked before the key is looked up. */
    EXPECT("-ERR invalid expire time in 'expire' command\r\n", "EXPIRE",
           "missing", "9223372036854775807");
    EXPECT(":-1\r\n", "TTL", "k");
    cr_assert_eq(record_count, 1);
}

Test(cmd, expire_past_deletes)
{
    static const char *const commands[][2] = {
        {"EXPIRE", "0"},
        {"EXPIRE", "-5"},
        {"PEXPIRE", "-9223372036854775808"},
        {"EXPIREAT", "1"},
        {"PEXPIREAT", "-9223372036854775808"},
        {"PEXPIREAT", "1700000000000"},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        EXPECT("+OK\r\n", "SET", "k", "v");
        size_t before = record_count;
        cr_assert_str_eq(RUN(commands[i][0], "k", commands[i][1]), ":1\r\n",
                         "%s k %s", commands[i][0], commands[i][1]);
        EXPECT(":0\r\n", "EXISTS", "k");
        cr_assert_eq(record_count, before + 1);
        cr_assert(last_record()->flags & STORE_FLAG_TOMBSTONE);
    }

    EXPECT("+OK\r\n", "SET", "k", "v", "EX", "100");
    EXPECT(":1\r\n", "EXPIRE", "k", "-1", "LT");
    EXPECT(":0\r\n", "EXISTS", "k");
}

Test(cmd, persist)
{
    EXPECT(":0\r\n", "PERSIST", "missing");
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT(":0\r\n", "PERSIST", "k");
    cr_assert_eq(record_count, 1);
    EXPECT(":1\r\n", "EXPIRE", "k", "100");
    EXPECT(":1\r\n", "PERSIST", "k");
    EXPECT(":-1\r\n", "TTL", "k");
    EXPECT("$1\r\nv\r\n", "GET", "k");
    cr_assert_eq(record_count, 3);
    cr_assert_eq(last_record()->expire_ms, 0);
}

Test(cmd, type)
{
    EXPECT("+OK\r\n", "SET", "k", "v");
    EXPECT("+string\r\n", "TYPE", "k");
    EXPECT("+none\r\n", "TYPE", "missing");
}

/* ---- Replication and versions ---- */

Test(cmd, replicate_once_per_write)
{
    static const char *const writes[][6] = {
        {"SET", "a", "1"},
        {"SETNX", "b", "1"},
        {"SETEX", "a", "100", "2"},
        {"PSETEX", "a", "100000", "3"},
        {"GETSET", "a", "4"},
        {"INCR", "a"},
        {"DECRBY", "a", "2"},
        {"INCRBYFLOAT", "a", "0.5"},
        {"APPEND", "a", "0"},
        {"SETRANGE", "a", "0", "9"},
        {"EXPIRE", "a", "100"},
        {"PERSIST", "a"},
        {"GETEX", "a", "EX", "50"},
        {"GETDEL", "a"},
        {"DEL", "b"},
    };
    size_t count = sizeof writes / sizeof writes[0];
    for (size_t i = 0; i < count; i++) {
        int argc = 0;
        while (argc < 6 && writes[i][argc] != NULL)
            argc++;
        const char *words[7] = {0};
        memcpy(words, writes[i], (size_t)argc * sizeof words[0]);
        cr_assert_neq(run_words(words)[0], '-', "%s", writes[i][0]);
        cr_assert_eq(record_count, i + 1, "%s", writes[i][0]);
    }

    for (size_t i = 0; i < count; i++) {
        cr_assert_eq(records[i].version.origin, TEST_ORIGIN);
        if (i > 0)
            cr_assert_gt(version_cmp(records[i].version,
                                     records[i - 1].version), 0,
                         "record %zu", i);
    }
    cr_assert_str_eq(records[0].key, "a");
    cr_assert_str_eq(records[0].value, "1");
    cr_assert_str_eq(records[7].value, "3.5");
    cr_assert_str_eq(records[9].value, "9.50");
}

Test(cmd, replicate_never_for_reads)
{
    EXPECT("+OK\r\n", "SET", "a", "1");
    cr_assert_eq(record_count, 1);

    RUN("GET", "a");
    RUN("MGET", "a", "b");
    RUN("EXISTS", "a");
    RUN("TOUCH", "a");
    RUN("STRLEN", "a");
    RUN("GETRANGE", "a", "0", "-1");
    RUN("TTL", "a");
    RUN("PTTL", "a");
    RUN("TYPE", "a");
    RUN("GETEX", "a");
    cr_assert_eq(record_count, 1);
}

Test(cmd, replicate_never_for_noops)
{
    EXPECT("+OK\r\n", "SET", "a", "1");
    cr_assert_eq(record_count, 1);

    RUN("SET", "a", "2", "NX");
    RUN("SET", "b", "2", "XX");
    RUN("SETNX", "a", "2");
    RUN("MSETNX", "a", "2", "c", "3");
    RUN("DEL", "missing");
    RUN("GETDEL", "missing");
    RUN("PERSIST", "a");
    RUN("EXPIRE", "missing", "10");
    RUN("EXPIRE", "a", "10", "XX");
    RUN("GETEX", "a", "PERSIST");
    RUN("GETEX", "missing", "EX", "10");
    RUN("SETRANGE", "a", "0", "");
    RUN("APPEND", "a", "");
    RUN("INCRBY", "a", "9223372036854775807");
    RUN("INCRBYFLOAT", "a", "inf");
    cr_assert_eq(record_count, 1);
}

/* A write after an entry from a peer whose clock runs ahead must get a
 * newer version than that entry. */
Test(cmd, version_passes_stored_entry)
{
    pc_version_t ahead = {
        .hlc = hlc_make(pc_time_ms() + 3600 * 1000, 7),
        .origin = 99,
    };
    store_entry_t *entry;
    cr_assert_eq(store_entry_new(hash_bytes("k", 1), "k", 1, "old", 3, 0,
                                 ahead, 0, &entry),
                 PC_OK);
    cr_assert_eq(store_apply(store, entry), PC_OK);

    EXPECT("$3\r\nold\r\n", "GET", "k");
    EXPECT("+OK\r\n", "SET", "k", "new");
    cr_assert_gt(version_cmp(last_record()->version, ahead), 0);
}

Test(cmd, version_passes_tombstone)
{
    pc_version_t ahead = {
        .hlc = hlc_make(pc_time_ms() + 3600 * 1000, 0),
        .origin = 99,
    };
    store_entry_t *entry;
    cr_assert_eq(store_entry_new(hash_bytes("k", 1), "k", 1, NULL, 0, 0,
                                 ahead, STORE_FLAG_TOMBSTONE, &entry),
                 PC_OK);
    cr_assert_eq(store_apply(store, entry), PC_OK);

    EXPECT("$-1\r\n", "GET", "k");
    EXPECT(":1\r\n", "INCR", "k");
    cr_assert_gt(version_cmp(last_record()->version, ahead), 0);
}

Test(cmd, no_replicate_callback)
{
    ctx.replicate = NULL;
    EXPECT("+OK\r\n", "SET", "a", "1");
    EXPECT(":1\r\n", "DEL", "a");
    cr_assert_eq(record_count, 0);
}
