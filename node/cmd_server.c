/* cmd_server: connection, server and cluster commands (PING, HELLO,
 * CLIENT, COMMAND, CONFIG, INFO, CLUSTER, DBSIZE, FLUSHALL...).
 *
 * These run on the node that received them, except FLUSHALL, FLUSHDB,
 * KEYS and SCAN, which the router sends to every member and merges.
 * Handlers that read node state (INFO, CLUSTER, KEYS, SCAN) read the view
 * inside a read-side section.
 */
#include <fnmatch.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <malloc.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cmd.h"
#include "node.h"
#include "resp.h"

#define PEERCACHE_VERSION "0.1.0"
#define REDIS_COMPAT_VERSION "7.0.0"

/* Appends Redis 7's error for an unknown subcommand of cmd. */
static void reply_unknown_subcommand(pc_buf_t *out, const char *cmd, const cmd_arg_t *sub)
{
    resp_add_errorf(out, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                    (int)(sub->len > 128 ? 128 : sub->len), sub->ptr, cmd);
}

/* Appends Redis 7's arity error for a known subcommand, as "cmd|sub". */
static void reply_subcommand_arity(pc_buf_t *out, const char *cmd, const char *sub)
{
    char name[64];
    snprintf(name, sizeof name, "%s|%s", cmd, sub);
    cmd_reply_arity_error(out, name);
}

/* Appends a HELP reply: one status line per entry. */
static void reply_help(pc_buf_t *out, const char *const *lines, size_t count)
{
    resp_add_array(out, count);
    for (size_t i = 0; i < count; i++)
        resp_add_simple(out, lines[i]);
}

#define HELP_COUNT(lines) (sizeof(lines) / sizeof((lines)[0]))

static void cmd_ping(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc > 2) {
        cmd_reply_arity_error(ctx->out, "ping");
        return;
    }
    if (argc == 2)
        resp_add_bulk(ctx->out, argv[1].ptr, argv[1].len);
    else
        resp_add_simple(ctx->out, "PONG");
}

static void cmd_echo(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    resp_add_bulk(ctx->out, argv[1].ptr, argv[1].len);
}

static void cmd_quit(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (ctx->client != NULL)
        ctx->client->close_after_reply = true;
    resp_add_simple(ctx->out, "OK");
}

static void cmd_select(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long db;
    if (cmd_parse_ll(argv[1].ptr, argv[1].len, &db) != 0)
        resp_add_error(ctx->out, "ERR value is not an integer or out of range");
    else if (db != 0)
        resp_add_error(ctx->out, "ERR DB index is out of range");
    else
        resp_add_simple(ctx->out, "OK");
}

/* Client names follow Redis: printable ASCII without spaces. */
static int client_name_valid(const cmd_arg_t *name)
{
    if (name->len > CLIENT_NAME_MAX_BYTES)
        return 0;
    for (size_t i = 0; i < name->len; i++) {
        if (name->ptr[i] <= ' ' || name->ptr[i] > '~')
            return 0;
    }
    return 1;
}

static int set_client_name(cmd_ctx_t *ctx, const cmd_arg_t *name)
{
    if (!client_name_valid(name)) {
        resp_add_error(ctx->out, "ERR Client names cannot contain spaces, "
                                 "newlines or special characters.");
        return -1;
    }
    if (ctx->client != NULL) {
        memcpy(ctx->client->name, name->ptr, name->len);
        ctx->client->name[name->len] = '\0';
    }
    return 0;
}

static void hello_reply(cmd_ctx_t *ctx)
{
    resp_add_array(ctx->out, 14);
    resp_add_cstr(ctx->out, "server");
    resp_add_cstr(ctx->out, "redis");
    resp_add_cstr(ctx->out, "version");
    resp_add_cstr(ctx->out, REDIS_COMPAT_VERSION);
    resp_add_cstr(ctx->out, "proto");
    resp_add_int(ctx->out, 2);
    resp_add_cstr(ctx->out, "id");
    resp_add_int(ctx->out, ctx->client ? (long long)ctx->client->id : 0);
    resp_add_cstr(ctx->out, "mode");
    resp_add_cstr(ctx->out, "standalone");
    resp_add_cstr(ctx->out, "role");
    resp_add_cstr(ctx->out, "master");
    resp_add_cstr(ctx->out, "modules");
    resp_add_array(ctx->out, 0);
}

static void cmd_hello(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc >= 2) {
        long long version;
        if (cmd_parse_ll(argv[1].ptr, argv[1].len, &version) != 0) {
            resp_add_error(ctx->out, "ERR Protocol version is not an integer "
                                     "or out of range");
            return;
        }
        if (version != 2) {
            resp_add_error(ctx->out, "NOPROTO unsupported protocol version");
            return;
        }
    }

    /* Options are checked before any is applied, as Redis does. */
    const cmd_arg_t *name = NULL;
    for (int i = 2; i < argc; i++) {
        if (cmd_arg_is(&argv[i], "auth") && i + 2 < argc) {
            /* There is no password yet: the default user accepts any. */
            if (!cmd_arg_is(&argv[i + 1], "default")) {
                resp_add_error(ctx->out, "WRONGPASS invalid username-password "
                                         "pair or user is disabled.");
                return;
            }
            i += 2;
        } else if (cmd_arg_is(&argv[i], "setname") && i + 1 < argc) {
            name = &argv[++i];
        } else {
            resp_add_errorf(ctx->out, "ERR Syntax error in HELLO option '%.*s'",
                            (int)(argv[i].len > 64 ? 64 : argv[i].len), argv[i].ptr);
            return;
        }
    }
    if (name != NULL && set_client_name(ctx, name) != 0)
        return;
    hello_reply(ctx);
}

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
    "GETNAME", "    Return the name of the current connection.",
    "ID", "    Return the ID of the current connection.",
    "INFO", "    Return information about the current connection.",
    "SETNAME <name>", "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>", "    Accepted and ignored.",
    "HELP", "    Print this help.",
};

/* A subcommand of CLIENT: its name and the argument count it takes,
 * CLIENT included. */
typedef struct subcommand {
    const char *name;
    int argc;
} subcommand_t;

static const subcommand_t client_subcommands[] = {
    {"getname", 2}, {"id", 2}, {"info", 2}, {"setname", 3}, {"setinfo", 4}, {"help", 2},
};

/* Returns the matching subcommand, or NULL after replying the error. */
static const subcommand_t *find_subcommand(pc_buf_t *out, const char *cmd,
                                           const subcommand_t *table, size_t count,
                                           int argc, const cmd_arg_t *argv)
{
    for (size_t i = 0; i < count; i++) {
        if (!cmd_arg_is(&argv[1], table[i].name))
            continue;
        if (table[i].argc != argc) {
            reply_subcommand_arity(out, cmd, table[i].name);
            return NULL;
        }
        return &table[i];
    }
    char upper[16];
    size_t n = 0;
    for (; cmd[n] != '\0' && n < sizeof upper - 1; n++)
        upper[n] = (char)(cmd[n] >= 'a' && cmd[n] <= 'z' ? cmd[n] - 'a' + 'A' : cmd[n]);
    upper[n] = '\0';
    reply_unknown_subcommand(out, upper, &argv[1]);
    return NULL;
}

static void cmd_client(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    const subcommand_t *sub = find_subcommand(
        ctx->out, "client", client_subcommands,
        sizeof client_subcommands / sizeof client_subcommands[0], argc, argv);
    if (sub == NULL)
        return;

    struct client *client = ctx->client;
    const char *name = sub->name;
    if (strcmp(name, "setname") == 0) {
        if (set_client_name(ctx, &argv[2]) == 0)
            resp_add_simple(ctx->out, "OK");
    } else if (strcmp(name, "getname") == 0) {
        if (client == NULL || client->name[0] == '\0')
            resp_add_null(ctx->out);
        else
            resp_add_cstr(ctx->out, client->name);
    } else if (strcmp(name, "id") == 0) {
        resp_add_int(ctx->out, client ? (long long)client->id : 0);
    } else if (strcmp(name, "setinfo") == 0) {
        /* Client libraries announce themselves; nothing is kept yet. */
        resp_add_simple(ctx->out, "OK");
    } else if (strcmp(name, "info") == 0) {
        char line[256];
        snprintf(line, sizeof line, "id=%" PRIu64 " name=%s db=0\n",
                 client ? client->id : 0, client ? client->name : "");
        resp_add_cstr(ctx->out, line);
    } else {
        reply_help(ctx->out, client_help, HELP_COUNT(client_help));
    }
}

static void add_command_flags(pc_buf_t *out, const cmd_def_t *def)
{
    const char *flags[3];
    size_t n = 0;
    if (def->flags & CMD_WRITE)
        flags[n++] = "write";
    if (def->flags & CMD_READ)
        flags[n++] = "readonly";
    if (def->flags & (CMD_NOKEY | CMD_CLIENT))
        flags[n++] = "fast";
    resp_add_array(out, n);
    for (size_t i = 0; i < n; i++)
        resp_add_simple(out, flags[i]);
}

/* One COMMAND entry in Redis 7's 10-element layout. */
static void add_command_info(pc_buf_t *out, const cmd_def_t *def)
{
    resp_add_array(out, 10);
    resp_add_cstr(out, def->name);
    resp_add_int(out, def->arity);
    add_command_flags(out, def);
    resp_add_int(out, def->first_key);
    resp_add_int(out, def->last_key);
    resp_add_int(out, def->key_step);
    for (int i = 0; i < 4; i++)
        resp_add_array(out, 0); /* ACL categories, tips, key specs, subcommands */
}

static size_t command_count(void)
{
    size_t n = 0;
    for (const cmd_def_t *d = cmd_keys_table; d->name; d++)
        n++;
    for (const cmd_def_t *d = cmd_server_table; d->name; d++)
        n++;
    return n;
}

static void cmd_command(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    const cmd_def_t *tables[] = {cmd_keys_table, cmd_server_table};

    if (argc == 1 || (argc == 2 && cmd_arg_is(&argv[1], "list"))) {
        int names_only = argc == 2;
        resp_add_array(ctx->out, command_count());
        for (size_t t = 0; t < 2; t++) {
            for (const cmd_def_t *d = tables[t]; d->name; d++) {
                if (names_only)
                    resp_add_cstr(ctx->out, d->name);
                else
                    add_command_info(ctx->out, d);
            }
        }
    } else if (argc == 2 && cmd_arg_is(&argv[1], "count")) {
        resp_add_int(ctx->out, (long long)command_count());
    } else if (cmd_arg_is(&argv[1], "info")) {
        resp_add_array(ctx->out, (size_t)(argc - 2));
        for (int i = 2; i < argc; i++) {
            const cmd_def_t *def = cmd_lookup(argv[i].ptr, argv[i].len);
            if (def)
                add_command_info(ctx->out, def);
            else
                resp_add_null_array(ctx->out);
        }
    } else if (cmd_arg_is(&argv[1], "docs")) {
        /* No documentation is served; redis-cli falls back to none. */
        resp_add_array(ctx->out, 0);
    } else if (cmd_arg_is(&argv[1], "help") && argc == 2) {
        static const char *const help[] = {
            "COMMAND <subcommand> [<arg> ...]. Subcommands are:",
            "(no subcommand)", "    Return details about all commands.",
            "COUNT", "    Return the total number of commands.",
            "DOCS [<command-name> ...]", "    Return an empty array: no documentation is served.",
            "INFO [<command-name> ...]", "    Return details about the given commands.",
            "LIST", "    Return the names of all commands.",
            "HELP", "    Print this help.",
        };
        reply_help(ctx->out, help, HELP_COUNT(help));
    } else if (cmd_arg_is(&argv[1], "count") || cmd_arg_is(&argv[1], "list") ||
               cmd_arg_is(&argv[1], "help")) {
        char sub[16];
        snprintf(sub, sizeof sub, "%.*s", (int)argv[1].len, argv[1].ptr);
        for (char *c = sub; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        reply_subcommand_arity(ctx->out, "command", sub);
    } else {
        reply_unknown_subcommand(ctx->out, "COMMAND", &argv[1]);
    }
}

/* Settings that redis-benchmark and client libraries read at start. */
static const char *const config_values[][2] = {
    {"save", ""},
    {"appendonly", "no"},
    {"databases", "1"},
    {"maxmemory", "0"},
    {"maxmemory-policy", "noeviction"},
    {"cluster-enabled", "no"},
    {"proto-max-bulk-len", "536870912"},
    {"timeout", "0"},
};

static void cmd_config(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (cmd_arg_is(&argv[1], "help") && argc == 2) {
        static const char *const help[] = {
            "CONFIG <subcommand> [<arg> ...]. Subcommands are:",
            "GET <pattern>", "    Return the values of the settings matching the pattern.",
            "SET, RESETSTAT, REWRITE",
            "    Not supported: peercache is configured with flags and PEERCACHE_* variables.",
            "HELP", "    Print this help.",
        };
        reply_help(ctx->out, help, HELP_COUNT(help));
        return;
    }
    if (cmd_arg_is(&argv[1], "set") || cmd_arg_is(&argv[1], "resetstat") ||
        cmd_arg_is(&argv[1], "rewrite")) {
        resp_add_errorf(ctx->out, "ERR CONFIG %.*s is not supported; peercache is "
                        "configured with flags and PEERCACHE_* variables",
                        (int)argv[1].len, argv[1].ptr);
        return;
    }
    if (!cmd_arg_is(&argv[1], "get")) {
        reply_unknown_subcommand(ctx->out, "CONFIG", &argv[1]);
        return;
    }
    if (argc < 3) {
        cmd_reply_arity_error(ctx->out, "config|get");
        return;
    }

    size_t count = sizeof config_values / sizeof config_values[0];
    int matched[sizeof config_values / sizeof config_values[0]] = {0};
    size_t matches = 0;
    for (int i = 2; i < argc; i++) {
        char pattern[128];
        snprintf(pattern, sizeof pattern, "%.*s",
                 (int)(argv[i].len > 127 ? 127 : argv[i].len), argv[i].ptr);
        for (size_t j = 0; j < count; j++) {
            if (!matched[j] && fnmatch(pattern, config_values[j][0], FNM_CASEFOLD) == 0) {
                matched[j] = 1;
                matches++;
            }
        }
    }

    resp_add_array(ctx->out, matches * 2);
    for (size_t j = 0; j < count; j++) {
        if (matched[j]) {
            resp_add_cstr(ctx->out, config_values[j][0]);
            resp_add_cstr(ctx->out, config_values[j][1]);
        }
    }
}

static void cmd_dbsize(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    store_stats_t stats;
    store_stats(ctx->store, &stats);
    resp_add_int(ctx->out, (long long)stats.keys);
}

static void cmd_flushall(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (argc > 2 || (argc == 2 && !cmd_arg_is(&argv[1], "async") &&
                     !cmd_arg_is(&argv[1], "sync"))) {
        resp_add_error(ctx->out, "ERR syntax error");
        return;
    }
    store_clear(ctx->store);
    resp_add_simple(ctx->out, "OK");
}

/* Returns "ok" when the node can route keys (some member is up), as
 * CLUSTER INFO and INFO cluster both report it. */
static const char *cluster_state(const view_t *view)
{
    return view != NULL && view->read_ring != NULL ? "ok" : "fail";
}

/* Returns this node's share of the ring as primary, 0 when not serving. */
static double self_ring_share(const view_t *view)
{
    if (view == NULL || view->read_ring == NULL)
        return 0.0;
    for (size_t i = 0; i < ring_node_count(view->read_ring); i++) {
        if (view->read_map[i] == (uint32_t)view->self)
            return ring_share(view->read_ring, (uint32_t)i);
    }
    return 0.0;
}

static void info_server(pc_buf_t *text, node_t *node, int64_t now_ms)
{
    uint64_t uptime_s = (uint64_t)(now_ms - (int64_t)node->start_ms) / 1000;
    buf_printf(text,
               "# Server\r\nredis_version:%s\r\npeercache_version:%s\r\n"
               "redis_mode:standalone\r\nos:Linux\r\nprocess_id:%ld\r\n"
               "tcp_port:%u\r\nnode_id:%s\r\nuptime_in_seconds:%" PRIu64 "\r\n"
               "io_threads_active:%u\r\n\r\n",
               REDIS_COMPAT_VERSION, PEERCACHE_VERSION, (long)getpid(),
               node->cfg.port, node->cfg.node_id, uptime_s, node->cfg.threads);
}

static void info_clients(pc_buf_t *text, node_t *node)
{
    buf_printf(text, "# Clients\r\nconnected_clients:%" PRIu64 "\r\n"
               "blocked_clients:0\r\nmaxclients:10000\r\n\r\n",
               stat_get(&node->stats.connected_clients));
}

static void info_memory(pc_buf_t *text, store_t *store)
{
    store_stats_t stats;
    store_stats(store, &stats);

    /* used_memory is what the allocator has handed out, as in Redis;
     * used_memory_dataset is the store's own count of entry bytes. */
    struct mallinfo2 heap = mallinfo2();
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    buf_printf(text, "# Memory\r\nused_memory:%zu\r\n"
               "used_memory_dataset:%" PRIu64 "\r\n"
               "used_memory_peak_rss:%ld\r\nmaxmemory:0\r\n"
               "maxmemory_policy:noeviction\r\n\r\n",
               heap.uordblks + heap.hblkhd, stats.bytes, usage.ru_maxrss * 1024L);
}

static void info_stats(pc_buf_t *text, node_t *node, store_t *store)
{
    node_stats_t *s = &node->stats;
    store_stats_t st;
    store_stats(store, &st);
    buf_printf(text,
               "# Stats\r\ntotal_connections_received:%" PRIu64 "\r\n"
               "rejected_connections:%" PRIu64 "\r\n"
               "total_commands_processed:%" PRIu64 "\r\n"
               "total_net_input_bytes:%" PRIu64 "\r\n"
               "total_net_output_bytes:%" PRIu64 "\r\n"
               "expired_keys:%" PRIu64 "\r\n"
               "forwarded_requests:%" PRIu64 "\r\nforwarded_failures:%" PRIu64 "\r\n"
               "peer_requests_served:%" PRIu64 "\r\n"
               "repl_sent:%" PRIu64 "\r\nrepl_applied:%" PRIu64 "\r\n"
               "repl_stale:%" PRIu64 "\r\nrepl_gaps:%" PRIu64 "\r\n"
               "resyncs_requested:%" PRIu64 "\r\n"
               "peer_messages_malformed:%" PRIu64 "\r\n"
               "handoff_keys_sent:%" PRIu64 "\r\nhandoff_keys_received:%" PRIu64 "\r\n"
               "keys_dropped:%" PRIu64 "\r\n\r\n",
               stat_get(&s->connections_received), stat_get(&s->connections_rejected),
               stat_get(&s->commands_processed), stat_get(&s->net_input_bytes),
               stat_get(&s->net_output_bytes), st.expired,
               stat_get(&s->forwarded_requests), stat_get(&s->forwarded_failures),
               stat_get(&s->peer_requests_served), stat_get(&s->repl_sent),
               stat_get(&s->repl_applied), stat_get(&s->repl_stale),
               stat_get(&s->repl_gaps), stat_get(&s->resyncs_requested),
               stat_get(&s->peer_messages_malformed),
               stat_get(&s->handoff_keys_sent), stat_get(&s->handoff_keys_received),
               stat_get(&s->keys_dropped));
}

static void info_keyspace(pc_buf_t *text, store_t *store)
{
    store_stats_t stats;
    store_stats(store, &stats);
    buf_printf(text, "# Keyspace\r\n");
    if (stats.keys > 0)
        buf_printf(text, "db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n",
                   stats.keys, stats.expiring);
    buf_printf(text, "\r\n");
}

static void info_cluster(pc_buf_t *text, node_t *node)
{
    store_read_lock();
    const view_t *view = rcu_dereference(node->view);
    size_t members = view ? view->count : 0;
    size_t up = 0;
    for (size_t i = 0; i < members; i++)
        up += view->members[i].state == MEMBER_UP;
    const char *node_state = view ? member_state_name(view->members[view->self].state)
                                  : "joining";
    size_t effective = view && up < view->replicas ? up : node->cfg.replicas;
    buf_printf(text,
               "# Cluster\r\ncluster_enabled:0\r\npeercache_cluster:1\r\n"
               "cluster_node_id:%s\r\ncluster_state:%s\r\ncluster_node_state:%s\r\n"
               "cluster_members:%zu\r\ncluster_members_up:%zu\r\n"
               "cluster_replicas:%u\r\ncluster_replicas_effective:%zu\r\n"
               "cluster_ring_share:%.4f\r\ncluster_vnodes:%u\r\n"
               "cluster_view_generation:%" PRIu64 "\r\n\r\n",
               node->cfg.node_id, cluster_state(view), node_state, members, up,
               node->cfg.replicas,
               effective, self_ring_share(view), node->cfg.vnodes,
               view ? view->generation : 0);
    store_read_unlock();
}

static int section_wanted(int argc, const cmd_arg_t *argv, const char *name)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (cmd_arg_is(&argv[i], name) || cmd_arg_is(&argv[i], "all") ||
            cmd_arg_is(&argv[i], "everything") || cmd_arg_is(&argv[i], "default"))
            return 1;
    }
    return 0;
}

static void cmd_info(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    node_t *node = ctx->node;
    if (node == NULL) {
        resp_add_cstr(ctx->out, "");
        return;
    }

    pc_buf_t text;
    buf_init(&text, 1u << 20);
    if (section_wanted(argc, argv, "server"))
        info_server(&text, node, ctx->now_ms);
    if (section_wanted(argc, argv, "clients"))
        info_clients(&text, node);
    if (section_wanted(argc, argv, "memory"))
        info_memory(&text, ctx->store);
    if (section_wanted(argc, argv, "stats"))
        info_stats(&text, node, ctx->store);
    if (section_wanted(argc, argv, "keyspace"))
        info_keyspace(&text, ctx->store);
    if (section_wanted(argc, argv, "cluster"))
        info_cluster(&text, node);

    /* Redis ends the text without the last blank line. */
    size_t len = text.len >= 2 ? text.len - 2 : text.len;
    resp_add_bulk(ctx->out, text.data ? text.data : "", len);
    buf_fini(&text);
}

static void cluster_nodes(cmd_ctx_t *ctx, const view_t *view)
{
    pc_buf_t text;
    buf_init(&text, 1u << 20);
    for (size_t i = 0; view != NULL && i < view->count; i++) {
        const member_t *m = &view->members[i];
        buf_printf(&text, "%s %s:%u@%u,%u %s%s %" PRIu64 "\n", m->id, m->host,
                   m->port, m->peer_port, m->pub_port, member_state_name(m->state),
                   (int)i == view->self ? " myself" : "", m->incarnation);
    }
    resp_add_bulk(ctx->out, text.data ? text.data : "", text.len);
    buf_fini(&text);
}

static void cmd_cluster(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    if (ctx->node == NULL) {
        resp_add_error(ctx->out, "ERR no cluster in this context");
        return;
    }

    static const subcommand_t subcommands[] = {
        {"nodes", 2}, {"myid", 2}, {"info", 2}, {"help", 2},
    };
    const subcommand_t *sub = find_subcommand(ctx->out, "cluster", subcommands,
                                              HELP_COUNT(subcommands), argc, argv);
    if (sub == NULL)
        return;

    store_read_lock();
    const view_t *view = rcu_dereference(ctx->node->view);
    if (strcmp(sub->name, "nodes") == 0) {
        cluster_nodes(ctx, view);
    } else if (strcmp(sub->name, "myid") == 0) {
        resp_add_cstr(ctx->out, ctx->node->cfg.node_id);
    } else if (strcmp(sub->name, "info") == 0) {
        char text[256];
        snprintf(text, sizeof text, "cluster_state:%s\r\ncluster_known_nodes:%zu\r\n",
                 cluster_state(view), view ? view->count : 0);
        resp_add_cstr(ctx->out, text);
    } else {
        static const char *const help[] = {
            "CLUSTER <subcommand> [<arg> ...]. Subcommands are:",
            "INFO", "    Return the state of the cluster as this node sees it.",
            "MYID", "    Return this node's id.",
            "NODES", "    Return one line per member: id, addresses, state, incarnation.",
            "HELP", "    Print this help.",
        };
        reply_help(ctx->out, help, HELP_COUNT(help));
    }
    store_read_unlock();
}

/* ---- KEYS and SCAN ---- */

/* Matches one character class "[...]" at pattern[*pi] against c and
 * moves *pi past it. An unterminated class matches as far as it goes. */
static bool class_match(const char *pattern, size_t plen, size_t *pi, unsigned char c)
{
    size_t i = *pi + 1;
    bool negate = i < plen && pattern[i] == '^';
    bool found = false;
    if (negate)
        i++;
    while (i < plen && pattern[i] != ']') {
        if (pattern[i] == '\\' && i + 1 < plen) {
            found = found || (unsigned char)pattern[i + 1] == c;
            i += 2;
        } else if (i + 2 < plen && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
            unsigned char lo = (unsigned char)pattern[i];
            unsigned char hi = (unsigned char)pattern[i + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            found = found || (c >= lo && c <= hi);
            i += 3;
        } else {
            found = found || (unsigned char)pattern[i] == c;
            i++;
        }
    }
    *pi = i < plen ? i + 1 : i;
    return negate ? !found : found;
}

/* Glob-style match over bytes, as KEYS and SCAN MATCH use: * ? [abc]
 * [^a] [a-z] and backslash escapes. Stars backtrack to the last star only,
 * so the cost is O(pattern * string) at worst. */
static bool glob_match(const char *pattern, size_t plen, const char *str, size_t slen)
{
    size_t pi = 0, si = 0;
    size_t star_pi = SIZE_MAX, star_si = 0;
    while (si < slen) {
        if (pi < plen && pattern[pi] == '*') {
            star_pi = ++pi;
            star_si = si;
            continue;
        }
        if (pi < plen) {
            size_t next = pi;
            bool ok;
            if (pattern[pi] == '?') {
                ok = true;
                next = pi + 1;
            } else if (pattern[pi] == '[') {
                ok = class_match(pattern, plen, &next, (unsigned char)str[si]);
            } else if (pattern[pi] == '\\' && pi + 1 < plen) {
                ok = pattern[pi + 1] == str[si];
                next = pi + 2;
            } else {
                ok = pattern[pi] == str[si];
                next = pi + 1;
            }
            if (ok) {
                pi = next;
                si++;
                continue;
            }
        }
        if (star_pi == SIZE_MAX)
            return false;
        pi = star_pi;
        si = ++star_si;
    }
    while (pi < plen && pattern[pi] == '*')
        pi++;
    return pi == plen;
}

typedef struct key_scan {
    const view_t *view;
    const cmd_arg_t *pattern; /* NULL matches every key */
    int64_t now_ms;
    pc_buf_t keys;            /* RESP bulks, one per key */
    size_t count;
} key_scan_t;

/* Collects the live keys this node is the first owner of, so that KEYS
 * and SCAN sent to every member list each key once. */
static int collect_key(const store_entry_t *e, void *arg)
{
    key_scan_t *scan = arg;
    if ((e->flags & STORE_FLAG_TOMBSTONE) || (e->expire_ms != 0 && e->expire_ms <= scan->now_ms))
        return 0;
    if (scan->view != NULL) {
        uint32_t owners[VIEW_MAX_REPLICAS];
        size_t n = view_owners(scan->view, e->hash, owners);
        if (n == 0 || (int)owners[0] != scan->view->self)
            return 0;
    }
    if (scan->pattern != NULL &&
        !glob_match(scan->pattern->ptr, scan->pattern->len, e->key, e->key_len))
        return 0;
    resp_add_bulk(&scan->keys, e->key, e->key_len);
    scan->count++;
    return buf_error(&scan->keys) != PC_OK;
}

static void reply_keys(cmd_ctx_t *ctx, const cmd_arg_t *pattern, bool as_scan)
{
    key_scan_t scan = {.pattern = pattern, .now_ms = ctx->now_ms};
    buf_init(&scan.keys, ctx->out->max);

    store_read_lock();
    scan.view = ctx->node ? rcu_dereference(ctx->node->view) : NULL;
    store_foreach(ctx->store, collect_key, &scan);
    store_read_unlock();

    if (buf_error(&scan.keys) != PC_OK) {
        resp_add_error(ctx->out, "ERR the key list exceeds the reply size limit; "
                                 "use a narrower pattern");
    } else {
        if (as_scan) {
            resp_add_array(ctx->out, 2);
            resp_add_cstr(ctx->out, "0");
        }
        resp_add_array(ctx->out, scan.count);
        buf_append(ctx->out, scan.keys.data, scan.keys.len);
    }
    buf_fini(&scan.keys);
}

static void cmd_keys(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    reply_keys(ctx, &argv[1], false);
}

/* SCAN returns every matching key in one call, with cursor 0, which the
 * SCAN contract allows since COUNT is only a hint.
 * NOTE: a very large keyspace therefore comes back in one reply. */
static void cmd_scan(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    long long cursor;
    if (cmd_parse_ll(argv[1].ptr, argv[1].len, &cursor) != 0 || cursor < 0) {
        resp_add_error(ctx->out, "ERR invalid cursor");
        return;
    }

    const cmd_arg_t *pattern = NULL;
    bool strings = true;
    for (int i = 2; i < argc; i += 2) {
        long long count;
        if (i + 1 >= argc) {
            resp_add_error(ctx->out, "ERR syntax error");
            return;
        }
        if (cmd_arg_is(&argv[i], "match")) {
            pattern = &argv[i + 1];
        } else if (cmd_arg_is(&argv[i], "count")) {
            if (cmd_parse_ll(argv[i + 1].ptr, argv[i + 1].len, &count) != 0) {
                resp_add_error(ctx->out, "ERR value is not an integer or out of range");
                return;
            }
            if (count < 1) {
                resp_add_error(ctx->out, "ERR syntax error");
                return;
            }
        } else if (cmd_arg_is(&argv[i], "type")) {
            strings = cmd_arg_is(&argv[i + 1], "string");
        } else {
            resp_add_error(ctx->out, "ERR syntax error");
            return;
        }
    }

    /* Only strings exist, and a cursor other than 0 is past the end. */
    if (!strings || cursor != 0) {
        resp_add_array(ctx->out, 2);
        resp_add_cstr(ctx->out, "0");
        resp_add_array(ctx->out, 0);
        return;
    }
    reply_keys(ctx, pattern, true);
}

static void cmd_time(cmd_ctx_t *ctx, int argc, const cmd_arg_t *argv)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char seconds[32];
    char micros[32];
    snprintf(seconds, sizeof seconds, "%lld", (long long)now.tv_sec);
    snprintf(micros, sizeof micros, "%ld", now.tv_nsec / 1000);
    resp_add_array(ctx->out, 2);
    resp_add_cstr(ctx->out, seconds);
    resp_add_cstr(ctx->out, micros);
}

const cmd_def_t cmd_server_table[] = {
    {"ping", -1, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_ping},
    {"echo", 2, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_echo},
    {"quit", -1, CMD_CLIENT, 0, 0, 0, CMD_MERGE_NONE, cmd_quit},
    {"select", 2, CMD_CLIENT, 0, 0, 0, CMD_MERGE_NONE, cmd_select},
    {"hello", -1, CMD_CLIENT, 0, 0, 0, CMD_MERGE_NONE, cmd_hello},
    {"client", -2, CMD_CLIENT, 0, 0, 0, CMD_MERGE_NONE, cmd_client},
    {"command", -1, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_command},
    {"config", -2, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_config},
    {"dbsize", 1, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_dbsize},
    {"flushall", -1, CMD_ALL_NODES, 0, 0, 0, CMD_MERGE_OK, cmd_flushall},
    {"flushdb", -1, CMD_ALL_NODES, 0, 0, 0, CMD_MERGE_OK, cmd_flushall},
    {"keys", 2, CMD_ALL_NODES, 0, 0, 0, CMD_MERGE_CONCAT, cmd_keys},
    {"scan", -2, CMD_ALL_NODES, 0, 0, 0, CMD_MERGE_SCAN, cmd_scan},
    {"time", 1, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_time},
    {"info", -1, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_info},
    {"cluster", -2, CMD_NOKEY, 0, 0, 0, CMD_MERGE_NONE, cmd_cluster},
    {NULL, 0, 0, 0, 0, 0, CMD_MERGE_NONE, NULL},
};
