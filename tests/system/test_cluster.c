/* System tests: real peercached processes on 127.0.0.1, spoken to over
 * RESP. Each test starts its own nodes (--replicas 2, --threads 2) and
 * ends with finish(), which stops them and fails the test unless every
 * node exits with status 0 and logs no sanitizer report. Replication is asynchronous, so checks that
 * read through a node holding a replica poll until a generous deadline
 * instead of expecting the value at once. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#define REPLICAS 2
#define CONVERGE_TIMEOUT_MS 5000
#define JOIN_SETTLE_TIMEOUT_MS 20000
#define JOIN_READER_MAX_MS 30000
#define NAME_BYTES 48
#define REPORT_BYTES 256

TestSuite(cluster, .init = harness_setup, .fini = harness_teardown,
          .timeout = 240);

/* Stops every node and fails unless each exited with status 0, so a
 * crash or a sanitizer report in any node fails the test that caused it. */
static void finish(void)
{
    cr_assert(harness_stop_all(),
              "a node failed to exit with status 0 after SIGTERM or logged a "
              "sanitizer report; the harness lines above name it");
    harness_mark_passed();
}

static harness_conn_t *connect_node(const harness_node_t *node)
{
    harness_conn_t *conn = harness_connect(node->port);

    cr_assert_not_null(conn, "cannot connect to %s on port %d", node->id,
                       node->port);
    return conn;
}

static void make_key(char *out, const char *prefix, size_t i)
{
    snprintf(out, NAME_BYTES, "%s:%zu", prefix, i);
}

static void make_value(char *out, const char *prefix, size_t i)
{
    snprintf(out, NAME_BYTES, "%s-value-%zu", prefix, i);
}

/* ---- writing and reading key ranges --------------------------------- */

typedef struct set_args {
    char key[NAME_BYTES];
    char value[NAME_BYTES];
    const char *argv[3];
} set_args_t;

/* Sets prefix:0 .. prefix:count-1 with pipelining. Returns how many
 * replies were +OK. */
static size_t write_keys(harness_conn_t *conn, const char *prefix,
                         size_t count)
{
    set_args_t *args = calloc(count, sizeof(*args));
    harness_command_t *commands = calloc(count, sizeof(*commands));
    harness_reply_t **replies = calloc(count, sizeof(*replies));
    size_t ok = 0;

    cr_assert(args != NULL && commands != NULL && replies != NULL);
    for (size_t i = 0; i < count; i++) {
        make_key(args[i].key, prefix, i);
        make_value(args[i].value, prefix, i);
        args[i].argv[0] = "SET";
        args[i].argv[1] = args[i].key;
        args[i].argv[2] = args[i].value;
        commands[i] = (harness_command_t){3, args[i].argv, NULL};
    }

    harness_pipeline(conn, count, commands, replies);
    for (size_t i = 0; i < count; i++) {
        if (replies[i] != NULL && replies[i]->type == '+' &&
            strcmp(replies[i]->str, "OK") == 0)
            ok++;
        harness_reply_free(replies[i]);
    }
    free(replies);
    free(commands);
    free(args);
    return ok;
}

/* Writes a short description of a reply for failure messages. */
static void describe_reply(const harness_reply_t *reply, char *out,
                           size_t cap)
{
    if (reply == NULL)
        snprintf(out, cap, "no reply");
    else if (reply->type == '$' && reply->str == NULL)
        snprintf(out, cap, "nil");
    else if (reply->str != NULL)
        snprintf(out, cap, "'%c' \"%.60s\"", reply->type, reply->str);
    else
        snprintf(out, cap, "'%c' %lld", reply->type, reply->integer);
}

/* Compares one reply with the value written for key i. Describes the
 * first mismatch in report when report[0] is still empty. */
static bool value_matches(const harness_reply_t *reply, const char *prefix,
                          size_t i, char *report)
{
    char expected[NAME_BYTES];
    char got[96];

    make_value(expected, prefix, i);
    if (reply != NULL && reply->type == '$' && reply->str != NULL &&
        strcmp(reply->str, expected) == 0)
        return true;

    if (report[0] == '\0') {
        describe_reply(reply, got, sizeof(got));
        snprintf(report, REPORT_BYTES, "%s:%zu: expected \"%s\", got %s",
                 prefix, i, expected, got);
    }
    return false;
}

/* Reads prefix:0 .. count-1 with pipelined GETs and returns how many do
 * not hold their written value. */
static size_t count_unreadable_get(harness_conn_t *conn, const char *prefix,
                                   size_t count, char *report)
{
    char (*keys)[NAME_BYTES] = calloc(count, NAME_BYTES);
    const char *(*argv)[2] = calloc(count, sizeof(*argv));
    harness_command_t *commands = calloc(count, sizeof(*commands));
    harness_reply_t **replies = calloc(count, sizeof(*replies));
    size_t bad = 0;

    cr_assert(keys != NULL && argv != NULL && commands != NULL &&
              replies != NULL);
    for (size_t i = 0; i < count; i++) {
        make_key(keys[i], prefix, i);
        argv[i][0] = "GET";
        argv[i][1] = keys[i];
        commands[i] = (harness_command_t){2, argv[i], NULL};
    }

    harness_pipeline(conn, count, commands, replies);
    for (size_t i = 0; i < count; i++) {
        if (!value_matches(replies[i], prefix, i, report))
            bad++;
        harness_reply_free(replies[i]);
    }
    free(replies);
    free(commands);
    free(argv);
    free(keys);
    return bad;
}

/* Reads prefix:0 .. count-1 with one MGET and returns how many do not
 * hold their written value. */
static size_t count_unreadable_mget(harness_conn_t *conn, const char *prefix,
                                    size_t count, char *report)
{
    char (*keys)[NAME_BYTES] = calloc(count, NAME_BYTES);
    const char **argv = calloc(count + 1, sizeof(*argv));
    harness_reply_t *reply;
    size_t bad = 0;

    cr_assert(keys != NULL && argv != NULL);
    argv[0] = "MGET";
    for (size_t i = 0; i < count; i++) {
        make_key(keys[i], prefix, i);
        argv[i + 1] = keys[i];
    }

    reply = harness_cmdv(conn, count + 1, argv, NULL);
    if (reply == NULL || reply->type != '*' || reply->count != count) {
        snprintf(report, REPORT_BYTES, "MGET of %zu keys got no array of %zu",
                 count, count);
        bad = count;
    } else {
        for (size_t i = 0; i < count; i++)
            bad += !value_matches(reply->elements[i], prefix, i, report);
    }
    harness_reply_free(reply);
    free(argv);
    free(keys);
    return bad;
}

/* Polls until every key of the range reads back through node, or the
 * deadline passes. Returns the count still unreadable at the last try. */
static size_t wait_readable(const harness_node_t *node, const char *prefix,
                            size_t count, bool use_mget, int timeout_ms,
                            char *report)
{
    harness_conn_t *conn = connect_node(node);
    long long deadline = harness_now_ms() + timeout_ms;
    size_t bad;

    for (;;) {
        report[0] = '\0';
        bad = use_mget ? count_unreadable_mget(conn, prefix, count, report)
                       : count_unreadable_get(conn, prefix, count, report);
        if (bad == 0 || harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(100);
    }
    harness_conn_close(&conn);
    return bad;
}

/* ---- whole-cluster checks ------------------------------------------- */

/* Returns the sum of DBSIZE over the nodes, or -1 if one did not reply. */
static long long dbsize_sum(harness_node_t *const *nodes, size_t count)
{
    long long sum = 0;

    for (size_t i = 0; i < count; i++) {
        harness_conn_t *conn = harness_connect(nodes[i]->port);
        long long size = -1;
        bool ok = conn != NULL &&
                  harness_cmd_int(conn, &size, "DBSIZE", NULL);

        harness_conn_close(&conn);
        if (!ok)
            return -1;
        sum += size;
    }
    return sum;
}

/* Polls the DBSIZE sum until it equals expected or the deadline passes,
 * and returns the last sum seen. */
static long long wait_dbsize_sum(harness_node_t *const *nodes, size_t count,
                                 long long expected, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    long long sum;

    for (;;) {
        sum = dbsize_sum(nodes, count);
        if (sum == expected || harness_now_ms() >= deadline)
            return sum;
        harness_sleep_ms(100);
    }
}

/* Polls until GET key returns nil through the node, or the deadline
 * passes. Returns whether it did. */
static bool wait_key_gone(const harness_node_t *node, const char *key,
                          size_t key_len, int timeout_ms)
{
    harness_conn_t *conn = connect_node(node);
    const char *argv[] = {"GET", key};
    const size_t lens[] = {3, key_len};
    long long deadline = harness_now_ms() + timeout_ms;
    bool gone = false;

    for (;;) {
        harness_reply_t *reply = harness_cmdv(conn, 2, argv, lens);

        gone = reply != NULL && reply->type == '$' && reply->str == NULL;
        harness_reply_free(reply);
        if (gone || harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(50);
    }
    harness_conn_close(&conn);
    return gone;
}

/* Polls until GET key through the node returns a value, or the deadline
 * passes. Returns the reply, which may be nil; NULL after a read failed. */
static harness_reply_t *wait_key_present(const harness_node_t *node,
                                         const char *key, size_t key_len,
                                         int timeout_ms)
{
    harness_conn_t *conn = connect_node(node);
    const char *argv[] = {"GET", key};
    const size_t lens[] = {3, key_len};
    long long deadline = harness_now_ms() + timeout_ms;
    harness_reply_t *reply;

    for (;;) {
        reply = harness_cmdv(conn, 2, argv, lens);
        if (reply == NULL || reply->str != NULL ||
            harness_now_ms() >= deadline)
            break;
        harness_reply_free(reply);
        harness_sleep_ms(50);
    }
    harness_conn_close(&conn);
    return reply;
}

/* Polls GET key through the node until it returns expected or the
 * deadline passes. Returns the last value as a malloc'd string, or NULL
 * for nil or a failed read. */
static char *wait_value(const harness_node_t *node, const char *key,
                        const char *expected, int timeout_ms)
{
    harness_conn_t *conn = connect_node(node);
    long long deadline = harness_now_ms() + timeout_ms;
    char *value = NULL;

    for (;;) {
        size_t len = 0;

        free(value);
        value = NULL;
        if (!harness_cmd_bulk(conn, &value, &len, "GET", key, NULL))
            break;
        if ((value != NULL && strcmp(value, expected) == 0) ||
            harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(50);
    }
    harness_conn_close(&conn);
    return value;
}

/* ---- tests ---------------------------------------------------------- */

Test(cluster, write_one_read_other)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char report[REPORT_BYTES] = "";
    size_t unreadable;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));

    for (size_t i = 0; i < 3; i++) {
        harness_reply_t *info;

        conn = connect_node(nodes[i]);
        info = harness_cmd(conn, "INFO", "cluster", NULL);
        cr_assert(info != NULL && info->type == '$' && info->str != NULL,
                  "INFO cluster on %s returned no bulk string", nodes[i]->id);
        cr_assert_not_null(strstr(info->str, "cluster_members:3"),
                           "INFO cluster on %s lacks cluster_members:3:\n%s",
                           nodes[i]->id, info->str);
        harness_reply_free(info);
        harness_conn_close(&conn);
    }

    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "key", 1000), 1000);
    harness_conn_close(&conn);

    unreadable = wait_readable(nodes[2], "key", 1000, false,
                               CONVERGE_TIMEOUT_MS, report);
    cr_assert_eq(unreadable, 0, "%zu keys unreadable through node3; first: %s",
                 unreadable, report);
    finish();
}

Test(cluster, dbsize_counts_replicas)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    long long sum;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));

    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "key", 1000), 1000);
    harness_conn_close(&conn);

    sum = wait_dbsize_sum(nodes, 3, 2000, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 2000, "DBSIZE sum is %lld, expected 2 copies of 1000",
                 sum);

    for (size_t i = 0; i < 3; i++) {
        long long size = -1;

        conn = connect_node(nodes[i]);
        cr_assert(harness_cmd_int(conn, &size, "DBSIZE", NULL));
        cr_assert_gt(size, 0, "%s holds no keys", nodes[i]->id);
        cr_assert_lt(size, 1000, "%s holds all %lld keys", nodes[i]->id,
                     size);
        harness_conn_close(&conn);
    }
    finish();
}

Test(cluster, del_removes_everywhere)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    long long deleted = -1;
    long long sum;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "key", 100), 100);
    harness_conn_close(&conn);
    sum = wait_dbsize_sum(nodes, 3, 200, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 200, "DBSIZE sum before DEL is %lld", sum);

    conn = connect_node(nodes[1]);
    cr_assert(harness_cmd_int(conn, &deleted, "DEL", "key:7", NULL));
    cr_assert_eq(deleted, 1);

    for (size_t i = 0; i < 3; i++)
        cr_assert(wait_key_gone(nodes[i], "key:7", 5, CONVERGE_TIMEOUT_MS),
                  "key:7 still readable through %s after DEL", nodes[i]->id);
    sum = wait_dbsize_sum(nodes, 3, 198, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 198, "DBSIZE sum after DEL is %lld, expected 198", sum);

    cr_assert(harness_cmd_int(conn, &deleted, "DEL", "key:7", NULL));
    cr_assert_eq(deleted, 0, "a second DEL of key:7 deleted %lld", deleted);
    harness_conn_close(&conn);
    finish();
}

Test(cluster, px_expires_everywhere)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char *status;
    size_t nodes_with_value = 0;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    status = harness_cmd_status(conn, "SET", "short", "lived", "PX", "300",
                                NULL);
    cr_assert_not_null(status);
    cr_assert_str_eq(status, "OK");
    free(status);
    harness_conn_close(&conn);

    /* The primary applies the write before replying, and a node that owns
     * no copy forwards to the primary, so at least one node reads it. */
    for (size_t i = 0; i < 3; i++) {
        char *value = NULL;
        size_t len = 0;

        conn = connect_node(nodes[i]);
        cr_assert(harness_cmd_bulk(conn, &value, &len, "GET", "short", NULL));
        nodes_with_value += value != NULL && strcmp(value, "lived") == 0;
        free(value);
        harness_conn_close(&conn);
    }
    cr_assert(nodes_with_value >= 1, "no node returned the key just set");

    harness_sleep_ms(400);
    for (size_t i = 0; i < 3; i++) {
        char *value = NULL;
        size_t len = 0;
        long long exists = -1;

        conn = connect_node(nodes[i]);
        cr_assert(harness_cmd_bulk(conn, &value, &len, "GET", "short", NULL));
        cr_assert_null(value, "%s still returns the key 400 ms after PX 300",
                       nodes[i]->id);
        cr_assert(harness_cmd_int(conn, &exists, "EXISTS", "short", NULL));
        cr_assert_eq(exists, 0, "EXISTS through %s returned %lld",
                     nodes[i]->id, exists);
        harness_conn_close(&conn);
    }
    finish();
}

#define INCR_CLIENTS 3
#define INCRS_PER_CLIENT 500

typedef struct incr_client {
    harness_conn_t *conn;
    long long results[INCRS_PER_CLIENT];
    size_t failures;
} incr_client_t;

/* Runs on its own thread; records each INCR result for the main thread,
 * which does all the asserting. */
static void *run_incr_client(void *arg)
{
    incr_client_t *client = arg;

    for (size_t i = 0; i < INCRS_PER_CLIENT; i++) {
        if (!harness_cmd_int(client->conn, &client->results[i], "INCR",
                             "counter", NULL)) {
            client->failures++;
            client->results[i] = -1;
        }
    }
    return NULL;
}

static int compare_long_long(const void *a, const void *b)
{
    long long x = *(const long long *)a;
    long long y = *(const long long *)b;

    return (x > y) - (x < y);
}

Test(cluster, concurrent_incr)
{
    enum { TOTAL = INCR_CLIENTS * INCRS_PER_CLIENT };
    harness_node_t *nodes[3];
    static incr_client_t clients[INCR_CLIENTS];
    pthread_t threads[INCR_CLIENTS];
    static long long all[TOTAL];

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    for (size_t i = 0; i < INCR_CLIENTS; i++) {
        clients[i].conn = connect_node(nodes[i]);
        clients[i].failures = 0;
        cr_assert_eq(pthread_create(&threads[i], NULL, run_incr_client,
                                    &clients[i]), 0);
    }
    for (size_t i = 0; i < INCR_CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        harness_conn_close(&clients[i].conn);
        cr_assert_eq(clients[i].failures, 0,
                     "%zu INCRs through %s got no integer reply",
                     clients[i].failures, nodes[i]->id);
        memcpy(all + i * INCRS_PER_CLIENT, clients[i].results,
               sizeof(clients[i].results));
    }

    /* Atomic increments hand out each value from 1 to TOTAL exactly once. */
    qsort(all, TOTAL, sizeof(all[0]), compare_long_long);
    for (long long i = 0; i < TOTAL; i++)
        cr_assert_eq(all[i], i + 1,
                     "INCR results are not 1..%d each once: position %lld "
                     "holds %lld",
                     TOTAL, i, all[i]);

    for (size_t i = 0; i < 3; i++) {
        char *value = wait_value(nodes[i], "counter", "1500",
                                 CONVERGE_TIMEOUT_MS);

        cr_assert_not_null(value, "GET counter through %s returned nil",
                           nodes[i]->id);
        cr_assert_str_eq(value, "1500", "GET counter through %s",
                         nodes[i]->id);
        free(value);
    }
    finish();
}

/* Checks that GET key through the node returns exactly value. */
static void assert_binary_readable(const harness_node_t *node,
                                   const char *key, size_t key_len,
                                   const char *value, size_t value_len)
{
    harness_reply_t *reply = wait_key_present(node, key, key_len,
                                              CONVERGE_TIMEOUT_MS);

    cr_assert(reply != NULL && reply->str != NULL,
              "binary key not readable through %s", node->id);
    cr_assert_eq(reply->len, value_len, "%s returned %zu bytes, not %zu",
                 node->id, reply->len, value_len);
    cr_assert_arr_eq(reply->str, value, value_len,
                     "%s returned different bytes", node->id);
    harness_reply_free(reply);
}

Test(cluster, binary_safe_values)
{
    static const char prefix[] = "a\0b\rc\nd\r\n";
    static const char binary_key[] = "bin\0key\r\n\xff";
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char value[sizeof(prefix) - 1 + 256];
    const size_t key_len = sizeof(binary_key) - 1;
    long long exists = -1;

    memcpy(value, prefix, sizeof(prefix) - 1);
    for (int i = 0; i < 256; i++)
        value[sizeof(prefix) - 1 + i] = (char)i;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    {
        const char *argv[] = {"SET", "binary", value};
        const size_t lens[] = {3, 6, sizeof(value)};
        const char *key_argv[] = {"SET", binary_key, "v\0v"};
        const size_t key_lens[] = {3, key_len, 3};
        harness_reply_t *reply = harness_cmdv(conn, 3, argv, lens);

        cr_assert(reply != NULL && reply->type == '+',
                  "SET of a binary value failed");
        harness_reply_free(reply);
        reply = harness_cmdv(conn, 3, key_argv, key_lens);
        cr_assert(reply != NULL && reply->type == '+',
                  "SET of a binary key failed");
        harness_reply_free(reply);
    }

    /* A NUL in the key must not cut it short. */
    cr_assert(harness_cmd_int(conn, &exists, "EXISTS", "bin", NULL));
    cr_assert_eq(exists, 0, "the binary key was stored as \"bin\"");
    harness_conn_close(&conn);

    for (size_t i = 1; i < 3; i++) {
        assert_binary_readable(nodes[i], "binary", 6, value, sizeof(value));
        assert_binary_readable(nodes[i], binary_key, key_len, "v\0v", 3);
    }
    finish();
}

#define JOIN_KEYS 10000

typedef struct join_reader {
    const harness_node_t *const *nodes;  /* four nodes */
    atomic_bool stop;
    size_t reads[4];
    size_t misses;   /* nil for a key that was written */
    size_t wrong;    /* a value other than the one written */
    size_t errors;   /* error replies and failed reads */
    char first_miss[REPORT_BYTES];
    char first_wrong[REPORT_BYTES];
    char first_error[REPORT_BYTES];
} join_reader_t;

/* Records one GET result, describing the first failure of each kind. */
static void record_read(join_reader_t *reader, const harness_reply_t *reply,
                        size_t key, size_t node)
{
    char expected[NAME_BYTES];
    char got[96];
    size_t *counter;
    char *first;

    make_value(expected, "join", key);
    reader->reads[node]++;
    if (reply != NULL && reply->type == '$' && reply->str != NULL &&
        strcmp(reply->str, expected) == 0)
        return;

    if (reply == NULL || reply->type != '$') {
        counter = &reader->errors;
        first = reader->first_error;
    } else if (reply->str == NULL) {
        counter = &reader->misses;
        first = reader->first_miss;
    } else {
        counter = &reader->wrong;
        first = reader->first_wrong;
    }
    if ((*counter)++ == 0) {
        describe_reply(reply, got, sizeof(got));
        snprintf(first, REPORT_BYTES, "GET join:%zu through %s returned %s",
                 key, reader->nodes[node]->id, got);
    }
}

/* Runs on its own thread until reader->stop is set or JOIN_READER_MAX_MS
 * pass. The fourth node is read once it accepts connections. */
static void *run_join_reader(void *arg)
{
    join_reader_t *reader = arg;
    harness_conn_t *conns[4] = {NULL};
    long long deadline = harness_now_ms() + JOIN_READER_MAX_MS;
    unsigned int seed = 42;

    while (!atomic_load(&reader->stop) && harness_now_ms() < deadline) {
        size_t key = (size_t)rand_r(&seed) % JOIN_KEYS;
        size_t node = (size_t)rand_r(&seed) % 4;
        char name[NAME_BYTES];
        harness_reply_t *reply;

        if (conns[node] == NULL)
            conns[node] = harness_connect(reader->nodes[node]->port);
        if (conns[node] == NULL) {
            /* node4 refuses connections until it listens; that is no miss. */
            if (node != 3)
                reader->errors++;
            harness_sleep_ms(10);
            continue;
        }

        make_key(name, "join", key);
        reply = harness_cmd(conns[node], "GET", name, NULL);
        record_read(reader, reply, key, node);
        if (reply == NULL)
            harness_conn_close(&conns[node]);
        harness_reply_free(reply);
    }

    for (size_t i = 0; i < 4; i++)
        harness_conn_close(&conns[i]);
    return NULL;
}

Test(cluster, join_under_load)
{
    harness_node_t *nodes[4];
    static join_reader_t reader;
    char totals[REPORT_BYTES];
    pthread_t thread;
    harness_conn_t *conn;
    long long sum;
    bool joined;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "join", JOIN_KEYS), JOIN_KEYS);
    harness_conn_close(&conn);
    sum = wait_dbsize_sum(nodes, 3, 2 * JOIN_KEYS, JOIN_SETTLE_TIMEOUT_MS);
    cr_assert_eq(sum, 2 * JOIN_KEYS, "DBSIZE sum before the join is %lld",
                 sum);

    nodes[3] = harness_node_add("node4", REPLICAS, nodes[0]);
    cr_assert_not_null(nodes[3]);
    reader.nodes = (const harness_node_t *const *)nodes;
    atomic_init(&reader.stop, false);
    cr_assert_eq(pthread_create(&thread, NULL, run_join_reader, &reader), 0);

    joined = harness_node_start(nodes[3]) &&
             harness_wait_ready(nodes, 4, 4, HARNESS_READY_TIMEOUT_MS);
    sum = joined ? wait_dbsize_sum(nodes, 4, 2 * JOIN_KEYS,
                                   JOIN_SETTLE_TIMEOUT_MS)
                 : -1;
    atomic_store(&reader.stop, true);
    pthread_join(thread, NULL);

    cr_assert(joined, "node4 did not join: not all 4 nodes list 4 members up");
    cr_assert_eq(sum, 2 * JOIN_KEYS,
                 "DBSIZE sum after the join is %lld, expected %d", sum,
                 2 * JOIN_KEYS);
    snprintf(totals, sizeof(totals),
             "reads through node1..4: %zu %zu %zu %zu; misses %zu, wrong "
             "values %zu, failed reads %zu",
             reader.reads[0], reader.reads[1], reader.reads[2],
             reader.reads[3], reader.misses, reader.wrong, reader.errors);
    cr_assert_eq(reader.misses, 0, "misses during the join; first: %s (%s)",
                 reader.first_miss, totals);
    cr_assert_eq(reader.wrong, 0,
                 "wrong values during the join; first: %s (%s)",
                 reader.first_wrong, totals);
    cr_assert_eq(reader.errors, 0,
                 "failed reads during the join; first: %s (%s)",
                 reader.first_error, totals);
    cr_assert(reader.reads[3] > 0, "the reader never read through node4");

    for (size_t i = 0; i < 4; i++) {
        char report[REPORT_BYTES] = "";
        size_t unreadable = wait_readable(nodes[i], "join", JOIN_KEYS, true,
                                          0, report);

        cr_assert_eq(unreadable, 0,
                     "%zu keys unreadable through %s after the join; "
                     "first: %s",
                     unreadable, nodes[i]->id, report);
    }
    finish();
}

Test(cluster, restart_keeps_keys)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char report[REPORT_BYTES] = "";
    int status = -1;
    long long sum;
    size_t unreadable;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "key", 1000), 1000);
    harness_conn_close(&conn);
    sum = wait_dbsize_sum(nodes, 3, 2000, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 2000, "DBSIZE sum before the restart is %lld", sum);

    cr_assert(harness_node_stop(nodes[1], HARNESS_STOP_TIMEOUT_MS, &status),
              "node2 did not exit after SIGTERM");
    cr_assert(WIFEXITED(status), "node2 was killed by signal %d",
              WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "node2 exited with status %d",
                 WEXITSTATUS(status));

    cr_assert(harness_node_start(nodes[1]));
    cr_assert(harness_wait_ready(nodes, 3, 3, HARNESS_READY_TIMEOUT_MS));

    unreadable = wait_readable(nodes[1], "key", 1000, true,
                               JOIN_SETTLE_TIMEOUT_MS, report);
    cr_assert_eq(unreadable, 0,
                 "%zu keys unreadable through the restarted node2; first: %s",
                 unreadable, report);
    sum = wait_dbsize_sum(nodes, 3, 2000, JOIN_SETTLE_TIMEOUT_MS);
    cr_assert_eq(sum, 2000, "DBSIZE sum after the restart is %lld", sum);
    finish();
}

/* Reads raw bytes up to and including the first LF, at most cap - 1. */
static size_t read_raw_line(harness_conn_t *conn, char *line, size_t cap)
{
    size_t len = 0;

    while (len + 1 < cap) {
        if (harness_read_raw(conn, line + len, 1) != 1)
            break;
        if (line[len++] == '\n')
            break;
    }
    line[len] = '\0';
    return len;
}

#define PIPELINE_COMMANDS 100

/* Sends PIPELINE_COMMANDS commands of the form NAME pipe:i [value] in a
 * single write, then reads and checks each reply in order. */
static void assert_pipelined(harness_conn_t *conn, const char *name)
{
    bool is_set = strcmp(name, "SET") == 0;

    for (size_t i = 0; i < PIPELINE_COMMANDS; i++) {
        char key[NAME_BYTES];
        char value[NAME_BYTES];
        const char *argv[] = {name, key, value};

        make_key(key, "pipe", i);
        make_value(value, "pipe", i);
        harness_append(conn, is_set ? 3 : 2, argv, NULL);
    }
    cr_assert(harness_flush(conn));

    for (size_t i = 0; i < PIPELINE_COMMANDS; i++) {
        harness_reply_t *reply = harness_read(conn);
        char report[REPORT_BYTES] = "";

        cr_assert_not_null(reply, "no reply to pipelined %s %zu", name, i);
        if (is_set) {
            cr_assert_eq(reply->type, '+', "pipelined SET %zu failed", i);
            cr_assert_str_eq(reply->str, "OK");
        } else {
            cr_assert(value_matches(reply, "pipe", i, report), "%s", report);
        }
        harness_reply_free(reply);
    }
}

Test(cluster, pipeline_and_inline)
{
    static const char bad_request[] = "*1\r\n$-5\r\n";
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char line[256];
    char byte;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));

    /* Writes and reads go to different owners; replies keep request order.
     * The GETs wait for replication, as node1 may hold a replica. */
    conn = connect_node(nodes[0]);
    assert_pipelined(conn, "SET");
    cr_assert_eq(wait_dbsize_sum(nodes, 3, 2 * PIPELINE_COMMANDS,
                                 CONVERGE_TIMEOUT_MS),
                 2 * PIPELINE_COMMANDS);
    assert_pipelined(conn, "GET");
    harness_conn_close(&conn);

    conn = connect_node(nodes[1]);
    harness_append_raw(conn, "PING\r\n", 6);
    cr_assert(harness_flush(conn));
    read_raw_line(conn, line, sizeof(line));
    cr_assert_str_eq(line, "+PONG\r\n", "inline PING");
    harness_conn_close(&conn);

    conn = connect_node(nodes[1]);
    harness_append_raw(conn, bad_request, sizeof(bad_request) - 1);
    cr_assert(harness_flush(conn));
    read_raw_line(conn, line, sizeof(line));
    cr_assert_str_eq(line, "-ERR Protocol error: invalid bulk length\r\n");
    cr_assert_eq(harness_read_raw(conn, &byte, 1), 0,
                 "the connection stayed open after a protocol error");
    harness_conn_close(&conn);
    finish();
}

Test(cluster, sigterm_exits_cleanly)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char *status_text;
    int status = -1;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));

    /* Leave a client connected, so shutdown has a connection to close. */
    conn = connect_node(nodes[2]);
    status_text = harness_cmd_status(conn, "SET", "before", "shutdown", NULL);
    cr_assert_not_null(status_text);
    free(status_text);

    cr_assert(harness_node_stop(nodes[2], HARNESS_STOP_TIMEOUT_MS, &status),
              "node3 did not exit within %d ms of SIGTERM",
              HARNESS_STOP_TIMEOUT_MS);
    cr_assert(WIFEXITED(status), "node3 was killed by signal %d",
              WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "node3 exited with status %d",
                 WEXITSTATUS(status));
    cr_assert(harness_log_contains(nodes[2], "shut"),
              "node3's log has no shutdown line");
    harness_conn_close(&conn);
    finish();
}

#define MULTI_KEYS 50
#define MULTI_DELETED 20

Test(cluster, multikey_across_owners)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char keys[MULTI_KEYS][NAME_BYTES];
    char values[MULTI_KEYS][NAME_BYTES];
    const char *argv[2 * MULTI_KEYS + 2];
    harness_reply_t *reply = NULL;
    long long count = -1;
    long long deadline;
    size_t missing_at = MULTI_KEYS / 2;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    for (size_t i = 0; i < MULTI_KEYS; i++) {
        make_key(keys[i], "multi", i);
        make_value(values[i], "multi", i);
    }

    conn = connect_node(nodes[0]);
    argv[0] = "MSET";
    for (size_t i = 0; i < MULTI_KEYS; i++) {
        argv[1 + 2 * i] = keys[i];
        argv[2 + 2 * i] = values[i];
    }
    reply = harness_cmdv(conn, 1 + 2 * MULTI_KEYS, argv, NULL);
    cr_assert(reply != NULL && reply->type == '+', "MSET failed");
    cr_assert_str_eq(reply->str, "OK");
    harness_reply_free(reply);
    harness_conn_close(&conn);

    /* MGET with a key never written in the middle, through node2. */
    argv[0] = "MGET";
    for (size_t i = 0, arg = 1; i < MULTI_KEYS; i++) {
        if (i == missing_at)
            argv[arg++] = "multi:missing";
        argv[arg++] = keys[i];
    }
    conn = connect_node(nodes[1]);
    deadline = harness_now_ms() + CONVERGE_TIMEOUT_MS;
    for (;;) {
        size_t bad = 0;
        char report[REPORT_BYTES] = "";

        reply = harness_cmdv(conn, MULTI_KEYS + 2, argv, NULL);
        cr_assert(reply != NULL && reply->type == '*',
                  "MGET returned no array");
        cr_assert_eq(reply->count, MULTI_KEYS + 1);
        cr_assert(reply->elements[missing_at]->type == '$' &&
                      reply->elements[missing_at]->str == NULL,
                  "MGET returned a value for the missing key");
        for (size_t i = 0, element = 0; i < MULTI_KEYS; i++, element++) {
            if (i == missing_at)
                element++;
            bad += !value_matches(reply->elements[element], "multi", i, report);
        }
        if (bad == 0 || harness_now_ms() >= deadline) {
            cr_assert_eq(bad, 0, "MGET: %zu values wrong; first: %s", bad,
                         report);
            break;
        }
        harness_reply_free(reply);
        harness_sleep_ms(50);
    }
    harness_reply_free(reply);
    harness_conn_close(&conn);

    conn = connect_node(nodes[2]);
    argv[0] = "DEL";
    for (size_t i = 0; i < MULTI_DELETED; i++)
        argv[1 + i] = keys[i];
    reply = harness_cmdv(conn, 1 + MULTI_DELETED, argv, NULL);
    cr_assert(reply != NULL && reply->type == ':', "DEL returned no integer");
    cr_assert_eq(reply->integer, MULTI_DELETED);
    harness_reply_free(reply);

    /* EXISTS counts a key once per mention; the deleted ones may linger on
     * a replica briefly. */
    argv[0] = "EXISTS";
    for (size_t i = 0; i < MULTI_KEYS; i++)
        argv[1 + i] = keys[i];
    argv[1 + MULTI_KEYS] = "multi:missing";
    deadline = harness_now_ms() + CONVERGE_TIMEOUT_MS;
    for (;;) {
        reply = harness_cmdv(conn, MULTI_KEYS + 2, argv, NULL);
        cr_assert(reply != NULL && reply->type == ':',
                  "EXISTS returned no integer");
        count = reply->integer;
        harness_reply_free(reply);
        if (count == MULTI_KEYS - MULTI_DELETED ||
            harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(50);
    }
    cr_assert_eq(count, MULTI_KEYS - MULTI_DELETED,
                 "EXISTS over all keys after DEL returned %lld", count);

    cr_assert(harness_cmd_int(conn, &count, "EXISTS", keys[MULTI_KEYS - 1],
                              keys[MULTI_KEYS - 1], NULL));
    cr_assert_eq(count, 2, "EXISTS k k returned %lld", count);
    harness_conn_close(&conn);
    finish();
}

Test(cluster, flushall_empties_cluster)
{
    harness_node_t *nodes[3];
    harness_conn_t *conn;
    char *status;
    long long sum;

    cr_assert(harness_start_cluster(nodes, 3, REPLICAS));
    conn = connect_node(nodes[0]);
    cr_assert_eq(write_keys(conn, "key", 200), 200);
    harness_conn_close(&conn);
    sum = wait_dbsize_sum(nodes, 3, 400, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 400, "DBSIZE sum before FLUSHALL is %lld", sum);

    conn = connect_node(nodes[1]);
    status = harness_cmd_status(conn, "FLUSHALL", NULL);
    cr_assert_not_null(status);
    cr_assert_str_eq(status, "OK");
    free(status);
    harness_conn_close(&conn);

    sum = wait_dbsize_sum(nodes, 3, 0, CONVERGE_TIMEOUT_MS);
    cr_assert_eq(sum, 0, "DBSIZE sum after FLUSHALL is %lld", sum);
    for (size_t i = 0; i < 3; i++)
        cr_assert(wait_key_gone(nodes[i], "key:0", 5, 0),
                  "key:0 still readable through %s after FLUSHALL",
                  nodes[i]->id);
    finish();
}
