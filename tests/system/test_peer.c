/* System tests of a node's edges: malformed peer messages on its ROUTER
 * port, malformed or oversized client requests, a stopped owner, a gap in
 * a replication stream, QUIT behind forwarded replies, cluster-wide KEYS
 * and SCAN, and a taken client port. Every node is a real peercached
 * process on 127.0.0.1, and the bad or fake peers are real ZeroMQ
 * sockets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <zmq.h>

#include "harness.h"

#define MALFORMED_WAIT_MS 5000
#define BAD_PEER_ID "bad-peer"

TestSuite(peer, .init = harness_setup, .fini = harness_teardown, .timeout = 120);

static void finish(void)
{
    cr_assert(harness_stop_all(), "a node did not exit with status 0 or "
              "logged a sanitizer report; the harness lines above name it");
    harness_mark_passed();
}

/* Reads one "name:value" integer field from INFO. */
static long long info_field(harness_conn_t *conn, const char *field)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert(harness_cmd_bulk(conn, &text, &len, "INFO", "all", NULL));
    cr_assert_not_null(text);

    char needle[64];
    snprintf(needle, sizeof needle, "\n%s:", field);
    const char *at = strstr(text, needle);
    cr_assert_not_null(at, "INFO has no field %s", field);
    long long value = strtoll(at + strlen(needle), NULL, 10);
    free(text);
    return value;
}

/* Sends each frame as a separate message from a DEALER named
 * BAD_PEER_ID to the node's ROUTER port. */
static void send_bad_frames(const harness_node_t *node, const char *const *frames,
                            const size_t *lens, size_t count)
{
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 2000;
    char endpoint[64];

    cr_assert_not_null(dealer);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_ROUTING_ID, BAD_PEER_ID, strlen(BAD_PEER_ID));
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", node->peer_port);
    cr_assert_eq(zmq_connect(dealer, endpoint), 0);
    for (size_t i = 0; i < count; i++)
        cr_assert_geq(zmq_send(dealer, frames[i], lens[i], 0), 0);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
}

Test(peer, malformed_messages_dropped)
{
    harness_node_t *nodes[1];
    cr_assert(harness_start_cluster(nodes, 1, 2));

    /* Five bad frames: random bytes, an array32 header that claims 4
     * billion elements, a map with a string where the type number
     * belongs, a well-formed map of an unknown type, and a truncated map. */
    static const char garbage[] = "\x01\x02\x03 not msgpack \xc1\xff";
    static const char bomb[] = "\xdd\xff\xff\xff\xff";
    static const char wrong_type[] = "\x83\xa1v\x01\xa4type\xa3" "abc\xa4" "from\xa1x";
    static const char unknown_type[] = "\x83\xa1v\x01\xa4type\x63\xa4" "from\xa1x";
    static const char truncated[] = "\x83\xa1v\x01\xa4type";
    const char *frames[] = {garbage, bomb, wrong_type, unknown_type, truncated};
    const size_t lens[] = {sizeof garbage - 1, sizeof bomb - 1, sizeof wrong_type - 1,
                           sizeof unknown_type - 1, sizeof truncated - 1};
    send_bad_frames(nodes[0], frames, lens, 5);

    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);
    long long deadline = harness_now_ms() + MALFORMED_WAIT_MS;
    long long malformed = 0;
    while ((malformed = info_field(conn, "peer_messages_malformed")) < 5 &&
           harness_now_ms() < deadline)
        harness_sleep_ms(50);
    cr_assert_eq(malformed, 5, "expected 5 malformed peer messages counted, got %lld",
                 malformed);

    /* The node logged the sender's id and still serves clients. */
    cr_assert(harness_log_contains(nodes[0], "peer=" BAD_PEER_ID),
              "the log does not name the peer that sent malformed messages");
    char *ok = harness_cmd_status(conn, "SET", "still", "alive", NULL);
    cr_assert_not_null(ok);
    cr_assert_str_eq(ok, "OK");
    free(ok);
    harness_conn_close(&conn);
    finish();
}

/* Sends raw bytes and returns the first reply line, or "" when the node
 * closed the connection without replying. */
static void raw_exchange(int port, const char *request, size_t len, char *line,
                         size_t line_len, bool *closed)
{
    harness_conn_t *conn = harness_connect(port);
    cr_assert_not_null(conn);
    harness_append_raw(conn, request, len);
    cr_assert(harness_flush(conn));

    char buf[512];
    ssize_t n = harness_read_raw(conn, buf, sizeof buf - 1);
    cr_assert_gt(n, 0, "no reply to a malformed request");
    buf[n] = '\0';
    char *end = strstr(buf, "\r\n");
    if (end != NULL)
        *end = '\0';
    size_t copy = strlen(buf) < line_len - 1 ? strlen(buf) : line_len - 1;
    memcpy(line, buf, copy);
    line[copy] = '\0';

    /* After a protocol error the node closes the connection. */
    char rest[64];
    *closed = harness_read_raw(conn, rest, sizeof rest) == 0;
    harness_conn_close(&conn);
}

Test(peer, client_protocol_errors)
{
    harness_node_t *nodes[1];
    char line[256];
    bool closed = false;
    cr_assert(harness_start_cluster(nodes, 1, 2));

    static const struct {
        const char *request;
        const char *reply;
    } cases[] = {
        {"*1\r\n$536870913\r\n", "-ERR Protocol error: invalid bulk length"},
        {"*99999999999\r\n", "-ERR Protocol error: invalid multibulk length"},
        {"*1\r\nGET\r\n", "-ERR Protocol error: expected '$', got 'G'"},
        {"SET \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        raw_exchange(nodes[0]->port, cases[i].request, strlen(cases[i].request), line,
                     sizeof line, &closed);
        cr_assert_str_eq(line, cases[i].reply, "request %zu", i);
        cr_assert(closed, "connection left open after '%s'", cases[i].reply);
    }

    /* The node still serves a well-formed request afterwards. */
    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);
    char *pong = harness_cmd_status(conn, "PING", NULL);
    cr_assert_not_null(pong);
    cr_assert_str_eq(pong, "PONG");
    free(pong);
    harness_conn_close(&conn);
    finish();
}

Test(peer, command_errors_redis_wording)
{
    harness_node_t *nodes[2];
    cr_assert(harness_start_cluster(nodes, 2, 2));
    harness_conn_t *conn = harness_connect(nodes[1]->port);
    cr_assert_not_null(conn);

    static const struct {
        const char *argv[4];
        size_t argc;
        const char *error;
    } cases[] = {
        {{"NOSUCH", "a"}, 2, "ERR unknown command 'NOSUCH', with args beginning with: 'a' "},
        {{"GET"}, 1, "ERR wrong number of arguments for 'get' command"},
        {{"MSET", "a", "1", "b"}, 4, "ERR wrong number of arguments for 'mset' command"},
        {{"SET", "k", "v", "BOGUS"}, 4, "ERR syntax error"},
        {{"HELLO", "3"}, 2, "NOPROTO unsupported protocol version"},
        {{"SELECT", "1"}, 2, "ERR DB index is out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        harness_reply_t *reply = harness_cmdv(conn, cases[i].argc, cases[i].argv, NULL);
        cr_assert_not_null(reply);
        cr_assert_eq(reply->type, '-', "case %zu: expected an error", i);
        cr_assert_str_eq(reply->str, cases[i].error, "case %zu", i);
        harness_reply_free(reply);
    }

    /* INCR of a non-integer, wherever the key's primary is. */
    char *ok = harness_cmd_status(conn, "SET", "text", "abc", NULL);
    cr_assert_not_null(ok);
    free(ok);
    harness_reply_t *reply = harness_cmd(conn, "INCR", "text", NULL);
    cr_assert_not_null(reply);
    cr_assert_str_eq(reply->str, "ERR value is not an integer or out of range");
    harness_reply_free(reply);

    harness_conn_close(&conn);
    finish();
}

#define LARGE_VALUE_BYTES (4u * 1024 * 1024)

Test(peer, large_value_across_nodes)
{
    harness_node_t *nodes[3];
    cr_assert(harness_start_cluster(nodes, 3, 2));

    char *value = malloc(LARGE_VALUE_BYTES);
    cr_assert_not_null(value);
    for (size_t i = 0; i < LARGE_VALUE_BYTES; i++)
        value[i] = (char)(i * 131u + 7u);

    /* Several keys, so that some primaries are remote from node 1. */
    harness_conn_t *writer = harness_connect(nodes[0]->port);
    cr_assert_not_null(writer);
    for (int k = 0; k < 4; k++) {
        char key[16];
        snprintf(key, sizeof key, "big:%d", k);
        const char *argv[] = {"SET", key, value};
        const size_t lens[] = {3, strlen(key), LARGE_VALUE_BYTES};
        harness_reply_t *reply = harness_cmdv(writer, 3, argv, lens);
        cr_assert_not_null(reply);
        cr_assert_eq(reply->type, '+', "SET %s: %s", key, reply->str ? reply->str : "");
        harness_reply_free(reply);
    }

    harness_conn_t *reader = harness_connect(nodes[2]->port);
    cr_assert_not_null(reader);
    for (int k = 0; k < 4; k++) {
        char key[16];
        snprintf(key, sizeof key, "big:%d", k);
        char *data = NULL;
        size_t len = 0;
        long long deadline = harness_now_ms() + 5000;
        do {
            free(data);
            cr_assert(harness_cmd_bulk(reader, &data, &len, "GET", key, NULL));
        } while (data == NULL && harness_now_ms() < deadline);
        cr_assert_not_null(data, "%s not readable through node3", key);
        cr_assert_eq(len, LARGE_VALUE_BYTES);
        cr_assert(memcmp(data, value, LARGE_VALUE_BYTES) == 0, "%s differs", key);
        free(data);
    }
    free(value);
    harness_conn_close(&writer);
    harness_conn_close(&reader);
    finish();
}

#define OWNER_KEYS 300

/* With no failure detection yet, a stopped node stays a member. Reads of
 * its keys must still succeed through the other owner, and writes for
 * which it is the primary must fail with an error, not hang. */
Test(peer, reads_survive_stopped_owner)
{
    harness_node_t *nodes[3];
    cr_assert(harness_start_cluster(nodes, 3, 2));

    harness_conn_t *writer = harness_connect(nodes[0]->port);
    cr_assert_not_null(writer);
    for (int i = 0; i < OWNER_KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "owned:%d", i);
        char *ok = harness_cmd_status(writer, "SET", key, key, NULL);
        cr_assert_not_null(ok, "SET %s failed", key);
        free(ok);
    }
    harness_conn_close(&writer);

    /* Replication is asynchronous: wait until every copy has landed. */
    long long deadline = harness_now_ms() + 5000;
    long long total = 0;
    while (harness_now_ms() < deadline) {
        total = 0;
        for (int n = 0; n < 3; n++) {
            harness_conn_t *conn = harness_connect(nodes[n]->port);
            long long keys = 0;
            cr_assert_not_null(conn);
            cr_assert(harness_cmd_int(conn, &keys, "DBSIZE", NULL));
            total += keys;
            harness_conn_close(&conn);
        }
        if (total == 2 * OWNER_KEYS)
            break;
        harness_sleep_ms(50);
    }
    cr_assert_eq(total, 2 * OWNER_KEYS, "DBSIZE sum %lld, expected %d", total, 2 * OWNER_KEYS);

    int status = -1;
    cr_assert(harness_node_stop(nodes[1], HARNESS_STOP_TIMEOUT_MS, &status));

    for (int n = 0; n < 3; n += 2) {
        harness_conn_t *conn = harness_connect(nodes[n]->port);
        cr_assert_not_null(conn);
        for (int i = 0; i < OWNER_KEYS; i++) {
            char key[32];
            char *data = NULL;
            size_t len = 0;
            snprintf(key, sizeof key, "owned:%d", i);
            cr_assert(harness_cmd_bulk(conn, &data, &len, "GET", key, NULL),
                      "GET %s through %s failed with node2 stopped", key, nodes[n]->id);
            cr_assert_not_null(data, "%s missing through %s", key, nodes[n]->id);
            cr_assert_str_eq(data, key);
            free(data);
        }
        harness_conn_close(&conn);
    }

    /* Some of these keys have node2 as primary: their writes fail. */
    int written_failures = 0;
    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "owned:%d", i);
        harness_reply_t *reply = harness_cmd(conn, "SET", key, "new", NULL);
        cr_assert_not_null(reply, "SET %s got no reply", key);
        if (reply->type == '-') {
            cr_assert(strstr(reply->str, "node2") != NULL,
                      "unexpected error for %s: %s", key, reply->str);
            written_failures++;
        }
        harness_reply_free(reply);
    }
    cr_assert_gt(written_failures, 0, "no write was routed to the stopped primary");

    /* KEYS lists what the reachable members own instead of failing. */
    harness_reply_t *keys = harness_cmd(conn, "KEYS", "owned:*", NULL);
    cr_assert_not_null(keys);
    cr_assert_eq(keys->type, '*', "KEYS failed: %s", keys->str ? keys->str : "");
    cr_assert_gt(keys->count, 0);
    cr_assert_lt(keys->count, OWNER_KEYS);
    harness_reply_free(keys);

    /* FLUSHALL runs on the members it reaches and reports how many. */
    harness_reply_t *flush = harness_cmd(conn, "FLUSHALL", NULL);
    cr_assert_not_null(flush);
    cr_assert_eq(flush->type, '-');
    cr_assert(strstr(flush->str, "flushall ran on 2 of 3 members") != NULL, "%s",
              flush->str);
    harness_reply_free(flush);
    harness_conn_close(&conn);
    finish();
}

/* ---- a fake member that publishes a stream with a gap ---- */

#include "msg.h"

typedef struct fake_member {
    void *ctx;
    void *router;
    void *pub;
    void *dealer;
    int router_port;
    int pub_port;
} fake_member_t;

static int bind_ephemeral(void *socket)
{
    char endpoint[128];
    size_t len = sizeof endpoint;
    cr_assert_eq(zmq_bind(socket, "tcp://127.0.0.1:*"), 0);
    cr_assert_eq(zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, endpoint, &len), 0);
    const char *colon = strrchr(endpoint, ':');
    cr_assert_not_null(colon);
    return atoi(colon + 1);
}

static void fake_send(void *socket, const msg_t *msg, const char *topic)
{
    pc_buf_t out;
    buf_init(&out, 1u << 20);
    cr_assert_eq(msg_encode(msg, &out), PC_OK);
    if (topic != NULL)
        cr_assert_geq(zmq_send(socket, topic, strlen(topic) + 1, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(socket, out.data, out.len, 0), 0);
    buf_fini(&out);
}

static void fake_join(fake_member_t *fake, const harness_node_t *node)
{
    int linger = 0;
    char endpoint[64];

    fake->ctx = zmq_ctx_new();
    fake->router = zmq_socket(fake->ctx, ZMQ_ROUTER);
    fake->pub = zmq_socket(fake->ctx, ZMQ_PUB);
    fake->dealer = zmq_socket(fake->ctx, ZMQ_DEALER);
    zmq_setsockopt(fake->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fake->pub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fake->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fake->dealer, ZMQ_ROUTING_ID, "fake", 4);
    fake->router_port = bind_ephemeral(fake->router);
    fake->pub_port = bind_ephemeral(fake->pub);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", node->peer_port);
    cr_assert_eq(zmq_connect(fake->dealer, endpoint), 0);

    msg_member_t self = {
        .id = {"fake", 4}, .host = {"127.0.0.1", 9},
        .port = 1, .peer_port = (uint16_t)fake->router_port,
        .pub_port = (uint16_t)fake->pub_port, .state = MSG_STATE_UP,
        .incarnation = 1,
    };
    msg_t join = {.type = MSG_JOIN, .from = {"fake", 4}, .members = &self,
                  .member_count = 1};
    fake_send(fake->dealer, &join, NULL);
}

static void fake_close(fake_member_t *fake)
{
    zmq_close(fake->router);
    zmq_close(fake->pub);
    zmq_close(fake->dealer);
    zmq_ctx_term(fake->ctx);
}

static void fake_publish_at(fake_member_t *fake, const char *topic, uint64_t seq,
                            const char *key, uint64_t wall_ms)
{
    msg_entry_t entry = {.key = {key, strlen(key)}, .value = {"v", 1},
                         .hlc = wall_ms << 16, .origin = 7};
    msg_t repl = {.type = MSG_REPL, .from = {"fake", 4}, .epoch = 42, .seq = seq,
                  .entries = &entry, .entry_count = 1};
    fake_send(fake->pub, &repl, topic);
}

static void fake_publish(fake_member_t *fake, const char *topic, uint64_t seq,
                         const char *key)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t wall_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    fake_publish_at(fake, topic, seq, key, wall_ms);
}

/* Waits for a message of the given type on the fake's ROUTER. */
static bool fake_expect(fake_member_t *fake, msg_type_t type, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < deadline) {
        zmq_pollitem_t item = {.socket = fake->router, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, 100) <= 0)
            continue;
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        zmq_msg_recv(&id, fake->router, 0);
        zmq_msg_recv(&body, fake->router, 0);
        msg_t msg;
        char why[160];
        bool match = msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg, why,
                                sizeof why) == PC_OK && msg.type == type;
        msg_fini(&msg);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        if (match)
            return true;
    }
    return false;
}

/* Joins the fake to the node, then publishes seq 1 until the node's
 * subscription has caught it, since PUB/SUB drops what is sent before a
 * subscription completes. Returns a client connection to the node. */
static harness_conn_t *fake_join_subscribed(fake_member_t *fake, const harness_node_t *node,
                                            const char *topic)
{
    fake_join(fake, node);
    harness_conn_t *conn = harness_connect(node->port);
    cr_assert_not_null(conn);
    long long deadline = harness_now_ms() + 10000;
    while (info_field(conn, "repl_applied") < 1 && harness_now_ms() < deadline) {
        fake_publish(fake, topic, 1, "fake:first");
        harness_sleep_ms(50);
    }
    cr_assert_geq(info_field(conn, "repl_applied"), 1, "no REPL from the fake was applied");
    return conn;
}

Test(peer, stream_gap_requests_resync)
{
    harness_node_t *nodes[1];
    fake_member_t fake = {0};
    char topic[40];
    cr_assert(harness_start_cluster(nodes, 1, 2));
    snprintf(topic, sizeof topic, "%s", nodes[0]->id);

    harness_conn_t *conn = fake_join_subscribed(&fake, nodes[0], topic);

    /* Seq 2 to 4 never arrive: the node must notice and ask for a resync. */
    fake_publish(&fake, topic, 5, "gap:after");
    cr_assert(fake_expect(&fake, MSG_SYNC, 5000), "no SYNC after a stream gap");
    cr_assert_eq(info_field(conn, "repl_gaps"), 3);
    cr_assert_eq(info_field(conn, "resyncs_requested"), 1);

    harness_conn_close(&conn);
    fake_close(&fake);
    finish();
}

#define QUIT_KEYS 50

/* QUIT after pipelined writes, some forwarded to other primaries: every
 * reply arrives, in order, before the node closes the connection. */
Test(peer, quit_waits_for_forwarded_replies)
{
    harness_node_t *nodes[3];
    cr_assert(harness_start_cluster(nodes, 3, 2));
    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);

    for (int i = 0; i < QUIT_KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "quit:%d", i);
        const char *argv[] = {"INCRBY", key, "7"};
        harness_append(conn, 3, argv, NULL);
    }
    const char *quit[] = {"QUIT"};
    harness_append(conn, 1, quit, NULL);
    cr_assert(harness_flush(conn));

    for (int i = 0; i < QUIT_KEYS; i++) {
        harness_reply_t *reply = harness_read(conn);
        cr_assert_not_null(reply, "reply %d missing", i);
        cr_assert_eq(reply->type, ':', "reply %d: %s", i, reply->str ? reply->str : "");
        cr_assert_eq(reply->integer, 7);
        harness_reply_free(reply);
    }
    harness_reply_t *reply = harness_read(conn);
    cr_assert_not_null(reply, "no reply to QUIT");
    cr_assert_str_eq(reply->str, "OK");
    harness_reply_free(reply);

    char rest[16];
    cr_assert_eq(harness_read_raw(conn, rest, sizeof rest), 0,
                 "the connection stayed open after QUIT");
    harness_conn_close(&conn);
    finish();
}

#define LISTED_KEYS 60

/* Counts the elements of an array reply that equal name. */
static size_t count_named(const harness_reply_t *array, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < array->count; i++)
        n += strcmp(array->elements[i]->str, name) == 0;
    return n;
}

/* KEYS and SCAN go to every member, and each member lists only the keys
 * it is the first owner of. Every key therefore appears once, although
 * it has replicas. */
Test(peer, keys_and_scan_list_each_key_once)
{
    harness_node_t *nodes[3];
    cr_assert(harness_start_cluster(nodes, 3, 2));
    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);
    for (int i = 0; i < LISTED_KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "listed:%d", i);
        char *ok = harness_cmd_status(conn, "SET", key, "v", NULL);
        cr_assert_not_null(ok);
        free(ok);
    }
    char *ok = harness_cmd_status(conn, "SET", "unlisted", "v", NULL);
    cr_assert_not_null(ok);
    free(ok);
    harness_conn_close(&conn);

    conn = harness_connect(nodes[2]->port);
    cr_assert_not_null(conn);
    harness_reply_t *keys = harness_cmd(conn, "KEYS", "listed:*", NULL);
    cr_assert_not_null(keys);
    cr_assert_eq(keys->type, '*');
    cr_assert_eq(keys->count, LISTED_KEYS, "KEYS listed %zu keys", keys->count);
    for (int i = 0; i < LISTED_KEYS; i++) {
        char key[32];
        snprintf(key, sizeof key, "listed:%d", i);
        cr_assert_eq(count_named(keys, key), 1, "%s listed %zu times", key,
                     count_named(keys, key));
    }
    harness_reply_free(keys);

    /* One SCAN call returns everything, with cursor 0. */
    harness_reply_t *scan = harness_cmd(conn, "SCAN", "0", "MATCH", "listed:1?", "COUNT",
                                        "5", NULL);
    cr_assert_not_null(scan);
    cr_assert_eq(scan->count, 2);
    cr_assert_str_eq(scan->elements[0]->str, "0");
    cr_assert_eq(scan->elements[1]->count, 10, "SCAN MATCH listed:1? returned %zu keys",
                 scan->elements[1]->count);
    harness_reply_free(scan);

    harness_reply_t *bad = harness_cmd(conn, "SCAN", "abc", NULL);
    cr_assert_not_null(bad);
    cr_assert_str_eq(bad->str, "ERR invalid cursor");
    harness_reply_free(bad);
    harness_conn_close(&conn);
    finish();
}

/* A second node on a client port that is taken exits at once with an
 * error instead of sharing the port. */
Test(peer, client_port_clash_fails)
{
    harness_node_t *nodes[1];
    cr_assert(harness_start_cluster(nodes, 1, 2));

    harness_node_t *intruder = harness_node_add("intruder", 2, NULL);
    cr_assert_not_null(intruder);
    intruder->port = nodes[0]->port;
    cr_assert(harness_node_start(intruder));

    int status = -1;
    long long deadline = harness_now_ms() + 5000;
    pid_t done = 0;
    while (done == 0 && harness_now_ms() < deadline) {
        done = waitpid(intruder->pid, &status, WNOHANG);
        if (done == 0)
            harness_sleep_ms(20);
    }
    cr_assert_eq(done, intruder->pid, "the second node kept running on a taken port");
    intruder->pid = 0;
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 1);
    cr_assert(harness_log_contains(intruder, "cannot bind the client port"));

    harness_conn_t *conn = harness_connect(nodes[0]->port);
    cr_assert_not_null(conn);
    char *id = NULL;
    size_t len = 0;
    cr_assert(harness_cmd_bulk(conn, &id, &len, "CLUSTER", "MYID", NULL));
    cr_assert_str_eq(id, "node1");
    free(id);
    harness_conn_close(&conn);
    finish();
}

#define SLOW_VALUE_BYTES (256u * 1024)
#define SLOW_REQUESTS 2000

/* A client that pipelines many large reads and never reads the replies
 * must not hold up another client: the node stops reading from the slow
 * one once its unsent output passes a limit, and keeps serving the rest. */
Test(peer, slow_reader_does_not_stall_others)
{
    harness_node_t *nodes[1];
    cr_assert(harness_start_cluster(nodes, 1, 2));

    char *value = malloc(SLOW_VALUE_BYTES);
    cr_assert_not_null(value);
    memset(value, 'x', SLOW_VALUE_BYTES);
    harness_conn_t *fast = harness_connect(nodes[0]->port);
    cr_assert_not_null(fast);
    const char *set_argv[] = {"SET", "big", value};
    const size_t set_lens[] = {3, 3, SLOW_VALUE_BYTES};
    harness_reply_t *reply = harness_cmdv(fast, 3, set_argv, set_lens);
    cr_assert_not_null(reply);
    harness_reply_free(reply);
    free(value);

    /* 2000 GETs would produce 500 MiB of replies; the slow client sends
     * them all and reads nothing. */
    harness_conn_t *slow = harness_connect(nodes[0]->port);
    cr_assert_not_null(slow);
    for (int i = 0; i < SLOW_REQUESTS; i++) {
        const char *get_argv[] = {"GET", "big"};
        harness_append(slow, 2, get_argv, NULL);
    }
    cr_assert(harness_flush(slow));

    for (int i = 0; i < 100; i++) {
        char *pong = harness_cmd_status(fast, "PING", NULL);
        cr_assert_not_null(pong, "PING %d failed while another client lagged", i);
        free(pong);
    }

    /* The node held back rather than buffering every reply. */
    harness_conn_t *probe = harness_connect(nodes[0]->port);
    cr_assert_not_null(probe);
    long long processed = info_field(probe, "total_commands_processed");
    cr_assert_lt(processed, SLOW_REQUESTS, "all %lld commands ran although the client "
                 "read nothing", processed);
    harness_conn_close(&probe);
    harness_conn_close(&slow);
    harness_conn_close(&fast);
    finish();
}

/* A replicated version two hours ahead of the node's clock would drag
 * the clock along and win every later write, so it is dropped and
 * counted as malformed. */
Test(peer, future_version_rejected)
{
    harness_node_t *nodes[1];
    fake_member_t fake = {0};
    char topic[40];
    cr_assert(harness_start_cluster(nodes, 1, 2));
    snprintf(topic, sizeof topic, "%s", nodes[0]->id);

    harness_conn_t *conn = fake_join_subscribed(&fake, nodes[0], topic);
    long long applied = info_field(conn, "repl_applied");
    long long keys = 0;
    cr_assert(harness_cmd_int(conn, &keys, "DBSIZE", NULL));

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t two_hours_ahead = ((uint64_t)now.tv_sec + 7200) * 1000;
    fake_publish_at(&fake, topic, 2, "clock:future", two_hours_ahead);

    long long deadline = harness_now_ms() + 5000;
    while (info_field(conn, "peer_messages_malformed") < 1 && harness_now_ms() < deadline)
        harness_sleep_ms(50);
    cr_assert_eq(info_field(conn, "peer_messages_malformed"), 1);
    cr_assert_eq(info_field(conn, "repl_applied"), applied);
    long long after = 0;
    cr_assert(harness_cmd_int(conn, &after, "DBSIZE", NULL));
    cr_assert_eq(after, keys, "the future entry was stored");
    cr_assert(harness_log_contains(nodes[0], "ahead of this node's clock"));

    harness_conn_close(&conn);
    fake_close(&fake);
    finish();
}
