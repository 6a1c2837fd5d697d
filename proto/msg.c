/* msg: encoding, structural walk, decoding and validation of peer messages.
 *
 * Encoding packs a msg_t with msgpack-c's packer straight into the caller's
 * pc_buf_t. Decoding runs in three steps. First walk_frame() reads the raw
 * bytes and checks that they form exactly one well-formed msgpack value,
 * nested at most MSG_MAX_DEPTH deep, whose declared lengths and counts all
 * fit in the bytes that remain. Then msgpack-c unpacks the frame into a zone
 * that lives only during the call. Last the parse_* functions copy the
 * fields into the msg_t with type and range checks. check_msg() applies the
 * value rules in both directions, so msg_encode rejects what msg_decode
 * would reject.
 *
 * msgpack-c's unpacker makes str and bin objects point into its input
 * instead of copying them (template_callback_str and template_callback_bin
 * in msgpack-c's src/unpack.c, and the test decoded_bytes_point_into_frame
 * checks the installed version). So every msg_bytes_t of a decoded message
 * points into the caller's data. The only allocation that outlives
 * msg_decode is the one array of members, args or entries, owned by
 * msg->storage.
 *
 * No state is shared between calls; any thread may call these functions.
 */
#include "msg.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

/* Maximum number of values one frame may declare, counting each array
 * element once and each map pair twice. msgpack-c allocates one
 * msgpack_object per counted value (24 bytes on x86-64 with msgpack-c 4.0),
 * so without this cap a 1 GiB frame of one-byte integers would make it
 * allocate about 24 GiB.
 * The largest valid messages are a REQUEST with MSG_MAX_ARGS args (one
 * value each) and a HANDOFF with MSG_MAX_ENTRIES entries (13 values each,
 * 851,968 in all). Twice MSG_MAX_ARGS leaves room for keys that later
 * versions add, and bounds the zone at about 50 MB. */
#define WALK_MAX_VALUES (2 * (uint64_t)MSG_MAX_ARGS)

#define MSG_PORT_MAX 65535

static const char *const type_names[MSG__TYPE_COUNT] = {
    [MSG_JOIN] = "JOIN",       [MSG_WELCOME] = "WELCOME",
    [MSG_MEMBERS] = "MEMBERS", [MSG_REQUEST] = "REQUEST",
    [MSG_REPLY] = "REPLY",     [MSG_REPL] = "REPL",
    [MSG_ACK] = "ACK",         [MSG_SYNC] = "SYNC",
    [MSG_HANDOFF] = "HANDOFF", [MSG_BEAT] = "BEAT",
};

const char *msg_type_name(msg_type_t type)
{
    if ((unsigned)type >= MSG__TYPE_COUNT || type_names[type] == NULL)
        return "UNKNOWN";
    return type_names[type];
}

static bool type_is_known(uint64_t type)
{
    return type >= MSG_JOIN && type < MSG__TYPE_COUNT;
}

/* ---- error reasons ---- */

/* Destination of the one-line reason of a failure. */
typedef struct report {
    const char *type_name; /* prefix of every reason, NULL until "type" */
    char *why;             /* may be NULL */
    size_t why_len;
} report_t;

static pc_err_t vfail(report_t *rep, pc_err_t err, const char *fmt,
                      va_list args)
{
    if (rep->why == NULL || rep->why_len == 0)
        return err;

    int n = 0;
    if (rep->type_name != NULL)
        n = snprintf(rep->why, rep->why_len, "%s: ", rep->type_name);
    if (n >= 0 && (size_t)n < rep->why_len)
        vsnprintf(rep->why + n, rep->why_len - (size_t)n, fmt, args);
    return err;
}

/* Writes the reason and returns err. */
static pc_err_t fail(report_t *rep, pc_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static pc_err_t fail(report_t *rep, pc_err_t err, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vfail(rep, err, fmt, args);
    va_end(args);
    return err;
}

/* Writes the reason and returns PC_ERR_PROTOCOL. */
static pc_err_t reject(report_t *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static pc_err_t reject(report_t *rep, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vfail(rep, PC_ERR_PROTOCOL, fmt, args);
    va_end(args);
    return PC_ERR_PROTOCOL;
}

/* ---- value rules, shared by encode and decode ---- */

/* Node ids and hosts appear in logs and INFO output, so they are limited to
 * printable ASCII without spaces. */
static pc_err_t check_word(report_t *rep, const char *path, const char *key,
                           msg_bytes_t word, size_t max_len)
{
    if (word.ptr == NULL || word.len == 0 || word.len > max_len)
        return reject(rep, "%s%s: length %zu out of range 1..%zu", path, key,
                      word.len, max_len);

    for (size_t i = 0; i < word.len; i++) {
        unsigned char c = (unsigned char)word.ptr[i];
        if (c <= ' ' || c >= 0x7f)
            return reject(rep,
                          "%s%s: byte 0x%02x at offset %zu is not printable "
                          "ASCII other than space",
                          path, key, c, i);
    }
    return PC_OK;
}

/* Rejects what msgpack cannot carry. Decoded bytes always pass, so only
 * encoding can fail here. */
static pc_err_t check_bytes(report_t *rep, const char *path, const char *key,
                            msg_bytes_t bytes)
{
    if (bytes.ptr == NULL && bytes.len > 0)
        return reject(rep, "%s%s: NULL pointer with length %zu", path, key,
                      bytes.len);
    if (bytes.len > UINT32_MAX)
        return reject(rep, "%s%s: length %zu exceeds the msgpack maximum",
                      path, key, bytes.len);
    return PC_OK;
}

static pc_err_t check_member(report_t *rep, const msg_member_t *member,
                             size_t index)
{
    char path[48];
    snprintf(path, sizeof path, "members[%zu].", index);

    pc_err_t err = check_word(rep, path, "id", member->id, MSG_MAX_ID_BYTES);
    if (err == PC_OK)
        err = check_word(rep, path, "host", member->host, MSG_MAX_HOST_BYTES);
    if (err != PC_OK)
        return err;

    const struct {
        const char *key;
        uint16_t port;
    } ports[] = {
        {"port", member->port},
        {"peer_port", member->peer_port},
        {"pub_port", member->pub_port},
    };
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        if (ports[i].port == 0)
            return reject(rep, "%s%s: 0 out of range 1..%d", path,
                          ports[i].key, MSG_PORT_MAX);
    }

    if (member->state != MSG_STATE_JOINING && member->state != MSG_STATE_UP)
        return reject(rep, "%sstate: %u out of range 1..2", path,
                      (unsigned)member->state);
    return PC_OK;
}

static pc_err_t check_entry(report_t *rep, const msg_entry_t *entry,
                            size_t index)
{
    char path[48];
    snprintf(path, sizeof path, "entries[%zu].", index);

    pc_err_t err = check_bytes(rep, path, "key", entry->key);
    if (err == PC_OK)
        err = check_bytes(rep, path, "value", entry->value);
    if (err != PC_OK)
        return err;

    if (entry->value.ptr == NULL && !entry->tombstone)
        return reject(rep, "%svalue: nil is only allowed for a tombstone",
                      path);
    if (entry->expire_ms < 0)
        return reject(rep, "%sexp: %" PRId64 " is negative", path,
                      entry->expire_ms);
    return PC_OK;
}

static pc_err_t check_count(report_t *rep, const char *key, size_t count,
                            const void *items, size_t min, size_t max)
{
    if (count < min || count > max)
        return reject(rep, "%s: %zu elements, expected %zu..%zu", key, count,
                      min, max);
    if (count > 0 && items == NULL)
        return reject(rep, "%s: NULL array with %zu elements", key, count);
    return PC_OK;
}

static pc_err_t check_members(report_t *rep, const msg_t *msg, size_t min,
                              size_t max)
{
    pc_err_t err = check_count(rep, "members", msg->member_count,
                               msg->members, min, max);
    for (size_t i = 0; err == PC_OK && i < msg->member_count; i++)
        err = check_member(rep, &msg->members[i], i);
    return err;
}

static pc_err_t check_entries(report_t *rep, const msg_t *msg, size_t min,
                              size_t max)
{
    pc_err_t err = check_count(rep, "entries", msg->entry_count,
                               msg->entries, min, max);
    for (size_t i = 0; err == PC_OK && i < msg->entry_count; i++)
        err = check_entry(rep, &msg->entries[i], i);
    return err;
}

static pc_err_t check_args(report_t *rep, const msg_t *msg)
{
    pc_err_t err = check_count(rep, "args", msg->arg_count, msg->args, 1,
                               MSG_MAX_ARGS);
    for (size_t i = 0; err == PC_OK && i < msg->arg_count; i++) {
        char key[32];
        snprintf(key, sizeof key, "args[%zu]", i);
        err = check_bytes(rep, "", key, msg->args[i]);
    }
    return err;
}

/* Checks the value rules of a message whose fields have the right types. */
static pc_err_t check_msg(report_t *rep, const msg_t *msg)
{
    if (!type_is_known(msg->type))
        return reject(rep, "unknown message type %d", (int)msg->type);
    rep->type_name = msg_type_name(msg->type);

    pc_err_t err = check_word(rep, "", "from", msg->from, MSG_MAX_ID_BYTES);
    if (err != PC_OK)
        return err;

    switch (msg->type) {
    case MSG_JOIN:
        return check_members(rep, msg, 1, 1);
    case MSG_WELCOME:
    case MSG_MEMBERS:
    case MSG_SYNC:
        return check_members(rep, msg, 0, MSG_MAX_MEMBERS);
    case MSG_REQUEST:
        return check_args(rep, msg);
    case MSG_REPLY:
        return check_bytes(rep, "", "resp", msg->resp);
    case MSG_REPL:
        return check_entries(rep, msg, 1, 1);
    case MSG_HANDOFF:
        return check_entries(rep, msg, 0, MSG_MAX_ENTRIES);
    default:
        return PC_OK;
    }
}

/* ---- encoding ---- */

static int write_to_buf(void *data, const char *bytes, size_t len)
{
    return buf_append(data, bytes, len) == PC_OK ? 0 : -1;
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
}

static void pack_uint_field(msgpack_packer *pk, const char *key,
                            uint64_t value)
{
    pack_key(pk, key);
    msgpack_pack_uint64(pk, value);
}

static void pack_str_field(msgpack_packer *pk, const char *key,
                           msg_bytes_t str)
{
    pack_key(pk, key);
    msgpack_pack_str_with_body(pk, str.ptr, str.len);
}

/* Packs a bin, or nil for a NULL pointer. check_msg lets NULL through
 * only where nil is valid. */
static void pack_bin(msgpack_packer *pk, msg_bytes_t bin)
{
    if (bin.ptr == NULL)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_bin_with_body(pk, bin.ptr, bin.len);
}

static void pack_bool_field(msgpack_packer *pk, const char *key, bool value)
{
    pack_key(pk, key);
    if (value)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void pack_members(msgpack_packer *pk, const msg_t *msg)
{
    pack_key(pk, "members");
    msgpack_pack_array(pk, msg->member_count);

    for (size_t i = 0; i < msg->member_count; i++) {
        const msg_member_t *member = &msg->members[i];
        msgpack_pack_map(pk, 7);
        pack_str_field(pk, "id", member->id);
        pack_str_field(pk, "host", member->host);
        pack_uint_field(pk, "port", member->port);
        pack_uint_field(pk, "peer_port", member->peer_port);
        pack_uint_field(pk, "pub_port", member->pub_port);
        pack_uint_field(pk, "state", member->state);
        pack_uint_field(pk, "inc", member->incarnation);
    }
}

static void pack_entries(msgpack_packer *pk, const msg_t *msg)
{
    pack_key(pk, "entries");
    msgpack_pack_array(pk, msg->entry_count);

    for (size_t i = 0; i < msg->entry_count; i++) {
        const msg_entry_t *entry = &msg->entries[i];
        msgpack_pack_map(pk, 6);
        pack_key(pk, "key");
        msgpack_pack_bin_with_body(pk, entry->key.ptr ? entry->key.ptr : "",
                                   entry->key.len);
        pack_key(pk, "value");
        pack_bin(pk, entry->value);
        pack_uint_field(pk, "hlc", entry->hlc);
        pack_uint_field(pk, "origin", entry->origin);
        pack_uint_field(pk, "exp", (uint64_t)entry->expire_ms);
        pack_bool_field(pk, "tomb", entry->tombstone);
    }
}

static void pack_args(msgpack_packer *pk, const msg_t *msg)
{
    pack_key(pk, "args");
    msgpack_pack_array(pk, msg->arg_count);

    for (size_t i = 0; i < msg->arg_count; i++) {
        const msg_bytes_t *arg = &msg->args[i];
        msgpack_pack_bin_with_body(pk, arg->ptr ? arg->ptr : "", arg->len);
    }
}

/* Returns the number of type-specific keys that pack_body writes. */
static size_t body_field_count(const msg_t *msg)
{
    switch (msg->type) {
    case MSG_REQUEST:
    case MSG_REPLY:
    case MSG_BEAT:
        return 2;
    case MSG_REPL:
        return 3;
    case MSG_HANDOFF:
        return msg->last ? 4 : 3;
    default:
        return 1;
    }
}

static void pack_body(msgpack_packer *pk, const msg_t *msg)
{
    switch (msg->type) {
    case MSG_JOIN:
    case MSG_WELCOME:
    case MSG_MEMBERS:
    case MSG_SYNC:
        pack_members(pk, msg);
        break;
    case MSG_REQUEST:
        pack_uint_field(pk, "id", msg->id);
        pack_args(pk, msg);
        break;
    case MSG_REPLY:
        pack_uint_field(pk, "id", msg->id);
        pack_key(pk, "resp");
        msgpack_pack_bin_with_body(pk, msg->resp.ptr ? msg->resp.ptr : "",
                                   msg->resp.len);
        break;
    case MSG_REPL:
        pack_uint_field(pk, "epoch", msg->epoch);
        pack_uint_field(pk, "seq", msg->seq);
        pack_entries(pk, msg);
        break;
    case MSG_ACK:
        pack_uint_field(pk, "id", msg->id);
        break;
    case MSG_HANDOFF:
        pack_uint_field(pk, "id", msg->id);
        pack_entries(pk, msg);
        pack_bool_field(pk, "last", msg->last);
        if (msg->last)
            pack_uint_field(pk, "total", msg->total);
        break;
    case MSG_BEAT:
        pack_uint_field(pk, "epoch", msg->epoch);
        pack_uint_field(pk, "seq", msg->seq);
        break;
    default:
        assert(!"check_msg lets only known types through");
    }
}

pc_err_t msg_encode(const msg_t *msg, pc_buf_t *out)
{
    assert(msg != NULL);
    assert(out != NULL);

    report_t rep = {NULL, NULL, 0};
    if (check_msg(&rep, msg) != PC_OK)
        return PC_ERR_INVALID;

    msgpack_packer pk;
    msgpack_packer_init(&pk, out, write_to_buf);

    msgpack_pack_map(&pk, 3 + body_field_count(msg));
    pack_uint_field(&pk, "v", MSG_PROTOCOL_VERSION);
    pack_uint_field(&pk, "type", (uint64_t)msg->type);
    pack_str_field(&pk, "from", msg->from);
    pack_body(&pk, msg);

    /* Every append after a failed one is a no-op, so checking once is
     * enough. */
    return buf_error(out);
}

/* ---- structural walk of the raw bytes ---- */

typedef struct walk {
    const unsigned char *start;
    const unsigned char *pos;
    const unsigned char *end;
    uint64_t values; /* values declared so far, against WALK_MAX_VALUES */
    report_t *rep;
} walk_t;

static size_t walk_left(const walk_t *walk)
{
    return (size_t)(walk->end - walk->pos);
}

static size_t walk_offset(const walk_t *walk)
{
    return (size_t)(walk->pos - walk->start);
}

static pc_err_t walk_truncated(walk_t *walk)
{
    return reject(walk->rep, "truncated msgpack at offset %zu",
                  walk_offset(walk));
}

/* Reads the size_bytes-byte big-endian length or count after a format
 * byte. */
static pc_err_t walk_read_size(walk_t *walk, size_t size_bytes,
                               uint64_t *size)
{
    if (walk_left(walk) < size_bytes)
        return walk_truncated(walk);

    *size = 0;
    for (size_t i = 0; i < size_bytes; i++)
        *size = (*size << 8) | walk->pos[i];
    walk->pos += size_bytes;
    return PC_OK;
}

static pc_err_t walk_skip(walk_t *walk, uint64_t len, const char *what)
{
    if (len > walk_left(walk))
        return reject(walk->rep,
                      "msgpack %s of %" PRIu64 " bytes at offset %zu "
                      "overruns the %zu bytes left",
                      what, len, walk_offset(walk), walk_left(walk));
    walk->pos += len;
    return PC_OK;
}

/* Skips a str, bin or ext: a length field, extra header bytes (the ext
 * type), then the payload. */
static pc_err_t walk_sized(walk_t *walk, size_t size_bytes, size_t extra,
                           const char *what)
{
    uint64_t len;
    pc_err_t err = walk_read_size(walk, size_bytes, &len);
    if (err != PC_OK)
        return err;
    return walk_skip(walk, len + extra, what);
}

static pc_err_t walk_value(walk_t *walk, unsigned depth);

/* Walks the count elements of an array (width 1) or count pairs of a map
 * (width 2) found at nesting depth. */
static pc_err_t walk_items(walk_t *walk, uint64_t count, unsigned width,
                           unsigned depth)
{
    if (depth > MSG_MAX_DEPTH)
        return reject(walk->rep,
                      "msgpack nesting deeper than %d levels at offset %zu",
                      MSG_MAX_DEPTH, walk_offset(walk));

    /* Each value takes at least one byte, so a count larger than the
     * remaining bytes cannot be true, whatever follows. */
    if (count > walk_left(walk) / width)
        return reject(walk->rep,
                      "msgpack %s of %" PRIu64 " %s at offset %zu overruns "
                      "the %zu bytes left",
                      width == 1 ? "array" : "map", count,
                      width == 1 ? "elements" : "pairs", walk_offset(walk),
                      walk_left(walk));

    walk->values += count * width;
    if (walk->values > WALK_MAX_VALUES)
        return reject(walk->rep, "frame declares more than %" PRIu64
                      " msgpack values", WALK_MAX_VALUES);

    for (uint64_t i = 0; i < count * width; i++) {
        pc_err_t err = walk_value(walk, depth);
        if (err != PC_OK)
            return err;
    }
    return PC_OK;
}

static pc_err_t walk_counted(walk_t *walk, size_t size_bytes, unsigned width,
                             unsigned depth)
{
    uint64_t count;
    pc_err_t err = walk_read_size(walk, size_bytes, &count);
    if (err != PC_OK)
        return err;
    return walk_items(walk, count, width, depth);
}

/* Returns the payload size of a format byte in 0xc0..0xdf whose size is
 * fixed by the byte itself: nil, bool, float, int, uint and fixext (type
 * byte included). */
static size_t fixed_payload_bytes(unsigned char format)
{
    if (format >= 0xca && format <= 0xcb)
        return format == 0xca ? 4 : 8;
    if (format >= 0xcc && format <= 0xcf)
        return (size_t)1 << (format - 0xcc);
    if (format >= 0xd0 && format <= 0xd3)
        return (size_t)1 << (format - 0xd0);
    if (format >= 0xd4 && format <= 0xd8)
        return 1 + ((size_t)1 << (format - 0xd4));
    return 0;
}

/* Walks one value whose enclosing containers number depth. */
static pc_err_t walk_value(walk_t *walk, unsigned depth)
{
    if (walk_left(walk) == 0)
        return walk_truncated(walk);
    unsigned char format = *walk->pos++;

    if (format <= 0x7f || format >= 0xe0)
        return PC_OK; /* positive or negative fixint */
    if (format <= 0x8f)
        return walk_items(walk, format & 0x0f, 2, depth + 1);
    if (format <= 0x9f)
        return walk_items(walk, format & 0x0f, 1, depth + 1);
    if (format <= 0xbf)
        return walk_skip(walk, format & 0x1f, "str");

    switch (format) {
    case 0xc1:
        return reject(walk->rep, "msgpack format byte 0xc1 at offset %zu is "
                      "never used", walk_offset(walk) - 1);
    case 0xc4: case 0xc5: case 0xc6:
        return walk_sized(walk, (size_t)1 << (format - 0xc4), 0, "bin");
    case 0xc7: case 0xc8: case 0xc9:
        return walk_sized(walk, (size_t)1 << (format - 0xc7), 1, "ext");
    case 0xd9: case 0xda: case 0xdb:
        return walk_sized(walk, (size_t)1 << (format - 0xd9), 0, "str");
    case 0xdc: case 0xdd:
        return walk_counted(walk, format == 0xdc ? 2 : 4, 1, depth + 1);
    case 0xde: case 0xdf:
        return walk_counted(walk, format == 0xde ? 2 : 4, 2, depth + 1);
    default:
        return walk_skip(walk, fixed_payload_bytes(format), "number");
    }
}

/* Checks that data[0..len) is exactly one well-formed msgpack value within
 * the depth and value caps. Recursion is bounded by MSG_MAX_DEPTH. */
static pc_err_t walk_frame(report_t *rep, const void *data, size_t len)
{
    walk_t walk = {
        .start = data,
        .pos = data,
        .end = (const unsigned char *)data + len,
        .values = 1,
        .rep = rep,
    };

    pc_err_t err = walk_value(&walk, 0);
    if (err != PC_OK)
        return err;
    if (walk_left(&walk) > 0)
        return reject(rep, "%zu trailing bytes after the msgpack value",
                      walk_left(&walk));
    return PC_OK;
}

/* ---- map fields ---- */

#define FIELDS_MAX 16

/* The values of one map's known keys. */
typedef struct fields {
    const char *path;            /* "" at the top level, or "entries[3]." */
    const char *const *keys;     /* known keys, indexed like value[] */
    const msgpack_object *value[FIELDS_MAX]; /* NULL when the key is absent */
    int duplicate;               /* index of a repeated key, or -1 */
} fields_t;

static bool str_equals(const msgpack_object *obj, const char *text)
{
    size_t len = strlen(text);
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == len &&
           memcmp(obj->via.str.ptr, text, len) == 0;
}

/* Fills fields from map. Keys outside keys[] are ignored, whatever their
 * type, so later versions can add fields. */
static void collect_fields(const msgpack_object_map *map,
                           const char *const *keys, size_t key_count,
                           const char *path, fields_t *fields)
{
    assert(key_count <= FIELDS_MAX);
    memset(fields, 0, sizeof *fields);
    fields->path = path;
    fields->keys = keys;
    fields->duplicate = -1;

    for (uint32_t i = 0; i < map->size; i++) {
        for (size_t k = 0; k < key_count; k++) {
            if (!str_equals(&map->ptr[i].key, keys[k]))
                continue;
            if (fields->value[k] != NULL && fields->duplicate < 0)
                fields->duplicate = (int)k;
            fields->value[k] = &map->ptr[i].val;
            break;
        }
    }
}

static pc_err_t check_duplicates(report_t *rep, const fields_t *fields)
{
    if (fields->duplicate < 0)
        return PC_OK;
    return reject(rep, "%s%s: duplicate key", fields->path,
                  fields->keys[fields->duplicate]);
}

/* Returns the field's value after checking that it is present and of the
 * expected type, or NULL after writing the reason. */
static const msgpack_object *field_of_type(report_t *rep,
                                           const fields_t *fields, int key,
                                           msgpack_object_type type,
                                           const char *type_text)
{
    const msgpack_object *value = fields->value[key];
    if (value == NULL) {
        reject(rep, "%s%s: missing required key", fields->path,
               fields->keys[key]);
        return NULL;
    }
    if (value->type != type) {
        reject(rep, "%s%s: expected %s", fields->path, fields->keys[key],
               type_text);
        return NULL;
    }
    return value;
}

static pc_err_t read_uint(report_t *rep, const fields_t *fields, int key,
                          uint64_t min, uint64_t max, uint64_t *out)
{
    const msgpack_object *value = field_of_type(
        rep, fields, key, MSGPACK_OBJECT_POSITIVE_INTEGER, "unsigned integer");
    if (value == NULL)
        return PC_ERR_PROTOCOL;
    if (value->via.u64 < min || value->via.u64 > max)
        return reject(rep, "%s%s: %" PRIu64 " out of range %" PRIu64
                      "..%" PRIu64, fields->path, fields->keys[key],
                      value->via.u64, min, max);
    *out = value->via.u64;
    return PC_OK;
}

static pc_err_t read_port(report_t *rep, const fields_t *fields, int key,
                          uint16_t *out)
{
    uint64_t port;
    pc_err_t err = read_uint(rep, fields, key, 1, MSG_PORT_MAX, &port);
    if (err == PC_OK)
        *out = (uint16_t)port;
    return err;
}

static pc_err_t read_bool(report_t *rep, const fields_t *fields, int key,
                          bool *out)
{
    const msgpack_object *value =
        field_of_type(rep, fields, key, MSGPACK_OBJECT_BOOLEAN, "boolean");
    if (value == NULL)
        return PC_ERR_PROTOCOL;
    *out = value->via.boolean;
    return PC_OK;
}

static pc_err_t read_str(report_t *rep, const fields_t *fields, int key,
                         msg_bytes_t *out)
{
    const msgpack_object *value =
        field_of_type(rep, fields, key, MSGPACK_OBJECT_STR, "str");
    if (value == NULL)
        return PC_ERR_PROTOCOL;
    out->ptr = value->via.str.ptr;
    out->len = value->via.str.size;
    return PC_OK;
}

static void bytes_of_bin(const msgpack_object *bin, msg_bytes_t *out)
{
    /* msgpack-c gives an empty bin a pointer into the frame, never NULL,
     * which keeps it apart from nil. */
    out->ptr = bin->via.bin.ptr;
    out->len = bin->via.bin.size;
}

static pc_err_t read_bin(report_t *rep, const fields_t *fields, int key,
                         msg_bytes_t *out)
{
    const msgpack_object *value =
        field_of_type(rep, fields, key, MSGPACK_OBJECT_BIN, "bin");
    if (value == NULL)
        return PC_ERR_PROTOCOL;
    bytes_of_bin(value, out);
    return PC_OK;
}

/* Reads a bin that may also be nil, which gives a NULL pointer. */
static pc_err_t read_bin_or_nil(report_t *rep, const fields_t *fields,
                                int key, msg_bytes_t *out)
{
    const msgpack_object *value = fields->value[key];
    if (value != NULL && value->type == MSGPACK_OBJECT_NIL) {
        out->ptr = NULL;
        out->len = 0;
        return PC_OK;
    }
    if (value != NULL && value->type != MSGPACK_OBJECT_BIN)
        return reject(rep, "%s%s: expected bin or nil", fields->path,
                      fields->keys[key]);
    return read_bin(rep, fields, key, out);
}

static pc_err_t read_array(report_t *rep, const fields_t *fields, int key,
                           size_t min, size_t max,
                           const msgpack_object_array **out)
{
    const msgpack_object *value =
        field_of_type(rep, fields, key, MSGPACK_OBJECT_ARRAY, "array");
    if (value == NULL)
        return PC_ERR_PROTOCOL;
    if (value->via.array.size < min || value->via.array.size > max)
        return reject(rep, "%s%s: %" PRIu32 " elements, expected %zu..%zu",
                      fields->path, fields->keys[key], value->via.array.size,
                      min, max);
    *out = &value->via.array;
    return PC_OK;
}

/* ---- decoding: members, entries, args ---- */

/* Allocates the message's one array. An empty array stays NULL. */
static pc_err_t alloc_items(report_t *rep, msg_t *msg, size_t count,
                            size_t item_size, const char *what, void **out)
{
    assert(msg->storage == NULL);
    *out = NULL;
    if (count == 0)
        return PC_OK;

    msg->storage = calloc(count, item_size);
    if (msg->storage == NULL)
        return fail(rep, PC_ERR_NOMEM, "out of memory for %zu %s", count,
                    what);
    *out = msg->storage;
    return PC_OK;
}

enum { M_ID, M_HOST, M_PORT, M_PEER_PORT, M_PUB_PORT, M_STATE, M_INC,
       M__COUNT };
static const char *const member_keys[M__COUNT] = {
    "id", "host", "port", "peer_port", "pub_port", "state", "inc",
};

enum { E_KEY, E_VALUE, E_HLC, E_ORIGIN, E_EXP, E_TOMB, E__COUNT };
static const char *const entry_keys[E__COUNT] = {
    "key", "value", "hlc", "origin", "exp", "tomb",
};

static pc_err_t parse_member(report_t *rep, const fields_t *fields,
                             void *item)
{
    msg_member_t *member = item;
    uint64_t state = 0;

    pc_err_t err = read_str(rep, fields, M_ID, &member->id);
    if (err == PC_OK)
        err = read_str(rep, fields, M_HOST, &member->host);
    if (err == PC_OK)
        err = read_port(rep, fields, M_PORT, &member->port);
    if (err == PC_OK)
        err = read_port(rep, fields, M_PEER_PORT, &member->peer_port);
    if (err == PC_OK)
        err = read_port(rep, fields, M_PUB_PORT, &member->pub_port);
    if (err == PC_OK)
        err = read_uint(rep, fields, M_STATE, MSG_STATE_JOINING, MSG_STATE_UP,
                        &state);
    if (err == PC_OK)
        err = read_uint(rep, fields, M_INC, 0, UINT64_MAX,
                        &member->incarnation);
    member->state = (uint8_t)state;
    return err;
}

static pc_err_t parse_entry(report_t *rep, const fields_t *fields, void *item)
{
    msg_entry_t *entry = item;
    uint64_t expire_ms = 0;

    pc_err_t err = read_bin(rep, fields, E_KEY, &entry->key);
    if (err == PC_OK)
        err = read_bin_or_nil(rep, fields, E_VALUE, &entry->value);
    if (err == PC_OK)
        err = read_uint(rep, fields, E_HLC, 0, UINT64_MAX, &entry->hlc);
    if (err == PC_OK)
        err = read_uint(rep, fields, E_ORIGIN, 0, UINT64_MAX, &entry->origin);
    if (err == PC_OK)
        err = read_uint(rep, fields, E_EXP, 0, INT64_MAX, &expire_ms);
    if (err == PC_OK)
        err = read_bool(rep, fields, E_TOMB, &entry->tombstone);
    entry->expire_ms = (int64_t)expire_ms;
    return err;
}

typedef pc_err_t (*parse_item_fn)(report_t *rep, const fields_t *fields,
                                  void *item);

/* Parses each element of array, a map with the given keys, into
 * items[i]. */
static pc_err_t parse_maps(report_t *rep, const msgpack_object_array *array,
                           const char *name, const char *const *keys,
                           size_t key_count, parse_item_fn parse_item,
                           void *items, size_t item_size)
{
    for (uint32_t i = 0; i < array->size; i++) {
        char path[48];
        snprintf(path, sizeof path, "%s[%" PRIu32 "].", name, i);
        if (array->ptr[i].type != MSGPACK_OBJECT_MAP)
            return reject(rep, "%s[%" PRIu32 "]: expected map", name, i);

        fields_t fields;
        collect_fields(&array->ptr[i].via.map, keys, key_count, path,
                       &fields);
        pc_err_t err = check_duplicates(rep, &fields);
        if (err == PC_OK)
            err = parse_item(rep, &fields, (char *)items + i * item_size);
        if (err != PC_OK)
            return err;
    }
    return PC_OK;
}

enum { F_V, F_TYPE, F_FROM, F_MEMBERS, F_ID, F_ARGS, F_RESP, F_EPOCH, F_SEQ,
       F_ENTRIES, F_LAST, F_TOTAL, F__COUNT };
static const char *const top_keys[F__COUNT] = {
    "v", "type", "from", "members", "id", "args", "resp", "epoch", "seq",
    "entries", "last", "total",
};

static pc_err_t parse_members(report_t *rep, const fields_t *fields,
                              size_t min, size_t max, msg_t *msg)
{
    const msgpack_object_array *array;
    void *items;

    pc_err_t err = read_array(rep, fields, F_MEMBERS, min, max, &array);
    if (err == PC_OK)
        err = alloc_items(rep, msg, array->size, sizeof(msg_member_t),
                          "members", &items);
    if (err != PC_OK)
        return err;

    msg->members = items;
    msg->member_count = array->size;
    return parse_maps(rep, array, "members", member_keys, M__COUNT,
                      parse_member, items, sizeof(msg_member_t));
}

static pc_err_t parse_entries(report_t *rep, const fields_t *fields,
                              size_t min, size_t max, msg_t *msg)
{
    const msgpack_object_array *array;
    void *items;

    pc_err_t err = read_array(rep, fields, F_ENTRIES, min, max, &array);
    if (err == PC_OK)
        err = alloc_items(rep, msg, array->size, sizeof(msg_entry_t),
                          "entries", &items);
    if (err != PC_OK)
        return err;

    msg->entries = items;
    msg->entry_count = array->size;
    return parse_maps(rep, array, "entries", entry_keys, E__COUNT,
                      parse_entry, items, sizeof(msg_entry_t));
}

static pc_err_t parse_args(report_t *rep, const fields_t *fields, msg_t *msg)
{
    const msgpack_object_array *array;
    void *items;

    pc_err_t err = read_array(rep, fields, F_ARGS, 1, MSG_MAX_ARGS, &array);
    if (err == PC_OK)
        err = alloc_items(rep, msg, array->size, sizeof(msg_bytes_t), "args",
                          &items);
    if (err != PC_OK)
        return err;

    msg->args = items;
    msg->arg_count = array->size;
    for (uint32_t i = 0; i < array->size; i++) {
        if (array->ptr[i].type != MSGPACK_OBJECT_BIN)
            return reject(rep, "args[%" PRIu32 "]: expected bin", i);
        bytes_of_bin(&array->ptr[i], &msg->args[i]);
    }
    return PC_OK;
}

/* ---- decoding: the top-level map ---- */

static pc_err_t parse_handoff(report_t *rep, const fields_t *fields,
                              msg_t *msg)
{
    pc_err_t err = read_uint(rep, fields, F_ID, 0, UINT64_MAX, &msg->id);
    if (err == PC_OK)
        err = parse_entries(rep, fields, 0, MSG_MAX_ENTRIES, msg);
    if (err == PC_OK)
        err = read_bool(rep, fields, F_LAST, &msg->last);

    /* "total" is required in the last batch and optional elsewhere, but
     * must be an unsigned integer wherever it appears. */
    if (err == PC_OK && (msg->last || fields->value[F_TOTAL] != NULL))
        err = read_uint(rep, fields, F_TOTAL, 0, UINT64_MAX, &msg->total);
    return err;
}

static pc_err_t parse_stream_position(report_t *rep, const fields_t *fields,
                                      msg_t *msg)
{
    pc_err_t err =
        read_uint(rep, fields, F_EPOCH, 0, UINT64_MAX, &msg->epoch);
    if (err == PC_OK)
        err = read_uint(rep, fields, F_SEQ, 0, UINT64_MAX, &msg->seq);
    return err;
}

static pc_err_t parse_body(report_t *rep, const fields_t *fields, msg_t *msg)
{
    pc_err_t err;

    switch (msg->type) {
    case MSG_JOIN:
        return parse_members(rep, fields, 1, 1, msg);
    case MSG_WELCOME:
    case MSG_MEMBERS:
    case MSG_SYNC:
        return parse_members(rep, fields, 0, MSG_MAX_MEMBERS, msg);
    case MSG_REQUEST:
        err = read_uint(rep, fields, F_ID, 0, UINT64_MAX, &msg->id);
        return err == PC_OK ? parse_args(rep, fields, msg) : err;
    case MSG_REPLY:
        err = read_uint(rep, fields, F_ID, 0, UINT64_MAX, &msg->id);
        return err == PC_OK ? read_bin(rep, fields, F_RESP, &msg->resp) : err;
    case MSG_REPL:
        err = parse_stream_position(rep, fields, msg);
        return err == PC_OK ? parse_entries(rep, fields, 1, 1, msg) : err;
    case MSG_ACK:
        return read_uint(rep, fields, F_ID, 0, UINT64_MAX, &msg->id);
    case MSG_HANDOFF:
        return parse_handoff(rep, fields, msg);
    case MSG_BEAT:
        return parse_stream_position(rep, fields, msg);
    default:
        assert(!"parse_header lets only known types through");
        return PC_ERR_PROTOCOL;
    }
}

/* Reads "v", "type" and "from". The version comes first, so a message of
 * a later version is reported as such and not by a field that changed. */
static pc_err_t parse_header(report_t *rep, const fields_t *fields,
                             msg_t *msg)
{
    uint64_t version;
    pc_err_t err = read_uint(rep, fields, F_V, 0, UINT64_MAX, &version);
    if (err != PC_OK)
        return err;
    if (version != MSG_PROTOCOL_VERSION)
        return reject(rep, "unsupported protocol version %" PRIu64, version);

    uint64_t type;
    err = read_uint(rep, fields, F_TYPE, 0, UINT64_MAX, &type);
    if (err != PC_OK)
        return err;
    if (!type_is_known(type))
        return reject(rep, "unknown message type %" PRIu64, type);
    msg->type = (msg_type_t)type;
    rep->type_name = msg_type_name(msg->type);

    return read_str(rep, fields, F_FROM, &msg->from);
}

static pc_err_t parse_message(report_t *rep, const msgpack_object *root,
                              msg_t *msg)
{
    if (root->type != MSGPACK_OBJECT_MAP)
        return reject(rep, "expected a map at the top level");

    fields_t fields;
    collect_fields(&root->via.map, top_keys, F__COUNT, "", &fields);

    pc_err_t err = parse_header(rep, &fields, msg);
    if (err == PC_OK)
        err = check_duplicates(rep, &fields);
    if (err == PC_OK)
        err = parse_body(rep, &fields, msg);
    return err;
}

static pc_err_t unpack_frame(report_t *rep, const void *data, size_t len,
                             msgpack_unpacked *unpacked)
{
    size_t offset = 0;
    msgpack_unpack_return ret =
        msgpack_unpack_next(unpacked, data, len, &offset);

    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        return fail(rep, PC_ERR_NOMEM, "out of memory unpacking %zu bytes",
                    len);
    /* walk_frame accepted the bytes, so this should not happen. The bytes
     * still come from a peer, so it is an error and not an assert. */
    if (ret != MSGPACK_UNPACK_SUCCESS || offset != len)
        return reject(rep, "msgpack-c rejected the frame (result %d, %zu of "
                      "%zu bytes read)", (int)ret, offset, len);
    return PC_OK;
}

pc_err_t msg_decode(const void *data, size_t len, msg_t *msg, char *why,
                    size_t why_len)
{
    assert(msg != NULL);
    assert(data != NULL || len == 0);

    report_t rep = {NULL, why, why_len};
    memset(msg, 0, sizeof *msg);
    if (why != NULL && why_len > 0)
        why[0] = '\0';

    if (len > MSG_MAX_FRAME_BYTES)
        return fail(&rep, PC_ERR_TOO_BIG,
                    "frame of %zu bytes exceeds the cap of %llu bytes", len,
                    MSG_MAX_FRAME_BYTES);

    if (len == 0)
        return reject(&rep, "empty frame");

    pc_err_t err = walk_frame(&rep, data, len);
    if (err != PC_OK)
        return err;

    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    err = unpack_frame(&rep, data, len, &unpacked);
    if (err == PC_OK)
        err = parse_message(&rep, &unpacked.data, msg);
    if (err == PC_OK)
        err = check_msg(&rep, msg);
    msgpack_unpacked_destroy(&unpacked);

    if (err != PC_OK)
        msg_fini(msg);
    return err;
}

void msg_fini(msg_t *msg)
{
    free(msg->storage);
    memset(msg, 0, sizeof *msg);
}
