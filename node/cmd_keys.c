/* cmd_keys: the string and key-space commands (GET, SET, INCR, EXPIRE,
 * ...) and their command table, with the replies and error texts of
 * Redis 7.0.
 *
 * Handlers run on client I/O threads and on the cluster actor thread, both
 * registered with the store. Values are strings only, so Redis's WRONGTYPE
 * error never applies. Every expiry decision uses ctx->now_ms, the time
 * the command started, and never reads the clock again, so one command
 * sees one time and tests can move it.
 *
 * Every write takes the same path (key_write_begin, key_write_put or
 * key_write_delete, key_write_end): the key's lock, a read-side section,
 * one lookup, the decision, then a new entry whose version follows the
 * stored one, published with store_put and passed to ctx->replicate, all
 * before the section and the lock end. Entries read in that section stay
 * valid until key_write_end, so a handler may reply an old value after
 * replacing it. A handler holds at most one key lock at a time, because a
 * thread's key locks may not nest.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "hash.h"
#include "log.h"
#include "resp.h"

#define ERR_SYNTAX "ERR syntax error"
#define ERR_NOT_INTEGER "ERR value is not an integer or out of range"
#define ERR_NOT_FLOAT "ERR value is not a valid float"
#define ERR_OVERFLOW "ERR increment or decrement would overflow"
#define ERR_TOO_BIG \
    "ERR string exceeds maximum allowed size (proto-max-bulk-len)"

/* Size of INCRBYFLOAT's text buffers, Redis's MAX_LONG_DOUBLE_CHARS: a
 * number text of this length or longer is rejected. "%.17Lf" of the
 * largest finite x86-64 long double takes 4951 characters, so every
 * result fits. */
#define LONG_DOUBLE_MAX_CHARS (5 * 1024)

/* Decimal digits of a long long, its sign and a NUL. */
#define LL_TEXT_BYTES 24

/* ---- Write path ---- */

/* One key being written, from key_write_begin to key_write_end. */
typedef struct key_write {
    cmd_ctx_t *ctx;
    const cmd_arg_t *key;
    uint64_t hash;
    const store_entry_t *any;  /* stored entry, tombstone or expired too */
    const store_entry_t *live; /* any when live at ctx->now_ms, or NULL */
} key_write_t;

/* The store's lookup rule (store.h): tombstones and entries whose expiry
 * is at or before now are missing. */
static const store_entry_t *live_entry(const store_entry_t *entry,
                                       int64_t now_ms)
{
    if (entry == NULL || (entry->flags & STORE_FLAG_TOMBSTONE))
        return NULL;
    if (entry->expire_ms != 0 && entry->expire_ms <= now_ms)
        return NULL;
    return entry;
}

/* Locks the key, enters a read-side section and looks the key up once, so
 * that the live entry and the one whose version the write must pass are
 * the same read. */
static void key_write_begin(key_write_t *w, cmd_ctx_t *ctx,
                            const cmd_arg_t *key)
{
    w->ctx = ctx;
    w->key = key;
    w->hash = hash_bytes(key->ptr, key->len);
    store_key_lock(ctx->store, w->hash);
    store_read_lock();
    w->any = store_lookup_any(ctx->store, w->hash, key->ptr, key->len);
    w->live = live_entry(w->any, ctx->now_ms);
}

static void key_write_end(key_write_t *w)
{
    store_read_unlock();
    store_key_unlock(w->ctx->store, w->hash);
}

/* Returns a version newer than the stored entry's, even when that entry
 * came from a peer whose clock runs ahead of ours. */
static pc_version_t key_write_version(key_write_t *w)
{
    if (w->any != NULL)
        hlc_observe(w->ctx->clock, w->any->version.hlc);
    return (pc_version_t){
        .hlc = hlc_now(w->ctx->clock),
        .origin = w->ctx->origin,
    };
}

/* Publishes part1 followed by part2 as the key's value and hands the entry
 * to ctx->replicate. Returns PC_OK, PC_ERR_TOO_BIG past the value cap or
 * PC_ERR_NOMEM; nothing is published on error. */
static pc_err_t key_write_put2(key_write_t *w, const void *part1,
                               size_t len1, const void *part2, size_t len2,
                               int64_t expire_ms, uint32_t flags)
{
    store_entry_t *entry;
    pc_err_t err = store_entry_new2(w->hash, w->key->ptr, w->key->len, part1,
                                    len1, part2, len2, expire_ms,
                                    key_write_version(w), flags, &entry);
    if (err != PC_OK)
        return err;

    store_put(w->ctx->store, entry);
    if (w->ctx->replicate != NULL)
        w->ctx->replicate(w->ctx->replicate_arg, entry);
    return PC_OK;
}

static pc_err_t key_write_put(key_write_t *w, const void *value, size_t len,
                              int64_t expire_ms)
{
    return key_write_put2(w, value, len, NULL, 0, expire_ms, 0);
}

/* Replaces the key with a tombstone, so that an older write arriving from
 * a peer later cannot bring the key back. */
static pc_err_t key_write_delete(key_write_t *w)
{
    return key_write_put2(w, NULL, 0, NULL, 0, 0, STORE_FLAG_TOMBSTONE);
}

/* Replies a failed store_entry_new. Too big is the client's doing; any
 * other failure (out of memory) is logged, at powers of two of its count
 * so that a node out of memory does not flood the log. */
static void reply_store_error(pc_buf_t *out, pc_err_t err)
{
    static _Atomic uint64_t failures;

    if (err == PC_ERR_TOO_BIG) {
        resp_add_error(out, ERR_TOO_BIG);
        return;
    }

    uint64_t count = atomic_fetch_add(&failures, 1) + 1;
    if ((count & (count - 1)) == 0)
        LOG_WARNING("cmd", "store write failed: %s failures=%" PRIu64,
                    pc_err_message(err), count);
    resp_add_errorf(out, "ERR %s", pc_err_message(err));
}

static void reply_entry(pc_buf_t *out, const store_entry_t *entry)
{
    if (entry == NULL)
        resp_add_null(out);
    else
        resp_add_bulk(out, entry->value, entry->value_len);
}

/* ---- Argument parsing ---- */

static int parse_ll_or_reply(cmd_ctx_t *ctx, const cmd_arg_t *arg,
                             long long *out)
{
    if (cmd_parse_ll(arg->ptr, arg->len, out) == 0)
        return 0;
    resp_add_error(ctx->out, ERR_NOT_INTEGER);
    return -1;
}

/* Options of SET and GETEX. An option that conflicts with one before it
 * is a syntax error. Repeating an option is allowed, and the last expiry
 * given wins. */
enum {
    OPT_NX = 1u << 0,
    OPT_XX = 1u << 1,
    OPT_GET = 1u << 2,
    OPT_KEEPTTL = 1u << 3,
    OPT_PERSIST = 1u << 4,
    OPT_EX = 1u << 5,
    OPT_PX = 1u << 6,
    OPT_EXAT = 1u << 7,
    OPT_PXAT = 1u << 8,
};

#define OPT_EXPIRE (OPT_EX | OPT_PX | OPT_EXAT | OPT_PXAT)
#define OPT_SET_ALLOWED (OPT_NX | OPT_XX | OPT_GET | OPT_KEEPTTL | OPT_EXPIRE)
#define OPT_GETEX_ALLOWED (OPT_PERSIST | OPT_EXPIRE)

typedef struct string_option {
    const char *word;
    unsigned flag;
    unsigned conflicts;
} string_option_t;

static const string_option_t string_options[] = {
    {"nx", OPT_NX, OPT_XX},
    {"xx", OPT_XX, OPT_NX},
    {"get", OPT_GET, 0},
    {"keepttl", OPT_KEEPTTL, OPT_EXPIRE | OPT_PERSIST},
    {"persist", OPT_PERSIST, OPT_EXPIRE | OPT_KEEPTTL},
    {"ex", OPT_EX, (OPT_EXPIRE & ~OPT_EX) | OPT_KEEPTTL | OPT_PERSIST},
    {"px", OPT_PX, (OPT_EXPIRE & ~OPT_PX) | OPT_KEEPTTL | OPT_PERSIST},
    {"exat", OPT_EXAT, (OPT_EXPIRE & ~OPT_EXAT) | OPT_KEEPTTL | OPT_PERSIST},
    {"pxat", OPT_PXAT, (OPT_EXPIRE & ~OPT_PXAT) | OPT_KEEPTTL | OPT_PERSIST},
};

typedef struct string_opts {
    unsigned flags;                /* OPT_* */
    const cmd_arg_t *expire_arg;   /* the number after EX, PX, EXAT, PXAT */
} string_opts_t;

static const string_option_t *find_string_option(const cmd_arg_t *arg,
                                                 unsigned allowed)
{
    size_t count = sizeof string_options / sizeof string_options[0];
    for (size_t i = 0; i < count; i++) {
        if ((string_options[i].flag & allowed) &&
            cmd_arg_is(arg, string_options[i].word))
            return &string_options[i];
    }
    return NULL;
}

/* Parses argv[first..argc) as options from allowed. Replies the syntax
 * error and returns -1 on an unknown or conflicting option, or an expiry
 * option without its number. The number itself is checked later, as Redis
 * does, so a syntax error anywhere wins over a bad number. */
static int parse_string_opts(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv,
                             int first, unsigned allowed, string_opts_t *opts)
{
    opts->flags = 0;
    opts->expire_arg = NULL;

    for (int i = first; i < argc; i++) {
        const string_option_t *opt = find_string_option(&argv[i], allowed);
        if (opt == NULL || (opts->flags & opt->conflicts))
            goto syntax;
        if (opt->flag & OPT_EXPIRE) {
            if (i + 1 >= argc)
                goto syntax;
            opts->expire_arg = &argv[++i];
        }
        opts->flags |= opt->flag;
    }
    return 0;

syntax:
    resp_add_error(ctx->out, ERR_SYNTAX);
    return -1;
}

/* Converts the expiry number of SET, SETEX, PSETEX or GETEX to an
 * absolute time in milliseconds. Replies the error and returns -1 when it
 * is not an integer, is not positive, or the time overflows. */
static int parse_expire_time(cmd_ctx_t *ctx, const cmd_arg_t *arg,
                             bool seconds, bool relative, const char *name,
                             int64_t *out)
{
    long long when;
    if (parse_ll_or_reply(ctx, arg, &when) != 0)
        return -1;

    if (when <= 0 || (seconds && __builtin_mul_overflow(when, 1000, &when)) ||
        (relative && __builtin_add_overflow(when, ctx->now_ms, &when))) {
        resp_add_errorf(ctx->out, "ERR invalid expire time in '%s' command",
                        name);
        return -1;
    }
    *out = when;
    return 0;
}

/* As parse_expire_time, for the expiry option in opts. */
static int parse_opts_expire(cmd_ctx_t *ctx, const string_opts_t *opts,
                             const char *name, int64_t *out)
{
    bool seconds = opts->flags & (OPT_EX | OPT_EXAT);
    bool relative = opts->flags & (OPT_EX | OPT_PX);
    return parse_expire_time(ctx, opts->expire_arg, seconds, relative, name,
                             out);
}

/* ---- GET, MGET, STRLEN, GETRANGE, EXISTS, TOUCH, TTL, PTTL, TYPE ---- */

/* Looks a key up for a read. The caller must be inside a read-side
 * section. */
static const store_entry_t *read_key(cmd_ctx_t *ctx, const cmd_arg_t *key)
{
    return store_lookup(ctx->store, hash_bytes(key->ptr, key->len), key->ptr,
                        key->len, ctx->now_ms);
}

static void cmd_get(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    store_read_lock();
    reply_entry(ctx->out, read_key(ctx, &argv[1]));
    store_read_unlock();
}

static void cmd_mget(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    resp_add_array(ctx->out, (size_t)(argc - 1));
    store_read_lock();
    for (int i = 1; i < argc; i++)
        reply_entry(ctx->out, read_key(ctx, &argv[i]));
    store_read_unlock();
}

static void cmd_strlen(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    store_read_lock();
    const store_entry_t *entry = read_key(ctx, &argv[1]);
    resp_add_int(ctx->out, entry ? (long long)entry->value_len : 0);
    store_read_unlock();
}

/* Applies Redis 7.0's GETRANGE rules to a value of len bytes: negative
 * indexes count from the end and are then clamped to 0, and end is
 * clamped to the last byte. Returns false when the range is empty. Note
 * that two negative indexes before the start both become 0, so
 * "GETRANGE k -100 -50" returns the first byte, as Redis 7.0 does. */
static bool clamp_range(long long start, long long end, size_t len,
                        size_t *from, size_t *count)
{
    if (len == 0 || (start < 0 && end < 0 && start > end))
        return false;

    long long slen = (long long)len;
    if (start < 0)
        start = slen + start;
    if (end < 0)
        end = slen + end;
    if (start < 0)
        start = 0;
    if (end < 0)
        end = 0;
    if (end >= slen)
        end = slen - 1;
    if (start > end)
        return false;

    *from = (size_t)start;
    *count = (size_t)(end - start + 1);
    return true;
}

static void cmd_getrange(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long start, end;
    if (parse_ll_or_reply(ctx, &argv[2], &start) != 0 ||
        parse_ll_or_reply(ctx, &argv[3], &end) != 0)
        return;

    store_read_lock();
    const store_entry_t *entry = read_key(ctx, &argv[1]);
    size_t from, count;
    if (entry != NULL &&
        clamp_range(start, end, entry->value_len, &from, &count))
        resp_add_bulk(ctx->out, entry->value + from, count);
    else
        resp_add_bulk(ctx->out, "", 0);
    store_read_unlock();
}

/* EXISTS and TOUCH: replies how many arguments name a live key, so a
 * repeated key counts each time. TOUCH has nothing more to do because no
 * access times are kept. */
static void cmd_exists(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long count = 0;

    store_read_lock();
    for (int i = 1; i < argc; i++) {
        if (read_key(ctx, &argv[i]) != NULL)
            count++;
    }
    store_read_unlock();
    resp_add_int(ctx->out, count);
}

/* TTL and PTTL: -2 for a missing key, -1 for no expiry. */
static void reply_ttl(cmd_ctx_t *ctx, const cmd_arg_t *key, bool in_ms)
{
    store_read_lock();
    const store_entry_t *entry = read_key(ctx, key);
    long long ttl_ms = -1;
    if (entry == NULL)
        ttl_ms = -2;
    else if (entry->expire_ms != 0)
        ttl_ms = entry->expire_ms - ctx->now_ms;
    store_read_unlock();

    /* Rounded to the nearest second, as Redis does. */
    if (ttl_ms >= 0 && !in_ms)
        ttl_ms = (ttl_ms + 500) / 1000;
    resp_add_int(ctx->out, ttl_ms);
}

static void cmd_ttl(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    reply_ttl(ctx, &argv[1], false);
}

static void cmd_pttl(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    reply_ttl(ctx, &argv[1], true);
}

static void cmd_type(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    store_read_lock();
    bool found = read_key(ctx, &argv[1]) != NULL;
    store_read_unlock();
    resp_add_simple(ctx->out, found ? "string" : "none");
}

/* ---- SET and its variants ---- */

typedef struct set_request {
    unsigned flags;    /* OPT_NX, OPT_XX, OPT_GET, OPT_KEEPTTL */
    bool has_expire;
    int64_t expire_ms; /* absolute, when has_expire */
} set_request_t;

typedef enum {
    SET_DONE,    /* written, or deleted because the expiry has passed */
    SET_SKIPPED, /* NX or XX did not hold */
    SET_FAILED,  /* the store failed, and the error is replied */
} set_outcome_t;

static int64_t set_expire_ms(const set_request_t *req,
                             const store_entry_t *live)
{
    if (req->flags & OPT_KEEPTTL)
        return live ? live->expire_ms : 0;
    return req->has_expire ? req->expire_ms : 0;
}

/* Sets key to value under req's conditions. On SET_FAILED it has replied
 * the store's error. Otherwise it replies the old value (or null) when
 * req has OPT_GET, and leaves the reply to the caller when not. */
static set_outcome_t set_key(cmd_ctx_t *ctx, const cmd_arg_t *key,
                             const cmd_arg_t *value,
                             const set_request_t *req)
{
    key_write_t w;
    key_write_begin(&w, ctx, key);

    set_outcome_t outcome = SET_DONE;
    pc_err_t err = PC_OK;
    if (((req->flags & OPT_NX) && w.live) ||
        ((req->flags & OPT_XX) && !w.live)) {
        outcome = SET_SKIPPED;
    } else if (req->has_expire && req->expire_ms <= ctx->now_ms) {
        /* Redis accepts a time in the past and the key is gone at once. */
        if (w.live)
            err = key_write_delete(&w);
    } else {
        err = key_write_put(&w, value->ptr, value->len,
                            set_expire_ms(req, w.live));
    }

    if (err != PC_OK) {
        reply_store_error(ctx->out, err);
        outcome = SET_FAILED;
    } else if (req->flags & OPT_GET) {
        reply_entry(ctx->out, w.live);
    }
    key_write_end(&w);
    return outcome;
}

static void cmd_set(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    string_opts_t opts;
    if (parse_string_opts(ctx, argc, argv, 3, OPT_SET_ALLOWED, &opts) != 0)
        return;

    set_request_t req = {.flags = opts.flags};
    if (opts.expire_arg != NULL) {
        if (parse_opts_expire(ctx, &opts, "set", &req.expire_ms) != 0)
            return;
        req.has_expire = true;
    }

    set_outcome_t outcome = set_key(ctx, &argv[1], &argv[2], &req);
    if (outcome == SET_FAILED || (req.flags & OPT_GET))
        return;
    if (outcome == SET_DONE)
        resp_add_simple(ctx->out, "OK");
    else
        resp_add_null(ctx->out);
}

static void cmd_setnx(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    set_request_t req = {.flags = OPT_NX};
    set_outcome_t outcome = set_key(ctx, &argv[1], &argv[2], &req);
    if (outcome != SET_FAILED)
        resp_add_int(ctx->out, outcome == SET_DONE ? 1 : 0);
}

/* SETEX and PSETEX: argv is key, time, value. */
static void set_with_expire(cmd_ctx_t *ctx, const cmd_arg_t *argv,
                            bool seconds, const char *name)
{
    set_request_t req = {.has_expire = true};
    if (parse_expire_time(ctx, &argv[2], seconds, true, name,
                          &req.expire_ms) != 0)
        return;
    if (set_key(ctx, &argv[1], &argv[3], &req) != SET_FAILED)
        resp_add_simple(ctx->out, "OK");
}

static void cmd_setex(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    set_with_expire(ctx, argv, true, "setex");
}

static void cmd_psetex(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    set_with_expire(ctx, argv, false, "psetex");
}

static void cmd_getset(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    set_request_t req = {.flags = OPT_GET};
    set_key(ctx, &argv[1], &argv[2], &req);
}

static void cmd_mset(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc % 2 == 0) {
        cmd_reply_arity_error(ctx->out, "mset");
        return;
    }

    /* One key at a time, because key locks may not nest. Other clients
     * can see some pairs set before the rest, unlike in Redis. */
    set_request_t req = {0};
    for (int i = 1; i < argc; i += 2) {
        if (set_key(ctx, &argv[i], &argv[i + 1], &req) == SET_FAILED)
            return;
    }
    resp_add_simple(ctx->out, "OK");
}

static void cmd_msetnx(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc % 2 == 0) {
        cmd_reply_arity_error(ctx->out, "msetnx");
        return;
    }

    bool any_exists = false;
    store_read_lock();
    for (int i = 1; i < argc && !any_exists; i += 2)
        any_exists = read_key(ctx, &argv[i]) != NULL;
    store_read_unlock();
    if (any_exists) {
        resp_add_int(ctx->out, 0);
        return;
    }

    /* NOTE: not atomic. The keys are checked above and then set one at a
     * time, because a thread's key locks may not nest, so a key that
     * another client creates between the check and the set is
     * overwritten. Making this atomic needs a store call that takes the
     * locks of several keys in a fixed order. */
    set_request_t req = {0};
    for (int i = 1; i < argc; i += 2) {
        if (set_key(ctx, &argv[i], &argv[i + 1], &req) == SET_FAILED)
            return;
    }
    resp_add_int(ctx->out, 1);
}

/* ---- GETDEL, GETEX, DEL, PERSIST ---- */

static void cmd_getdel(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);

    pc_err_t err = w.live ? key_write_delete(&w) : PC_OK;
    if (err != PC_OK)
        reply_store_error(ctx->out, err);
    else
        reply_entry(ctx->out, w.live);
    key_write_end(&w);
}

/* Applies GETEX's options to the live entry in w. Returns 0, or -1 after
 * replying an error. */
static int getex_apply(key_write_t *w, const string_opts_t *opts)
{
    cmd_ctx_t *ctx = w->ctx;
    const store_entry_t *live = w->live;
    pc_err_t err;

    if (opts->flags & OPT_PERSIST) {
        if (live->expire_ms == 0)
            return 0;
        err = key_write_put(w, live->value, live->value_len, 0);
    } else {
        int64_t expire_ms;
        if (parse_opts_expire(ctx, opts, "getex", &expire_ms) != 0)
            return -1;
        err = expire_ms <= ctx->now_ms
                  ? key_write_delete(w)
                  : key_write_put(w, live->value, live->value_len, expire_ms);
    }

    if (err != PC_OK) {
        reply_store_error(ctx->out, err);
        return -1;
    }
    return 0;
}

static void cmd_getex(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    string_opts_t opts;
    if (parse_string_opts(ctx, argc, argv, 2, OPT_GETEX_ALLOWED, &opts) != 0)
        return;
    if (opts.flags == 0) {
        cmd_get(ctx, argc, argv);
        return;
    }

    /* The key is looked up before the expiry number is checked, so a
     * missing key replies null even when the number is invalid, as in
     * Redis. */
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);
    if (w.live == NULL)
        resp_add_null(ctx->out);
    else if (getex_apply(&w, &opts) == 0)
        reply_entry(ctx->out, w.live);
    key_write_end(&w);
}

/* DEL and UNLINK: tombstones only for keys that are live, so deleting a
 * missing key publishes nothing. */
static void cmd_del(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long deleted = 0;

    for (int i = 1; i < argc; i++) {
        key_write_t w;
        key_write_begin(&w, ctx, &argv[i]);
        pc_err_t err = w.live ? key_write_delete(&w) : PC_OK;
        if (err == PC_OK && w.live)
            deleted++;
        key_write_end(&w);

        if (err != PC_OK) {
            reply_store_error(ctx->out, err);
            return;
        }
    }
    resp_add_int(ctx->out, deleted);
}

static void cmd_persist(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);

    if (w.live == NULL || w.live->expire_ms == 0) {
        resp_add_int(ctx->out, 0);
    } else {
        pc_err_t err = key_write_put(&w, w.live->value, w.live->value_len, 0);
        if (err != PC_OK)
            reply_store_error(ctx->out, err);
        else
            resp_add_int(ctx->out, 1);
    }
    key_write_end(&w);
}

/* ---- INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT ---- */

static void incr_by(cmd_ctx_t *ctx, const cmd_arg_t *key, long long delta)
{
    key_write_t w;
    key_write_begin(&w, ctx, key);

    long long value = 0;
    if (w.live != NULL &&
        cmd_parse_ll(w.live->value, w.live->value_len, &value) != 0) {
        resp_add_error(ctx->out, ERR_NOT_INTEGER);
    } else if (__builtin_add_overflow(value, delta, &value)) {
        resp_add_error(ctx->out, ERR_OVERFLOW);
    } else {
        char text[LL_TEXT_BYTES];
        int len = snprintf(text, sizeof text, "%lld", value);
        int64_t expire_ms = w.live ? w.live->expire_ms : 0;
        pc_err_t err = key_write_put(&w, text, (size_t)len, expire_ms);
        if (err != PC_OK)
            reply_store_error(ctx->out, err);
        else
            resp_add_int(ctx->out, value);
    }
    key_write_end(&w);
}

static void cmd_incr(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    incr_by(ctx, &argv[1], 1);
}

static void cmd_decr(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    incr_by(ctx, &argv[1], -1);
}

static void cmd_incrby(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long delta;
    if (parse_ll_or_reply(ctx, &argv[2], &delta) == 0)
        incr_by(ctx, &argv[1], delta);
}

static void cmd_decrby(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long delta;
    if (parse_ll_or_reply(ctx, &argv[2], &delta) != 0)
        return;
    if (delta == LLONG_MIN) {
        resp_add_error(ctx->out, "ERR decrement would overflow");
        return;
    }
    incr_by(ctx, &argv[1], -delta);
}

/* Parses a number as Redis's string2ld does: the whole text through
 * strtold, no leading space, no NaN, and no overflow or underflow to
 * zero (a subnormal result is accepted). Returns 0 or -1. */
static int parse_long_double(const char *ptr, size_t len, long double *out)
{
    char text[LONG_DOUBLE_MAX_CHARS];
    if (len == 0 || len >= sizeof text || isspace((unsigned char)ptr[0]))
        return -1;
    memcpy(text, ptr, len);
    text[len] = '\0';

    char *end;
    errno = 0;
    long double value = strtold(text, &end);
    if (end != text + len || isnan(value))
        return -1;
    if (errno == ERANGE &&
        (value == HUGE_VALL || value == -HUGE_VALL || value == 0))
        return -1;
    *out = value;
    return 0;
}

/* Formats value as INCRBYFLOAT stores it: "%.17Lf" without trailing
 * zeros or a trailing point, and "-0" as "0". Returns the length, or -1
 * when the text does not fit. */
static int format_long_double(long double value, char *text, size_t size)
{
    int len = snprintf(text, size, "%.17Lf", value);
    if (len < 0 || (size_t)len >= size)
        return -1;

    if (strchr(text, '.') != NULL) {
        while (text[len - 1] == '0')
            len--;
        if (text[len - 1] == '.')
            len--;
    }
    if (len == 2 && text[0] == '-' && text[1] == '0') {
        text[0] = '0';
        len = 1;
    }
    text[len] = '\0';
    return len;
}

/* Computes the new INCRBYFLOAT value of the live entry (or of 0) into
 * text. Replies the error and returns -1 on failure. */
static int incrbyfloat_value(cmd_ctx_t *ctx, const store_entry_t *live,
                             long double increment, char *text, size_t size)
{
    long double value = 0;
    if (live != NULL &&
        parse_long_double(live->value, live->value_len, &value) != 0) {
        resp_add_error(ctx->out, ERR_NOT_FLOAT);
        return -1;
    }

    value += increment;
    int len = isnan(value) || isinf(value)
                  ? -1
                  : format_long_double(value, text, size);
    if (len < 0)
        resp_add_error(ctx->out, "ERR increment would produce NaN or Infinity");
    return len;
}

static void cmd_incrbyfloat(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long double increment;
    if (parse_long_double(argv[2].ptr, argv[2].len, &increment) != 0) {
        resp_add_error(ctx->out, ERR_NOT_FLOAT);
        return;
    }

    char text[LONG_DOUBLE_MAX_CHARS];
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);
    int len = incrbyfloat_value(ctx, w.live, increment, text, sizeof text);
    if (len >= 0) {
        int64_t expire_ms = w.live ? w.live->expire_ms : 0;
        pc_err_t err = key_write_put(&w, text, (size_t)len, expire_ms);
        if (err != PC_OK)
            reply_store_error(ctx->out, err);
        else
            resp_add_bulk(ctx->out, text, (size_t)len);
    }
    key_write_end(&w);
}

/* ---- APPEND, SETRANGE ---- */

static void cmd_append(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    const cmd_arg_t *suffix = &argv[2];
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);

    pc_err_t err = PC_OK;
    size_t len = suffix->len;
    if (w.live == NULL) {
        /* Creates the key even when the suffix is empty, as Redis does. */
        err = key_write_put(&w, suffix->ptr, suffix->len, 0);
    } else if (suffix->len > 0) {
        len += w.live->value_len;
        err = key_write_put2(&w, w.live->value, w.live->value_len,
                             suffix->ptr, suffix->len, w.live->expire_ms, 0);
    } else {
        len = w.live->value_len;
    }

    if (err != PC_OK)
        reply_store_error(ctx->out, err);
    else
        resp_add_int(ctx->out, (long long)len);
    key_write_end(&w);
}

/* Writes the SETRANGE result: the old value with patch at offset, padded
 * with zero bytes when offset lies past its end. The caller has checked
 * that offset + patch length is within the value cap. */
static pc_err_t setrange_put(key_write_t *w, size_t offset,
                             const cmd_arg_t *patch, size_t *new_len)
{
    const store_entry_t *live = w->live;
    size_t old_len = live ? live->value_len : 0;
    size_t end = offset + patch->len;
    size_t len = end > old_len ? end : old_len;

    /* The store copies the value, so build it here first. */
    char *value = calloc(len, 1);
    if (value == NULL)
        return PC_ERR_NOMEM;
    if (old_len > 0)
        memcpy(value, live->value, old_len);
    memcpy(value + offset, patch->ptr, patch->len);

    pc_err_t err = key_write_put(w, value, len, live ? live->expire_ms : 0);
    free(value);
    *new_len = len;
    return err;
}

static void cmd_setrange(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long offset;
    if (parse_ll_or_reply(ctx, &argv[2], &offset) != 0)
        return;
    if (offset < 0) {
        resp_add_error(ctx->out, "ERR offset is out of range");
        return;
    }

    const cmd_arg_t *patch = &argv[3];
    key_write_t w;
    key_write_begin(&w, ctx, &argv[1]);

    size_t len = w.live ? w.live->value_len : 0;
    if (patch->len == 0) {
        /* Nothing to write, and a missing key stays missing. */
        resp_add_int(ctx->out, (long long)len);
    } else if ((unsigned long long)offset >
               STORE_MAX_VALUE_BYTES - patch->len) {
        resp_add_error(ctx->out, ERR_TOO_BIG);
    } else {
        pc_err_t err = setrange_put(&w, (size_t)offset, patch, &len);
        if (err != PC_OK)
            reply_store_error(ctx->out, err);
        else
            resp_add_int(ctx->out, (long long)len);
    }
    key_write_end(&w);
}

/* ---- EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT ---- */

enum {
    EXPIRE_NX = 1u << 0,
    EXPIRE_XX = 1u << 1,
    EXPIRE_GT = 1u << 2,
    EXPIRE_LT = 1u << 3,
};

/* Parses the NX, XX, GT and LT options. Replies the error and returns -1
 * on an unknown option or a forbidden combination. */
static int parse_expire_opts(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv,
                             unsigned *flags)
{
    *flags = 0;
    for (int i = 3; i < argc; i++) {
        if (cmd_arg_is(&argv[i], "nx")) {
            *flags |= EXPIRE_NX;
        } else if (cmd_arg_is(&argv[i], "xx")) {
            *flags |= EXPIRE_XX;
        } else if (cmd_arg_is(&argv[i], "gt")) {
            *flags |= EXPIRE_GT;
        } else if (cmd_arg_is(&argv[i], "lt")) {
            *flags |= EXPIRE_LT;
        } else {
            resp_add_errorf(ctx->out, "ERR Unsupported option %.*s",
                            (int)argv[i].len, argv[i].ptr);
            return -1;
        }
    }

    unsigned not_with_nx = EXPIRE_XX | EXPIRE_GT | EXPIRE_LT;
    if ((*flags & EXPIRE_NX) && (*flags & not_with_nx)) {
        resp_add_error(ctx->out, "ERR NX and XX, GT or LT options at the "
                                 "same time are not compatible");
        return -1;
    }
    if ((*flags & EXPIRE_GT) && (*flags & EXPIRE_LT)) {
        resp_add_error(ctx->out, "ERR GT and LT options at the same time "
                                 "are not compatible");
        return -1;
    }
    return 0;
}

/* Returns whether the options allow replacing the expiry current_ms (0 for
 * none) by when_ms. A key without expiry counts as an infinite one for GT
 * and LT. */
static bool expire_allowed(unsigned flags, int64_t current_ms, int64_t when_ms)
{
    if ((flags & EXPIRE_NX) && current_ms != 0)
        return false;
    if ((flags & EXPIRE_XX) && current_ms == 0)
        return false;
    if ((flags & EXPIRE_GT) && (current_ms == 0 || when_ms <= current_ms))
        return false;
    if ((flags & EXPIRE_LT) && current_ms != 0 && when_ms >= current_ms)
        return false;
    return true;
}

/* Sets the key's expiry to when_ms, or deletes the key when that time has
 * passed, and replies 1. Replies 0 when the key is missing or the options
 * forbid the change. */
static void expire_key(cmd_ctx_t *ctx, const cmd_arg_t *key, unsigned flags,
                       int64_t when_ms)
{
    key_write_t w;
    key_write_begin(&w, ctx, key);

    if (w.live == NULL || !expire_allowed(flags, w.live->expire_ms, when_ms)) {
        resp_add_int(ctx->out, 0);
    } else {
        pc_err_t err = when_ms <= ctx->now_ms
                           ? key_write_delete(&w)
                           : key_write_put(&w, w.live->value,
                                           w.live->value_len, when_ms);
        if (err != PC_OK)
            reply_store_error(ctx->out, err);
        else
            resp_add_int(ctx->out, 1);
    }
    key_write_end(&w);
}

/* The four EXPIRE commands. Unlike SET's, their time may be zero or
 * negative, which deletes the key, so only an overflow is invalid. */
static void expire_generic(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv,
                           bool seconds, bool relative, const char *name)
{
    unsigned flags;
    long long when;
    if (parse_expire_opts(ctx, argc, argv, &flags) != 0 ||
        parse_ll_or_reply(ctx, &argv[2], &when) != 0)
        return;

    if ((seconds && __builtin_mul_overflow(when, 1000, &when)) ||
        (relative && __builtin_add_overflow(when, ctx->now_ms, &when))) {
        resp_add_errorf(ctx->out, "ERR invalid expire time in '%s' command",
                        name);
        return;
    }
    expire_key(ctx, &argv[1], flags, when);
}

static void cmd_expire(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    expire_generic(ctx, argc, argv, true, true, "expire");
}

static void cmd_pexpire(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    expire_generic(ctx, argc, argv, false, true, "pexpire");
}

static void cmd_expireat(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    expire_generic(ctx, argc, argv, true, false, "expireat");
}

static void cmd_pexpireat(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    expire_generic(ctx, argc, argv, false, false, "pexpireat");
}

/* ---- Table ---- */

/* Arity and key positions as Redis 7.0's COMMAND reports them. */
const cmd_def_t cmd_keys_table[] = {
    {"get", 2, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_get},
    {"set", -3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_set},
    {"setnx", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_setnx},
    {"setex", 4, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_setex},
    {"psetex", 4, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_psetex},
    {"getset", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_getset},
    {"getdel", 2, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_getdel},
    {"getex", -2, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_getex},
    {"del", -2, CMD_WRITE, 1, -1, 1, CMD_MERGE_SUM, cmd_del},
    {"unlink", -2, CMD_WRITE, 1, -1, 1, CMD_MERGE_SUM, cmd_del},
    {"exists", -2, CMD_READ, 1, -1, 1, CMD_MERGE_SUM, cmd_exists},
    {"touch", -2, CMD_READ, 1, -1, 1, CMD_MERGE_SUM, cmd_exists},
    {"mget", -2, CMD_READ, 1, -1, 1, CMD_MERGE_ARRAY, cmd_mget},
    {"mset", -3, CMD_WRITE, 1, -1, 2, CMD_MERGE_OK, cmd_mset},
    {"msetnx", -3, CMD_WRITE, 1, -1, 2, CMD_MERGE_NONE, cmd_msetnx},
    {"incr", 2, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_incr},
    {"decr", 2, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_decr},
    {"incrby", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_incrby},
    {"decrby", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_decrby},
    {"incrbyfloat", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_incrbyfloat},
    {"append", 3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_append},
    {"strlen", 2, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_strlen},
    {"getrange", 4, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_getrange},
    {"setrange", 4, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_setrange},
    {"expire", -3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_expire},
    {"pexpire", -3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_pexpire},
    {"expireat", -3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_expireat},
    {"pexpireat", -3, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_pexpireat},
    {"ttl", 2, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_ttl},
    {"pttl", 2, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_pttl},
    {"persist", 2, CMD_WRITE, 1, 1, 1, CMD_MERGE_NONE, cmd_persist},
    {"type", 2, CMD_READ, 1, 1, 1, CMD_MERGE_NONE, cmd_type},
    {NULL, 0, 0, 0, 0, 0, CMD_MERGE_NONE, NULL},
};
