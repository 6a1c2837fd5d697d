/* cmd: command lookup, arity checks and helpers shared by the handlers. */
#include "cmd.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "resp.h"

#define CMD_NAME_MAX_BYTES 32
#define CMD_INDEX_SLOTS 512 /* power of two, well above the command count */

static const cmd_def_t *cmd_index[CMD_INDEX_SLOTS];
static pthread_once_t cmd_index_once = PTHREAD_ONCE_INIT;

/* FNV-1a over the lower-cased name. */
static uint32_t name_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static void index_table(const cmd_def_t *table)
{
    for (const cmd_def_t *def = table; def->name != NULL; def++) {
        uint32_t slot = name_hash(def->name, strlen(def->name)) & (CMD_INDEX_SLOTS - 1);
        while (cmd_index[slot] != NULL)
            slot = (slot + 1) & (CMD_INDEX_SLOTS - 1);
        cmd_index[slot] = def;
    }
}

static void build_index(void)
{
    index_table(cmd_keys_table);
    index_table(cmd_server_table);
}

const cmd_def_t *cmd_lookup(const char *name, size_t len)
{
    pthread_once(&cmd_index_once, build_index);
    if (len == 0 || len > CMD_NAME_MAX_BYTES)
        return NULL;

    uint32_t slot = name_hash(name, len) & (CMD_INDEX_SLOTS - 1);
    while (cmd_index[slot] != NULL) {
        const cmd_def_t *def = cmd_index[slot];
        if (strlen(def->name) == len && strncasecmp(def->name, name, len) == 0)
            return def;
        slot = (slot + 1) & (CMD_INDEX_SLOTS - 1);
    }
    return NULL;
}

int cmd_arity_ok(const cmd_def_t *def, int argc)
{
    if (def->arity >= 0)
        return argc == def->arity;
    return argc >= -def->arity;
}

void cmd_reply_arity_error(pc_buf_t *out, const char *name)
{
    resp_add_errorf(out, "ERR wrong number of arguments for '%s' command", name);
}

/* Appends at most max bytes of an argument, as Redis quotes them in the
 * unknown-command error: printable text only, truncated. */
static void append_quoted(pc_buf_t *out, const cmd_arg_t *arg, size_t max)
{
    size_t len = arg->len < max ? arg->len : max;
    buf_append(out, "'", 1);
    for (size_t i = 0; i < len; i++) {
        char c = arg->ptr[i];
        if (c == '\r' || c == '\n')
            c = ' ';
        buf_append(out, &c, 1);
    }
    buf_append(out, "'", 1);
}

void cmd_reply_unknown(pc_buf_t *out, int argc, const cmd_arg_t *argv)
{
    /* Redis 7 prints the name and the first arguments, each cut at 128
     * bytes, and the whole list at 128 bytes of arguments. */
    buf_append(out, "-ERR unknown command ", 21);
    append_quoted(out, &argv[0], 128);
    buf_append(out, ", with args beginning with: ", 28);

    size_t budget = 128;
    for (int i = 1; i < argc && budget > 0; i++) {
        size_t take = argv[i].len < budget ? argv[i].len : budget;
        append_quoted(out, &argv[i], take);
        buf_append(out, " ", 1);
        budget -= take;
    }
    buf_append(out, "\r\n", 2);
}

void cmd_execute(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc < 1) {
        resp_add_error(ctx->out, "ERR empty command");
        return;
    }

    const cmd_def_t *def = cmd_lookup(argv[0].ptr, argv[0].len);
    if (def == NULL) {
        cmd_reply_unknown(ctx->out, argc, argv);
        return;
    }
    if (!cmd_arity_ok(def, argc)) {
        cmd_reply_arity_error(ctx->out, def->name);
        return;
    }
    def->fn(ctx, argc, argv);
}

int cmd_parse_ll(const char *ptr, size_t len, long long *out)
{
    /* The rules of Redis's string2ll: at most 20 characters, an optional
     * leading '-', digits only, no leading zero except "0" itself. */
    if (len == 0 || len > 20)
        return -1;
    if (len == 1 && ptr[0] == '0') {
        *out = 0;
        return 0;
    }

    size_t i = 0;
    int negative = 0;
    if (ptr[0] == '-') {
        negative = 1;
        i = 1;
        if (len == 1)
            return -1;
    }
    if (ptr[i] < '1' || ptr[i] > '9')
        return -1;

    unsigned long long value = 0;
    for (; i < len; i++) {
        if (ptr[i] < '0' || ptr[i] > '9')
            return -1;
        unsigned long long digit = (unsigned long long)(ptr[i] - '0');
        if (value > (ULLONG_MAX - digit) / 10)
            return -1;
        value = value * 10 + digit;
    }

    if (negative) {
        if (value > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = value == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN
                                                          : -(long long)value;
    } else {
        if (value > LLONG_MAX)
            return -1;
        *out = (long long)value;
    }
    return 0;
}

int cmd_arg_is(const cmd_arg_t *arg, const char *word)
{
    size_t len = strlen(word);
    return arg->len == len && strncasecmp(arg->ptr, word, len) == 0;
}
