/* Unit tests of proto/msg: round trips of every message type, then
 * truncated, oversized, malformed and wrong-typed input, and a bounded
 * fuzz loop. Malformed frames are built by unpacking a valid encoding with
 * msgpack-c, editing the object tree and packing it again. */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <msgpack.h>

#include "msg.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif

#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* AddressSanitizer reads this hook at startup. With it, a huge allocation
 * returns NULL instead of aborting, the setting under which the
 * huge-header tests must pass. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* UndefinedBehaviorSanitizer only prints by default. Stopping makes the
 * test crash, so Criterion reports it. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* Criterion ignores both LeakSanitizer's report at process exit and
 * asserts in fixtures, so every test ends with this call. Without the
 * sanitizer it checks nothing. */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                 "memory leaked, see the LeakSanitizer report above");
#endif
}

#define WHY_BYTES 256
#define BUF_MAX_BYTES ((size_t)1 << 30)

/* ---- sample messages ---- */

#define LIT(text) ((msg_bytes_t){(text), sizeof(text) - 1})

static char long_id[MSG_MAX_ID_BYTES];
static char long_host[MSG_MAX_HOST_BYTES];
static msg_member_t sample_members[2];
static msg_entry_t sample_entries[3];
static msg_bytes_t sample_args[4];

/* Fills the static arrays the samples point to. */
static void init_samples(void)
{
    /* Cycle through the printable range so both ends, '!' and '~', occur. */
    for (size_t i = 0; i < sizeof long_id; i++)
        long_id[i] = (char)('!' + (i * 7) % 94);
    memset(long_host, 'h', sizeof long_host);
    long_id[0] = '!';
    long_id[1] = '~';

    sample_members[0] = (msg_member_t){
        LIT("node1"), LIT("127.0.0.1"), 7379, 7380, 7381, MSG_STATE_UP,
        1700000000000ull};
    sample_members[1] = (msg_member_t){
        {long_id, sizeof long_id}, {long_host, sizeof long_host}, 65535, 1, 2,
        MSG_STATE_JOINING, UINT64_MAX};

    sample_entries[0] = (msg_entry_t){
        LIT("k\0\r\n"), LIT("v\0\r\nx\xff"), 0x0001000200030004ull, 42,
        1700000000123ll, false};
    sample_entries[1] = (msg_entry_t){
        LIT("gone"), {NULL, 0}, UINT64_MAX, UINT64_MAX, 0, true};
    sample_entries[2] = (msg_entry_t){
        LIT(""), LIT(""), 1, 0, INT64_MAX, false};

    sample_args[0] = LIT("SET");
    sample_args[1] = LIT("k\0\r\n");
    sample_args[2] = LIT("");
    sample_args[3] = LIT("\xff\0");
}

/* Returns a message of the given type with every field it carries set. */
static msg_t sample(msg_type_t type)
{
    init_samples();
    msg_t msg = {.type = type, .from = LIT("node2")};

    switch (type) {
    case MSG_JOIN:
        msg.from = (msg_bytes_t){long_id, sizeof long_id};
        msg.members = &sample_members[1];
        msg.member_count = 1;
        break;
    case MSG_WELCOME:
    case MSG_MEMBERS:
    case MSG_SYNC:
        msg.members = sample_members;
        msg.member_count = 2;
        break;
    case MSG_REQUEST:
        msg.id = 77;
        msg.args = sample_args;
        msg.arg_count = 4;
        break;
    case MSG_REPLY:
        msg.id = UINT64_MAX;
        msg.resp = LIT("$4\r\na\0\r\n\r\n");
        break;
    case MSG_REPL:
        msg.epoch = 1700000000000ull;
        msg.seq = 1;
        msg.entries = &sample_entries[0];
        msg.entry_count = 1;
        break;
    case MSG_ACK:
        msg.id = 3;
        break;
    case MSG_HANDOFF:
        msg.id = 2;
        msg.entries = sample_entries;
        msg.entry_count = 3;
        msg.last = true;
        msg.total = 1234;
        break;
    case MSG_BEAT:
        msg.epoch = 1700000000001ull;
        break;
    default:
        cr_assert_fail("no sample for type %d", (int)type);
    }
    return msg;
}

#define SAMPLE_MAX 16

/* Fills out[] with one sample per type plus the variants worth covering
 * separately, and returns their number. */
static size_t all_samples(msg_t *out)
{
    size_t n = 0;
    for (int type = MSG_JOIN; type < MSG__TYPE_COUNT; type++)
        out[n++] = sample((msg_type_t)type);

    out[n] = sample(MSG_REPL); /* tombstone with a nil value */
    out[n++].entries = &sample_entries[1];
    out[n] = sample(MSG_REPL); /* empty value */
    out[n++].entries = &sample_entries[2];
    out[n] = sample(MSG_HANDOFF); /* not last: no "total" */
    out[n].last = false;
    out[n++].total = 0;
    out[n] = sample(MSG_HANDOFF); /* empty batch */
    out[n].entries = NULL;
    out[n++].entry_count = 0;
    out[n] = sample(MSG_MEMBERS); /* empty member list */
    out[n].members = NULL;
    out[n++].member_count = 0;
    return n;
}

/* ---- helpers ---- */

static void encode_ok(const msg_t *msg, pc_buf_t *out)
{
    buf_init(out, BUF_MAX_BYTES);
    pc_err_t err = msg_encode(msg, out);
    cr_assert_eq(err, PC_OK, "encoding %s: %s", msg_type_name(msg->type),
                 pc_err_name(err));
}

static void assert_bytes_equal(msg_bytes_t got, msg_bytes_t want,
                               const char *what)
{
    cr_assert_eq(got.len, want.len, "%s: length %zu, expected %zu", what,
                 got.len, want.len);
    cr_assert_eq(got.ptr == NULL, want.ptr == NULL, "%s: nil mismatch", what);
    if (want.len > 0)
        cr_assert(memcmp(got.ptr, want.ptr, want.len) == 0, "%s: bytes differ",
                  what);
}

static void assert_member_equal(const msg_member_t *got,
                                const msg_member_t *want)
{
    assert_bytes_equal(got->id, want->id, "member id");
    assert_bytes_equal(got->host, want->host, "member host");
    cr_assert_eq(got->port, want->port);
    cr_assert_eq(got->peer_port, want->peer_port);
    cr_assert_eq(got->pub_port, want->pub_port);
    cr_assert_eq(got->state, want->state);
    cr_assert_eq(got->incarnation, want->incarnation);
}

static void assert_entry_equal(const msg_entry_t *got, const msg_entry_t *want)
{
    assert_bytes_equal(got->key, want->key, "entry key");
    assert_bytes_equal(got->value, want->value, "entry value");
    cr_assert_eq(got->hlc, want->hlc);
    cr_assert_eq(got->origin, want->origin);
    cr_assert_eq(got->expire_ms, want->expire_ms);
    cr_assert_eq(got->tombstone, want->tombstone);
}

static void assert_msg_equal(const msg_t *got, const msg_t *want)
{
    cr_assert_eq(got->type, want->type);
    assert_bytes_equal(got->from, want->from, "from");
    cr_assert_eq(got->id, want->id);
    cr_assert_eq(got->epoch, want->epoch);
    cr_assert_eq(got->seq, want->seq);
    assert_bytes_equal(got->resp, want->resp, "resp");
    cr_assert_eq(got->last, want->last);
    cr_assert_eq(got->total, want->total);

    cr_assert_eq(got->member_count, want->member_count);
    for (size_t i = 0; i < want->member_count; i++)
        assert_member_equal(&got->members[i], &want->members[i]);

    cr_assert_eq(got->arg_count, want->arg_count);
    for (size_t i = 0; i < want->arg_count; i++)
        assert_bytes_equal(got->args[i], want->args[i], "arg");

    cr_assert_eq(got->entry_count, want->entry_count);
    for (size_t i = 0; i < want->entry_count; i++)
        assert_entry_equal(&got->entries[i], &want->entries[i]);
}

static void assert_round_trip(const msg_t *msg)
{
    pc_buf_t frame;
    encode_ok(msg, &frame);

    msg_t decoded;
    char why[WHY_BYTES];
    pc_err_t err = msg_decode(frame.data, frame.len, &decoded, why, sizeof why);
    cr_assert_eq(err, PC_OK, "decoding %s: %s", msg_type_name(msg->type), why);
    assert_msg_equal(&decoded, msg);

    msg_fini(&decoded);
    buf_fini(&frame);
}

/* Decodes a copy of data in a buffer of exactly len bytes, so that
 * AddressSanitizer reports any read past the end. Frees what decoding
 * allocated. */
static pc_err_t decode_exact(const void *data, size_t len, char *why,
                             size_t why_len)
{
    char *copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0)
        memcpy(copy, data, len);

    msg_t msg;
    pc_err_t err = msg_decode(copy, len, &msg, why, why_len);
    msg_fini(&msg);
    free(copy);
    return err;
}

static void assert_rejected(const void *data, size_t len, const char *reason)
{
    char why[WHY_BYTES];
    pc_err_t err = decode_exact(data, len, why, sizeof why);
    cr_assert_eq(err, PC_ERR_PROTOCOL, "expected a protocol error (%s), got %s",
                 reason, pc_err_name(err));
    cr_assert(strstr(why, reason) != NULL, "reason \"%s\" lacks \"%s\"", why,
              reason);
}

/* ---- editing encoded messages as msgpack object trees ---- */

typedef struct tree {
    pc_buf_t encoded;          /* the unpacked str and bin objects point here */
    msgpack_unpacked unpacked; /* its zone also stores edited arrays */
} tree_t;

static void tree_init(tree_t *tree, const msg_t *msg)
{
    encode_ok(msg, &tree->encoded);
    msgpack_unpacked_init(&tree->unpacked);
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(
        &tree->unpacked, tree->encoded.data, tree->encoded.len, &offset);
    cr_assert_eq(ret, MSGPACK_UNPACK_SUCCESS);
}

static void tree_fini(tree_t *tree)
{
    msgpack_unpacked_destroy(&tree->unpacked);
    buf_fini(&tree->encoded);
}

static msgpack_object str_obj(const char *text, size_t len)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_STR};
    obj.via.str.ptr = text;
    obj.via.str.size = (uint32_t)len;
    return obj;
}

static msgpack_object cstr_obj(const char *text)
{
    return str_obj(text, strlen(text));
}

static msgpack_object uint_obj(uint64_t value)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    obj.via.u64 = value;
    return obj;
}

static msgpack_object neg_obj(int64_t value)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER};
    obj.via.i64 = value;
    return obj;
}

static msgpack_object nil_obj(void)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_NIL};
    return obj;
}

static msgpack_object empty_array_obj(void)
{
    msgpack_object obj = {.type = MSGPACK_OBJECT_ARRAY};
    return obj;
}

static msgpack_object_kv *map_lookup(msgpack_object *map, const char *key,
                                     size_t key_len)
{
    cr_assert_eq(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len &&
            memcmp(k->via.str.ptr, key, key_len) == 0)
            return &map->via.map.ptr[i];
    }
    return NULL;
}

/* Returns the object at a dotted path such as "entries.0.hlc". A numeric
 * segment indexes an array. */
static msgpack_object *tree_find(tree_t *tree, const char *path)
{
    msgpack_object *obj = &tree->unpacked.data;
    while (*path != '\0') {
        size_t len = strcspn(path, ".");
        if (obj->type == MSGPACK_OBJECT_ARRAY) {
            size_t index = strtoul(path, NULL, 10);
            cr_assert_lt(index, obj->via.array.size, "path %s", path);
            obj = &obj->via.array.ptr[index];
        } else {
            msgpack_object_kv *kv = map_lookup(obj, path, len);
            cr_assert_not_null(kv, "no key at %s", path);
            obj = &kv->val;
        }
        path += len;
        if (*path == '.')
            path++;
    }
    return obj;
}

/* Splits "entries.0.hlc" into the parent map's object and the last key. */
static msgpack_object *tree_parent(tree_t *tree, const char *path,
                                   const char **key)
{
    char parent[128];
    const char *dot = strrchr(path, '.');
    if (dot == NULL) {
        *key = path;
        return &tree->unpacked.data;
    }
    cr_assert_lt((size_t)(dot - path), sizeof parent);
    memcpy(parent, path, (size_t)(dot - path));
    parent[dot - path] = '\0';
    *key = dot + 1;
    return tree_find(tree, parent);
}

static void tree_set(tree_t *tree, const char *path, msgpack_object value)
{
    *tree_find(tree, path) = value;
}

static void tree_remove(tree_t *tree, const char *path)
{
    const char *key;
    msgpack_object *map = tree_parent(tree, path, &key);
    msgpack_object_kv *kv = map_lookup(map, key, strlen(key));
    cr_assert_not_null(kv);

    msgpack_object_kv *end = map->via.map.ptr + map->via.map.size;
    memmove(kv, kv + 1, (size_t)(end - kv - 1) * sizeof *kv);
    map->via.map.size--;
}

/* Appends a pair to the map at path ("" for the top level), keeping any
 * pair with the same key. */
static void tree_add(tree_t *tree, const char *path, msgpack_object key,
                     msgpack_object value)
{
    msgpack_object *map = tree_find(tree, path);
    cr_assert_eq(map->type, MSGPACK_OBJECT_MAP);

    uint32_t size = map->via.map.size;
    msgpack_object_kv *pairs = msgpack_zone_malloc(
        tree->unpacked.zone, (size + 1) * sizeof(msgpack_object_kv));
    cr_assert_not_null(pairs);
    memcpy(pairs, map->via.map.ptr, size * sizeof *pairs);
    pairs[size].key = key;
    pairs[size].val = value;
    map->via.map.ptr = pairs;
    map->via.map.size = size + 1;
}

/* Replaces the array at path by count copies of its first element. */
static void tree_repeat(tree_t *tree, const char *path, uint32_t count)
{
    msgpack_object *array = tree_find(tree, path);
    cr_assert_eq(array->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_gt(array->via.array.size, 0);

    msgpack_object *items = msgpack_zone_malloc(
        tree->unpacked.zone, (size_t)count * sizeof(msgpack_object));
    cr_assert_not_null(items);
    for (uint32_t i = 0; i < count; i++)
        items[i] = array->via.array.ptr[0];
    array->via.array.ptr = items;
    array->via.array.size = count;
}

static int write_to_buf(void *data, const char *bytes, size_t len)
{
    return buf_append(data, bytes, len) == PC_OK ? 0 : -1;
}

static void tree_pack(tree_t *tree, pc_buf_t *frame)
{
    buf_init(frame, BUF_MAX_BYTES);
    msgpack_packer pk;
    msgpack_packer_init(&pk, frame, write_to_buf);
    cr_assert_eq(msgpack_pack_object(&pk, tree->unpacked.data), 0);
    cr_assert_eq(buf_error(frame), PC_OK);
}

static pc_err_t tree_decode(tree_t *tree, char *why, size_t why_len)
{
    pc_buf_t frame;
    tree_pack(tree, &frame);
    pc_err_t err = decode_exact(frame.data, frame.len, why, why_len);
    buf_fini(&frame);
    return err;
}

static void assert_tree_rejected(tree_t *tree, const char *reason)
{
    char why[WHY_BYTES];
    pc_err_t err = tree_decode(tree, why, sizeof why);
    cr_assert_eq(err, PC_ERR_PROTOCOL, "expected a protocol error (%s), got %s",
                 reason, pc_err_name(err));
    cr_assert(strstr(why, reason) != NULL, "reason \"%s\" lacks \"%s\"", why,
              reason);
}

/* ---- round trips ---- */

Test(msg, round_trip_join)
{
    msg_t msg = sample(MSG_JOIN);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_welcome)
{
    msg_t msg = sample(MSG_WELCOME);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_members)
{
    msg_t msg = sample(MSG_MEMBERS);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_sync)
{
    msg_t msg = sample(MSG_SYNC);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_request)
{
    msg_t msg = sample(MSG_REQUEST);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_reply)
{
    msg_t msg = sample(MSG_REPLY);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_repl)
{
    msg_t msg = sample(MSG_REPL);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_ack)
{
    msg_t msg = sample(MSG_ACK);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_handoff)
{
    msg_t msg = sample(MSG_HANDOFF);
    assert_round_trip(&msg);
    assert_no_leaks();
}

Test(msg, round_trip_beat)
{
    msg_t msg = sample(MSG_BEAT);
    assert_round_trip(&msg);
    assert_no_leaks();
}


Test(msg, round_trip_variants)
{
    msg_t samples[SAMPLE_MAX];
    size_t count = all_samples(samples);
    for (size_t i = 0; i < count; i++)
        assert_round_trip(&samples[i]);
    assert_no_leaks();
}

Test(msg, round_trip_tombstone_nil)
{
    msg_t msg = sample(MSG_REPL);
    msg.entries = &sample_entries[1];
    pc_buf_t frame;
    encode_ok(&msg, &frame);

    msg_t decoded;
    cr_assert_eq(msg_decode(frame.data, frame.len, &decoded, NULL, 0), PC_OK);
    cr_assert(decoded.entries[0].tombstone);
    cr_assert_null(decoded.entries[0].value.ptr);
    cr_assert_eq(decoded.entries[0].value.len, 0);
    msg_fini(&decoded);
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, round_trip_empty_value)
{
    msg_t msg = sample(MSG_REPL);
    msg.entries = &sample_entries[2];
    pc_buf_t frame;
    encode_ok(&msg, &frame);

    msg_t decoded;
    cr_assert_eq(msg_decode(frame.data, frame.len, &decoded, NULL, 0), PC_OK);
    cr_assert_not(decoded.entries[0].tombstone);
    cr_assert_not_null(decoded.entries[0].value.ptr);
    cr_assert_eq(decoded.entries[0].value.len, 0);
    cr_assert_not_null(decoded.entries[0].key.ptr);
    cr_assert_eq(decoded.entries[0].key.len, 0);
    msg_fini(&decoded);
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, decoded_bytes_point_into_frame)
{
    msg_t msg = sample(MSG_REQUEST);
    pc_buf_t frame;
    encode_ok(&msg, &frame);

    msg_t decoded;
    cr_assert_eq(msg_decode(frame.data, frame.len, &decoded, NULL, 0), PC_OK);
    const char *begin = frame.data;
    const char *end = frame.data + frame.len;
    cr_assert(decoded.from.ptr >= begin && decoded.from.ptr < end);
    for (size_t i = 0; i < decoded.arg_count; i++)
        cr_assert(decoded.args[i].ptr >= begin && decoded.args[i].ptr <= end,
                  "args[%zu] is a copy", i);
    msg_fini(&decoded);
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, fini_zeroes_message)
{
    msg_t msg = sample(MSG_HANDOFF);
    pc_buf_t frame;
    encode_ok(&msg, &frame);

    msg_t decoded;
    cr_assert_eq(msg_decode(frame.data, frame.len, &decoded, NULL, 0), PC_OK);
    cr_assert_not_null(decoded.storage);
    msg_fini(&decoded);

    msg_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert(memcmp(&decoded, &zero, sizeof zero) == 0);
    msg_fini(&decoded); /* a second call is harmless */
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, failed_decode_leaves_zeroed)
{
    msg_t msg = sample(MSG_HANDOFF);
    msg.entries = &sample_entries[1];
    msg.entry_count = 1;
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "entries.0.tomb", cstr_obj("no"));
    pc_buf_t frame;
    tree_pack(&tree, &frame);

    msg_t decoded;
    pc_err_t err = msg_decode(frame.data, frame.len, &decoded, NULL, 0);
    cr_assert_eq(err, PC_ERR_PROTOCOL);
    cr_assert_null(decoded.storage);
    cr_assert_null(decoded.entries);
    cr_assert_eq(decoded.entry_count, 0);
    msg_fini(&decoded);
    buf_fini(&frame);
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, type_names)
{
    cr_assert_str_eq(msg_type_name(MSG_JOIN), "JOIN");
    cr_assert_str_eq(msg_type_name(MSG_REPL), "REPL");
    cr_assert_str_eq(msg_type_name(MSG_BEAT), "BEAT");
    cr_assert_str_eq(msg_type_name((msg_type_t)0), "UNKNOWN");
    cr_assert_str_eq(msg_type_name(MSG__TYPE_COUNT), "UNKNOWN");
    cr_assert_str_eq(msg_type_name((msg_type_t)-1), "UNKNOWN");
    assert_no_leaks();
}

/* ---- framing ---- */

Test(msg, truncated_at_every_length)
{
    msg_t samples[SAMPLE_MAX];
    size_t count = all_samples(samples);

    for (size_t s = 0; s < count; s++) {
        pc_buf_t frame;
        encode_ok(&samples[s], &frame);
        for (size_t len = 0; len < frame.len; len++) {
            char why[WHY_BYTES];
            pc_err_t err = decode_exact(frame.data, len, why, sizeof why);
            cr_assert_eq(err, PC_ERR_PROTOCOL, "%s cut to %zu of %zu bytes",
                         msg_type_name(samples[s].type), len, frame.len);
        }
        buf_fini(&frame);
    }
    assert_no_leaks();
}

Test(msg, trailing_byte)
{
    msg_t msg = sample(MSG_ACK);
    pc_buf_t frame;
    encode_ok(&msg, &frame);
    buf_append(&frame, "", 1);

    assert_rejected(frame.data, frame.len, "1 trailing bytes");
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, two_messages_in_one_frame)
{
    msg_t msg = sample(MSG_BEAT);
    pc_buf_t frame;
    encode_ok(&msg, &frame);
    cr_assert_eq(msg_encode(&msg, &frame), PC_OK);

    assert_rejected(frame.data, frame.len, "trailing bytes");
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, empty_frame)
{
    assert_rejected("", 0, "empty frame");
    msg_t msg;
    cr_assert_eq(msg_decode(NULL, 0, &msg, NULL, 0), PC_ERR_PROTOCOL);
    msg_fini(&msg);
    assert_no_leaks();
}

/* The pages are reserved, never touched past the first: decoding checks
 * the length before it reads. */
static const char *map_zero_pages(size_t len)
{
    void *pages = mmap(NULL, len, PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(pages, MAP_FAILED, "mmap of %zu bytes failed", len);
    return pages;
}

Test(msg, frame_over_cap)
{
    size_t len = MSG_MAX_FRAME_BYTES + 1;
    const char *pages = map_zero_pages(len);

    msg_t msg;
    char why[WHY_BYTES];
    cr_assert_eq(msg_decode(pages, len, &msg, why, sizeof why),
                 PC_ERR_TOO_BIG);
    cr_assert(strstr(why, "exceeds the cap") != NULL, "%s", why);
    msg_fini(&msg);
    munmap((void *)pages, len);
    assert_no_leaks();
}

Test(msg, frame_at_cap_is_walked)
{
    size_t len = MSG_MAX_FRAME_BYTES;
    const char *pages = map_zero_pages(len);

    /* One fixint 0 followed by zero bytes: walked, then rejected for the
     * trailing bytes, not for the size. */
    msg_t msg;
    char why[WHY_BYTES];
    cr_assert_eq(msg_decode(pages, len, &msg, why, sizeof why),
                 PC_ERR_PROTOCOL);
    cr_assert(strstr(why, "trailing") != NULL, "%s", why);
    msg_fini(&msg);
    munmap((void *)pages, len);
    assert_no_leaks();
}

/* ---- lying headers and nesting ---- */

Test(msg, array32_claims_4g_elements)
{
    static const unsigned char frame[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
    assert_rejected(frame, sizeof frame, "overruns");
    assert_no_leaks();
}

Test(msg, huge_headers)
{
    static const struct {
        unsigned char bytes[8];
        size_t len;
    } cases[] = {
        {{0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}, 7}, /* map32 */
        {{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, 6},        /* str32 */
        {{0xc6, 0xff, 0xff, 0xff, 0xff, 'a'}, 6},        /* bin32 */
        {{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'}, 7},  /* ext32 */
        {{0xdc, 0xff, 0xff, 0x00}, 4},                   /* array16 */
        {{0xde, 0x00, 0x02, 0x00, 0x00, 0x00}, 6},       /* map16, 2 pairs */
        {{0x81, 0xa1, 'v', 0xdd, 0xff, 0xff, 0xff, 0xff}, 8}, /* nested */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_rejected(cases[i].bytes, cases[i].len, "overruns");
    assert_no_leaks();
}

Test(msg, huge_count_inside_message)
{
    msg_t msg = sample(MSG_MEMBERS);
    pc_buf_t frame;
    encode_ok(&msg, &frame);

    /* Change the fixarray header of two members into array32 claiming
     * 0xffffffff, keeping the real elements after it. */
    char *header = memchr(frame.data, 0x92, frame.len);
    cr_assert_not_null(header);
    size_t at = (size_t)(header - frame.data);
    pc_buf_t forged;
    buf_init(&forged, BUF_MAX_BYTES);
    buf_append(&forged, frame.data, at);
    buf_append(&forged, "\xdd\xff\xff\xff\xff", 5);
    buf_append(&forged, frame.data + at + 1, frame.len - at - 1);

    assert_rejected(forged.data, forged.len, "overruns");
    buf_fini(&forged);
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, reserved_format_byte)
{
    static const unsigned char frame[] = {0x81, 0xa1, 'x', 0xc1};
    assert_rejected(frame, sizeof frame, "0xc1");
    assert_no_leaks();
}

/* Builds a valid ACK whose unknown key "deep" contains arrays nested
 * levels deep, so the whole frame nests levels + 1 deep. */
static void build_nested_ack(pc_buf_t *frame, unsigned levels)
{
    buf_init(frame, BUF_MAX_BYTES);
    msgpack_packer pk;
    msgpack_packer_init(&pk, frame, write_to_buf);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, MSG_PROTOCOL_VERSION);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_uint64(&pk, MSG_ACK);
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_str_with_body(&pk, "node1", 5);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 9);
    msgpack_pack_str_with_body(&pk, "deep", 4);
    for (unsigned i = 0; i < levels; i++)
        msgpack_pack_array(&pk, i + 1 < levels ? 1 : 0);
    cr_assert_eq(buf_error(frame), PC_OK);
}

Test(msg, nesting_at_limit)
{
    pc_buf_t frame;
    build_nested_ack(&frame, MSG_MAX_DEPTH - 1);
    char why[WHY_BYTES];
    cr_assert_eq(decode_exact(frame.data, frame.len, why, sizeof why), PC_OK,
                 "%s", why);
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, nesting_over_limit)
{
    pc_buf_t frame;
    build_nested_ack(&frame, MSG_MAX_DEPTH);
    assert_rejected(frame.data, frame.len, "nesting deeper");
    buf_fini(&frame);
    assert_no_leaks();
}

Test(msg, deep_array_bomb)
{
    /* 100,000 nested one-element arrays: must fail fast, not recurse. */
    size_t len = 100000;
    unsigned char *bytes = malloc(len);
    cr_assert_not_null(bytes);
    memset(bytes, 0x91, len);
    assert_rejected(bytes, len, "nesting deeper");
    free(bytes);
    assert_no_leaks();
}

Test(msg, deep_map_bomb)
{
    size_t pairs = 50000;
    unsigned char *bytes = malloc(pairs * 2 + 1);
    cr_assert_not_null(bytes);
    for (size_t i = 0; i < pairs; i++) {
        bytes[2 * i] = 0x81;   /* map of one pair */
        bytes[2 * i + 1] = 0x00; /* key 0, whose value is the next map */
    }
    bytes[pairs * 2] = 0xc0;
    assert_rejected(bytes, pairs * 2 + 1, "nesting deeper");
    free(bytes);
    assert_no_leaks();
}

Test(msg, too_many_values)
{
    /* An array of 2 * MSG_MAX_ARGS nils: each byte is a real value, but the
     * frame declares more than the decoder lets msgpack-c allocate. */
    uint32_t count = 2 * MSG_MAX_ARGS;
    size_t len = 5 + (size_t)count;
    unsigned char *bytes = malloc(len);
    cr_assert_not_null(bytes);
    bytes[0] = 0xdd;
    bytes[1] = (unsigned char)(count >> 24);
    bytes[2] = (unsigned char)(count >> 16);
    bytes[3] = (unsigned char)(count >> 8);
    bytes[4] = (unsigned char)count;
    memset(bytes + 5, 0xc0, count);
    assert_rejected(bytes, len, "more than");
    free(bytes);
    assert_no_leaks();
}

/* ---- header fields ---- */

Test(msg, wrong_version)
{
    msg_t msg = sample(MSG_ACK);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "v", uint_obj(2));

    char why[WHY_BYTES];
    cr_assert_eq(tree_decode(&tree, why, sizeof why), PC_ERR_PROTOCOL);
    cr_assert_str_eq(why, "unsupported protocol version 2");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, version_zero)
{
    msg_t msg = sample(MSG_ACK);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "v", uint_obj(0));
    assert_tree_rejected(&tree, "unsupported protocol version 0");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, unknown_types)
{
    static const uint64_t types[] = {0, MSG__TYPE_COUNT, 1000, UINT64_MAX};
    msg_t msg = sample(MSG_ACK);

    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        tree_t tree;
        tree_init(&tree, &msg);
        tree_set(&tree, "type", uint_obj(types[i]));
        assert_tree_rejected(&tree, "unknown message type");
        tree_fini(&tree);
    }
    assert_no_leaks();
}

Test(msg, top_level_not_map)
{
    static const unsigned char fixint[] = {0x01};
    static const unsigned char array[] = {0x91, 0x01};
    static const unsigned char nil[] = {0xc0};
    assert_rejected(fixint, sizeof fixint, "expected a map");
    assert_rejected(array, sizeof array, "expected a map");
    assert_rejected(nil, sizeof nil, "expected a map");
    assert_no_leaks();
}

Test(msg, why_names_type_and_path)
{
    msg_t msg = sample(MSG_REPL);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "entries.0.hlc", cstr_obj("12"));

    char why[WHY_BYTES];
    cr_assert_eq(tree_decode(&tree, why, sizeof why), PC_ERR_PROTOCOL);
    cr_assert_str_eq(why, "REPL: entries[0].hlc: expected unsigned integer");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, why_may_be_absent_or_short)
{
    msg_t msg = sample(MSG_REPL);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "entries.0.hlc", cstr_obj("12"));

    cr_assert_eq(tree_decode(&tree, NULL, 0), PC_ERR_PROTOCOL);
    char why[8];
    memset(why, 'x', sizeof why);
    cr_assert_eq(tree_decode(&tree, why, sizeof why), PC_ERR_PROTOCOL);
    cr_assert_str_eq(why, "REPL: e");
    tree_fini(&tree);
    assert_no_leaks();
}

/* ---- every field: missing, wrong type ---- */

typedef struct field_path {
    char path[64];    /* for tree_find: "entries.0.hlc" */
    char display[64]; /* as the reason writes it: "entries[0].hlc" */
    msgpack_object_type type;
} field_path_t;

/* Lists the keys of the top-level map and of the first member or entry. */
static size_t list_fields(tree_t *tree, field_path_t *out, size_t max)
{
    size_t n = 0;
    msgpack_object_map *top = &tree->unpacked.data.via.map;

    for (uint32_t i = 0; i < top->size; i++) {
        msgpack_object_str key = top->ptr[i].key.via.str;
        msgpack_object *val = &top->ptr[i].val;
        cr_assert_lt(n, max);
        snprintf(out[n].path, sizeof out[n].path, "%.*s", (int)key.size,
                 key.ptr);
        snprintf(out[n].display, sizeof out[n].display, "%.*s",
                 (int)key.size, key.ptr);
        out[n++].type = val->type;

        if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size == 0 ||
            val->via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
            continue;
        msgpack_object_map *inner = &val->via.array.ptr[0].via.map;
        for (uint32_t j = 0; j < inner->size; j++) {
            msgpack_object_str ikey = inner->ptr[j].key.via.str;
            cr_assert_lt(n, max);
            snprintf(out[n].path, sizeof out[n].path, "%.*s.0.%.*s",
                     (int)key.size, key.ptr, (int)ikey.size, ikey.ptr);
            snprintf(out[n].display, sizeof out[n].display, "%.*s[0].%.*s",
                     (int)key.size, key.ptr, (int)ikey.size, ikey.ptr);
            out[n++].type = inner->ptr[j].val.type;
        }
    }
    return n;
}

#define FIELDS_MAX 32

Test(msg, missing_each_field)
{
    msg_t samples[SAMPLE_MAX];
    size_t count = all_samples(samples);

    for (size_t s = 0; s < count; s++) {
        tree_t listing;
        field_path_t fields[FIELDS_MAX];
        tree_init(&listing, &samples[s]);
        size_t field_count = list_fields(&listing, fields, FIELDS_MAX);
        tree_fini(&listing);

        for (size_t f = 0; f < field_count; f++) {
            tree_t tree;
            tree_init(&tree, &samples[s]);
            tree_remove(&tree, fields[f].path);

            char why[WHY_BYTES];
            pc_err_t err = tree_decode(&tree, why, sizeof why);
            cr_assert_eq(err, PC_ERR_PROTOCOL, "%s without %s decoded",
                         msg_type_name(samples[s].type), fields[f].path);
            cr_assert(strstr(why, fields[f].display) != NULL, "%s", why);
            cr_assert(strstr(why, "missing") != NULL, "%s", why);
            tree_fini(&tree);
        }
    }
    assert_no_leaks();
}

/* Returns a value of a type that the field's msgpack type never accepts. */
static msgpack_object wrong_type_for(msgpack_object_type type)
{
    if (type == MSGPACK_OBJECT_STR)
        return uint_obj(7);
    return cstr_obj("x");
}

static void assert_field_rejects(const msg_t *msg, const field_path_t *field,
                                 msgpack_object value)
{
    tree_t tree;
    tree_init(&tree, msg);
    tree_set(&tree, field->path, value);

    char why[WHY_BYTES];
    pc_err_t err = tree_decode(&tree, why, sizeof why);
    cr_assert_eq(err, PC_ERR_PROTOCOL, "%s with a wrong %s decoded",
                 msg_type_name(msg->type), field->path);
    cr_assert(strstr(why, field->display) != NULL, "%s", why);
    tree_fini(&tree);
}

Test(msg, wrong_type_each_field)
{
    msg_t samples[SAMPLE_MAX];
    size_t count = all_samples(samples);

    for (size_t s = 0; s < count; s++) {
        tree_t listing;
        field_path_t fields[FIELDS_MAX];
        tree_init(&listing, &samples[s]);
        size_t field_count = list_fields(&listing, fields, FIELDS_MAX);
        tree_fini(&listing);

        for (size_t f = 0; f < field_count; f++) {
            assert_field_rejects(&samples[s], &fields[f],
                                 wrong_type_for(fields[f].type));
            if (fields[f].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                assert_field_rejects(&samples[s], &fields[f], neg_obj(-1));
        }
    }
    assert_no_leaks();
}

Test(msg, str_is_not_bin)
{
    msg_t msg = sample(MSG_REQUEST);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "args.1", cstr_obj("GET"));
    assert_tree_rejected(&tree, "args[1]: expected bin");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, bin_is_not_str)
{
    msg_t msg = sample(MSG_ACK);
    tree_t tree;
    tree_init(&tree, &msg);
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN};
    bin.via.bin.ptr = "node1";
    bin.via.bin.size = 5;
    tree_set(&tree, "from", bin);
    assert_tree_rejected(&tree, "ACK: from: expected str");
    tree_fini(&tree);
    assert_no_leaks();
}

/* ---- value limits ---- */

typedef struct limit_case {
    msg_type_t type;
    const char *path;
    msgpack_object value;
    const char *reason;
} limit_case_t;

Test(msg, value_limits)
{
    static char id65[MSG_MAX_ID_BYTES + 1];
    static char host256[MSG_MAX_HOST_BYTES + 1];
    memset(id65, 'a', sizeof id65);
    memset(host256, 'h', sizeof host256);

    const limit_case_t cases[] = {
        {MSG_JOIN, "members.0.port", uint_obj(0),
         "members[0].port: 0 out of range"},
        {MSG_JOIN, "members.0.port", uint_obj(65536),
         "out of range 1..65535"},
        {MSG_JOIN, "members.0.peer_port", uint_obj(0),
         "peer_port: 0 out of"},
        {MSG_JOIN, "members.0.pub_port", uint_obj(70000),
         "pub_port: 70000 out"},
        {MSG_JOIN, "members.0.state", uint_obj(0),
         "state: 0 out of range 1..2"},
        {MSG_JOIN, "members.0.state", uint_obj(3),
         "state: 3 out of range 1..2"},
        {MSG_JOIN, "members.0.id", str_obj(id65, sizeof id65),
         "id: length 65"},
        {MSG_JOIN, "members.0.id", cstr_obj(""),
         "id: length 0"},
        {MSG_JOIN, "members.0.id", cstr_obj("a b"),
         "byte 0x20 at offset 1"},
        {MSG_JOIN, "members.0.id", cstr_obj("a\nb"),
         "byte 0x0a at offset 1"},
        {MSG_JOIN, "members.0.id", cstr_obj("\x7f"),
         "byte 0x7f at offset 0"},
        {MSG_JOIN, "members.0.host", str_obj(host256, sizeof host256),
         "host: length 256"},
        {MSG_JOIN, "members.0.host", cstr_obj(""),
         "host: length 0"},
        {MSG_JOIN, "members.0", uint_obj(1),
         "members[0]: expected map"},
        {MSG_JOIN, "members", empty_array_obj(),
         "members: 0 elements, expected 1..1"},
        {MSG_ACK, "from", cstr_obj(""),
         "ACK: from: length 0"},
        {MSG_ACK, "from", str_obj(id65, sizeof id65),
         "ACK: from: length 65"},
        {MSG_ACK, "from", cstr_obj("no\x01"),
         "ACK: from: byte 0x01"},
        {MSG_REPL, "entries.0.exp", neg_obj(-5),
         "entries[0].exp: expected unsigned"},
        {MSG_REPL, "entries.0.exp", uint_obj((uint64_t)INT64_MAX + 1),
         "exp: 9223372036854775808 out of range"},
        {MSG_REPL, "entries.0.value", nil_obj(),
         "value: nil is only allowed for a tombstone"},
        {MSG_REPL, "entries.0.value", cstr_obj("v"),
         "value: expected bin or nil"},
        {MSG_REPL, "entries.0", nil_obj(),
         "entries[0]: expected map"},
        {MSG_REPL, "entries", empty_array_obj(),
         "entries: 0 elements, expected 1..1"},
        {MSG_REQUEST, "args", empty_array_obj(),
         "args: 0 elements, expected 1..1048576"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msg_t msg = sample(cases[i].type);
        tree_t tree;
        tree_init(&tree, &msg);
        tree_set(&tree, cases[i].path, cases[i].value);
        assert_tree_rejected(&tree, cases[i].reason);
        tree_fini(&tree);
    }
    assert_no_leaks();
}

Test(msg, join_with_two_members)
{
    msg_t msg = sample(MSG_JOIN);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_repeat(&tree, "members", 2);
    assert_tree_rejected(&tree, "JOIN: members: 2 elements, expected 1..1");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, repl_with_two_entries)
{
    msg_t msg = sample(MSG_REPL);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_repeat(&tree, "entries", 2);
    assert_tree_rejected(&tree, "REPL: entries: 2 elements, expected 1..1");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, handoff_last_needs_total)
{
    msg_t msg = sample(MSG_HANDOFF);
    msg.last = false;
    tree_t tree;
    tree_init(&tree, &msg);
    tree_set(&tree, "last", (msgpack_object){.type = MSGPACK_OBJECT_BOOLEAN,
                                             .via.boolean = true});
    assert_tree_rejected(&tree, "HANDOFF: total: missing required key");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, handoff_total_checked_when_not_last)
{
    msg_t msg = sample(MSG_HANDOFF);
    msg.last = false;
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "", cstr_obj("total"), cstr_obj("many"));
    assert_tree_rejected(&tree, "HANDOFF: total: expected unsigned integer");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, max_members)
{
    static msg_member_t members[MSG_MAX_MEMBERS];
    msg_t msg = sample(MSG_MEMBERS);
    for (size_t i = 0; i < MSG_MAX_MEMBERS; i++)
        members[i] = sample_members[i % 2];
    msg.members = members;
    msg.member_count = MSG_MAX_MEMBERS;
    assert_round_trip(&msg);

    tree_t tree;
    tree_init(&tree, &msg);
    tree_repeat(&tree, "members", MSG_MAX_MEMBERS + 1);
    assert_tree_rejected(&tree, "members: 1025 elements, expected 0..1024");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, max_args)
{
    msg_bytes_t *args = calloc(MSG_MAX_ARGS, sizeof *args);
    cr_assert_not_null(args);
    msg_t msg = sample(MSG_REQUEST);
    for (size_t i = 0; i < MSG_MAX_ARGS; i++)
        args[i] = LIT("");
    args[0] = LIT("MSET");
    msg.args = args;
    msg.arg_count = MSG_MAX_ARGS;
    assert_round_trip(&msg);

    tree_t tree;
    tree_init(&tree, &msg);
    tree_repeat(&tree, "args", MSG_MAX_ARGS + 1);
    assert_tree_rejected(&tree, "args: 1048577 elements");
    tree_fini(&tree);
    free(args);
    assert_no_leaks();
}

Test(msg, max_entries)
{
    msg_entry_t *entries = calloc(MSG_MAX_ENTRIES, sizeof *entries);
    cr_assert_not_null(entries);
    msg_t msg = sample(MSG_HANDOFF);
    for (size_t i = 0; i < MSG_MAX_ENTRIES; i++)
        entries[i] = sample_entries[i % 3];
    msg.entries = entries;
    msg.entry_count = MSG_MAX_ENTRIES;
    assert_round_trip(&msg);

    tree_t tree;
    tree_init(&tree, &msg);
    tree_repeat(&tree, "entries", MSG_MAX_ENTRIES + 1);
    assert_tree_rejected(&tree, "entries: 65537 elements, expected 0..65536");
    tree_fini(&tree);
    free(entries);
    assert_no_leaks();
}

/* ---- unknown and duplicate keys ---- */

Test(msg, unknown_keys_ignored)
{
    msg_t msg = sample(MSG_HANDOFF);
    tree_t tree;
    tree_init(&tree, &msg);

    msgpack_object extra[3] = {uint_obj(1), cstr_obj("x"), nil_obj()};
    msgpack_object list = {.type = MSGPACK_OBJECT_ARRAY};
    list.via.array.ptr = extra;
    list.via.array.size = 3;
    tree_add(&tree, "", cstr_obj("future"), list);
    tree_add(&tree, "", uint_obj(5), cstr_obj("a non-str key"));
    tree_add(&tree, "", cstr_obj("resp"), cstr_obj("not used by HANDOFF"));
    tree_add(&tree, "entries.0", cstr_obj("ttl"), uint_obj(3));

    pc_buf_t frame;
    tree_pack(&tree, &frame);
    msg_t decoded;
    char why[WHY_BYTES];
    cr_assert_eq(msg_decode(frame.data, frame.len, &decoded, why, sizeof why),
                 PC_OK, "%s", why);
    assert_msg_equal(&decoded, &msg);
    msg_fini(&decoded);
    buf_fini(&frame);
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, unknown_member_key_ignored)
{
    msg_t msg = sample(MSG_WELCOME);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "members.0", cstr_obj("zone"), cstr_obj("eu-1"));

    char why[WHY_BYTES];
    cr_assert_eq(tree_decode(&tree, why, sizeof why), PC_OK, "%s", why);
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, duplicate_top_key)
{
    msg_t msg = sample(MSG_ACK);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "", cstr_obj("from"), cstr_obj("node9"));
    assert_tree_rejected(&tree, "ACK: from: duplicate key");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, duplicate_version_key)
{
    msg_t msg = sample(MSG_ACK);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "", cstr_obj("v"), uint_obj(MSG_PROTOCOL_VERSION));
    assert_tree_rejected(&tree, "v: duplicate key");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, duplicate_entry_key)
{
    msg_t msg = sample(MSG_REPL);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "entries.0", cstr_obj("hlc"), uint_obj(1));
    assert_tree_rejected(&tree, "REPL: entries[0].hlc: duplicate key");
    tree_fini(&tree);
    assert_no_leaks();
}

Test(msg, duplicate_member_key)
{
    msg_t msg = sample(MSG_SYNC);
    tree_t tree;
    tree_init(&tree, &msg);
    tree_add(&tree, "members.1", cstr_obj("port"), uint_obj(1));
    assert_tree_rejected(&tree, "SYNC: members[1].port: duplicate key");
    tree_fini(&tree);
    assert_no_leaks();
}

/* ---- encoding ---- */

Test(msg, encode_rejects_invalid)
{
    static msg_member_t bad_member;
    static msg_entry_t live_nil;
    static msg_entry_t expired;
    init_samples();
    bad_member = sample_members[0];
    bad_member.state = 0;
    live_nil = sample_entries[1];
    live_nil.tombstone = false;
    expired = sample_entries[0];
    expired.expire_ms = -1;

    msg_t cases[12];
    size_t n = 0;
    cases[n] = sample(MSG_ACK);
    cases[n++].type = (msg_type_t)0;
    cases[n] = sample(MSG_ACK);
    cases[n++].type = MSG__TYPE_COUNT;
    cases[n] = sample(MSG_ACK);
    cases[n++].from = LIT("");
    cases[n] = sample(MSG_ACK);
    cases[n++].from = LIT("node 1");
    cases[n] = sample(MSG_JOIN);
    cases[n++].member_count = 2;
    cases[n] = sample(MSG_JOIN);
    cases[n++].members = &bad_member;
    cases[n] = sample(MSG_REQUEST);
    cases[n++].arg_count = 0;
    cases[n] = sample(MSG_REPL);
    cases[n++].entries = &live_nil;
    cases[n] = sample(MSG_REPL);
    cases[n++].entries = &expired;
    cases[n] = sample(MSG_HANDOFF);
    cases[n++].entry_count = MSG_MAX_ENTRIES + 1;
    cases[n] = sample(MSG_REPLY);
    cases[n++].resp = (msg_bytes_t){NULL, 3};

    for (size_t i = 0; i < n; i++) {
        pc_buf_t out;
        buf_init(&out, BUF_MAX_BYTES);
        cr_assert_eq(msg_encode(&cases[i], &out), PC_ERR_INVALID, "case %zu",
                     i);
        cr_assert_eq(out.len, 0, "case %zu appended bytes", i);
        buf_fini(&out);
    }
    assert_no_leaks();
}

Test(msg, encode_respects_buffer_cap)
{
    msg_t msg = sample(MSG_REQUEST);
    pc_buf_t out;
    buf_init(&out, 16);
    cr_assert_eq(msg_encode(&msg, &out), PC_ERR_TOO_BIG);
    buf_fini(&out);
    assert_no_leaks();
}

Test(msg, encode_appends)
{
    msg_t msg = sample(MSG_ACK);
    pc_buf_t out;
    buf_init(&out, BUF_MAX_BYTES);
    buf_append(&out, "topic", 5);
    cr_assert_eq(msg_encode(&msg, &out), PC_OK);
    cr_assert(memcmp(out.data, "topic", 5) == 0);

    msg_t decoded;
    cr_assert_eq(msg_decode(out.data + 5, out.len - 5, &decoded, NULL, 0),
                 PC_OK);
    cr_assert_eq(decoded.id, 3);
    msg_fini(&decoded);
    buf_fini(&out);
    assert_no_leaks();
}

/* ---- fuzzing ---- */

/* xorshift64*, seeded per test so failures reproduce. */
static uint64_t rng_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dull;
}

/* Decodes fuzz input. A frame that decodes must encode again, because
 * decode and encode apply the same rules. */
static void decode_fuzz_input(const unsigned char *bytes, size_t len)
{
    unsigned char *copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0)
        memcpy(copy, bytes, len);

    msg_t msg;
    pc_err_t err = msg_decode(copy, len, &msg, NULL, 0);
    cr_assert(err == PC_OK || err == PC_ERR_PROTOCOL, "unexpected %s",
              pc_err_name(err));
    if (err == PC_OK) {
        pc_buf_t again;
        buf_init(&again, BUF_MAX_BYTES);
        cr_assert_eq(msg_encode(&msg, &again), PC_OK);
        buf_fini(&again);
    }
    msg_fini(&msg);
    free(copy);
}

Test(msg, fuzz_random_bytes)
{
    uint64_t state = 0x5eed5eed12345678ull;
    unsigned char bytes[96];

    for (int round = 0; round < 20000; round++) {
        size_t len = rng_next(&state) % sizeof bytes;
        for (size_t i = 0; i < len; i++)
            bytes[i] = (unsigned char)rng_next(&state);
        /* Half the inputs start like a message, to get past the first
         * byte. */
        if (len > 0 && round % 2 == 0)
            bytes[0] = (unsigned char)(0x80 | (rng_next(&state) % 16));
        decode_fuzz_input(bytes, len);
    }
    assert_no_leaks();
}

static const unsigned char interesting_bytes[] = {
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2,
    0xc3, 0xc4, 0xc6, 0xc9, 0xcc, 0xcf, 0xd3, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd,
    0xde, 0xdf, 0xe0, 0xff,
};

/* Applies one random edit to bytes[0..*len), which has room for max. */
static void mutate(unsigned char *bytes, size_t *len, size_t max,
                   uint64_t *state)
{
    size_t at = *len > 0 ? rng_next(state) % *len : 0;

    switch (rng_next(state) % 6) {
    case 0:
        if (*len > 0)
            bytes[at] ^= (unsigned char)(1u << (rng_next(state) % 8));
        break;
    case 1:
        if (*len > 0)
            bytes[at] = interesting_bytes[rng_next(state) %
                                          sizeof interesting_bytes];
        break;
    case 2:
        if (*len > 0)
            bytes[at] = (unsigned char)rng_next(state);
        break;
    case 3: /* insert a byte */
        if (*len < max) {
            memmove(bytes + at + 1, bytes + at, *len - at);
            bytes[at] = (unsigned char)rng_next(state);
            (*len)++;
        }
        break;
    case 4: /* delete a byte */
        if (*len > 0) {
            memmove(bytes + at, bytes + at + 1, *len - at - 1);
            (*len)--;
        }
        break;
    default: /* truncate */
        *len = at;
        break;
    }
}

Test(msg, fuzz_mutations)
{
    uint64_t state = 0xfeedfacecafebeefull;
    msg_t samples[SAMPLE_MAX];
    size_t count = all_samples(samples);

    for (size_t s = 0; s < count; s++) {
        pc_buf_t frame;
        encode_ok(&samples[s], &frame);
        size_t max = frame.len + 8;
        unsigned char *bytes = malloc(max);
        cr_assert_not_null(bytes);

        for (int round = 0; round < 2000; round++) {
            size_t len = frame.len;
            memcpy(bytes, frame.data, len);
            int edits = 1 + (int)(rng_next(&state) % 4);
            for (int e = 0; e < edits; e++)
                mutate(bytes, &len, max, &state);
            decode_fuzz_input(bytes, len);
        }
        free(bytes);
        buf_fini(&frame);
    }
    assert_no_leaks();
}
