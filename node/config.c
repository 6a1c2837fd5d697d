/* config: table-driven parsing and validation of the daemon's settings. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_VERSION "0.1.0"
#define CONFIG_MAX_THREADS 128
#define CONFIG_MAX_REPLICAS 16
#define CONFIG_MAX_VNODES 4096

typedef enum {
    OPT_ID,       /* node id */
    OPT_HOST,     /* host name or address */
    OPT_ADDR,     /* numeric IPv4 address */
    OPT_PORT,     /* TCP port, 1..65535 */
    OPT_UINT,     /* bounded unsigned integer */
    OPT_SEEDS,    /* comma-separated host:port list */
    OPT_LOGLEVEL, /* log level name */
} opt_type_t;

typedef struct opt {
    const char *flag;    /* without the leading "--" */
    const char *env;
    opt_type_t type;
    const char *fallback; /* default, as text; NULL when derived */
    const char *derived;  /* how the default is derived, for --help */
    unsigned long min;
    unsigned long max;
    const char *unit;
    const char *help;
} opt_t;

static const opt_t opts[] = {
    {"node-id", "PEERCACHE_NODE_ID", OPT_ID, NULL, "<advertise>:<peer-port>",
     0, 0, "name", "stable name of this node in the cluster"},
    {"bind", "PEERCACHE_BIND", OPT_ADDR, "0.0.0.0", NULL, 0, 0, "address",
     "numeric IPv4 address every listener binds"},
    {"advertise", "PEERCACHE_ADVERTISE", OPT_HOST, NULL, "the host name", 0, 0,
     "host", "address peers use to reach this node"},
    {"port", "PEERCACHE_PORT", OPT_PORT, "7379", NULL, 1, 65535, "port",
     "RESP client port"},
    {"peer-port", "PEERCACHE_PEER_PORT", OPT_PORT, "7380", NULL, 1, 65535,
     "port", "ZeroMQ ROUTER port: joins, forwarded requests, handoff"},
    {"pub-port", "PEERCACHE_PUB_PORT", OPT_PORT, NULL, "peer-port + 1", 1,
     65535, "port", "ZeroMQ PUB port: the replication stream"},
    {"seeds", "PEERCACHE_SEEDS", OPT_SEEDS, "", "none", 0, 0, "host:port,...",
     "peer ports to join through; none starts a new cluster"},
    {"replicas", "PEERCACHE_REPLICAS", OPT_UINT, "2", NULL, 1,
     CONFIG_MAX_REPLICAS, "copies",
     "copies of every key, capped at the member count"},
    {"vnodes", "PEERCACHE_VNODES", OPT_UINT, "128", NULL, 1, CONFIG_MAX_VNODES,
     "tokens", "ring tokens per node"},
    {"threads", "PEERCACHE_THREADS", OPT_UINT, NULL, "number of cores", 1,
     CONFIG_MAX_THREADS, "threads", "client I/O threads"},
    {"log-level", "PEERCACHE_LOG_LEVEL", OPT_LOGLEVEL, "notice", NULL, 0, 0,
     "level", "error, warning, notice, info or debug"},
};

#define OPT_COUNT (sizeof opts / sizeof opts[0])

int config_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > CONFIG_MAX_ID_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
            return 0;
    }
    return 1;
}

static int host_valid(const char *host)
{
    size_t len = strlen(host);
    if (len == 0 || len > CONFIG_MAX_HOST_BYTES)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':')
            return 0;
    }
    return 1;
}

static int parse_ulong(const char *text, unsigned long min, unsigned long max,
                       unsigned long *out)
{
    if (*text == '\0' || !isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    char *end;
    unsigned long value = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* Splits "host:port" at the last colon. */
static int parse_seed(const char *text, size_t len, config_seed_t *seed)
{
    char item[CONFIG_MAX_HOST_BYTES + 8];
    if (len == 0 || len >= sizeof item)
        return -1;
    memcpy(item, text, len);
    item[len] = '\0';

    char *colon = strrchr(item, ':');
    if (colon == NULL || colon == item)
        return -1;
    *colon = '\0';

    unsigned long port;
    if (!host_valid(item) || parse_ulong(colon + 1, 1, 65535, &port) != 0)
        return -1;
    memcpy(seed->host, item, strlen(item) + 1);
    seed->port = (uint16_t)port;
    return 0;
}

static int parse_seeds(config_t *cfg, const char *text)
{
    cfg->seed_count = 0;
    const char *cursor = text;
    while (*cursor != '\0') {
        const char *comma = strchr(cursor, ',');
        size_t len = comma ? (size_t)(comma - cursor) : strlen(cursor);
        if (cfg->seed_count == CONFIG_MAX_SEEDS)
            return -1;
        if (parse_seed(cursor, len, &cfg->seeds[cfg->seed_count]) != 0)
            return -1;
        cfg->seed_count++;
        cursor += len;
        if (*cursor == ',')
            cursor++;
    }
    return 0;
}

/* Describes the values an option accepts, for error messages. */
static void describe_expected(const opt_t *opt, char *out, size_t out_len)
{
    if (opt->type == OPT_PORT || opt->type == OPT_UINT)
        snprintf(out, out_len, "an integer from %lu to %lu", opt->min, opt->max);
    else if (opt->type == OPT_SEEDS)
        snprintf(out, out_len, "host:port[,host:port], at most %d", CONFIG_MAX_SEEDS);
    else if (opt->type == OPT_ID)
        snprintf(out, out_len, "1 to %d letters, digits or . _ : -", CONFIG_MAX_ID_BYTES);
    else if (opt->type == OPT_ADDR)
        snprintf(out, out_len, "a numeric IPv4 address such as 0.0.0.0 or 127.0.0.1");
    else if (opt->type == OPT_LOGLEVEL)
        snprintf(out, out_len, "error, warning, notice, info or debug");
    else
        snprintf(out, out_len, "a host name or address");
}

/* Stores one option value; returns 0 or -1 when the value is invalid. */
static int apply_opt(config_t *cfg, const opt_t *opt, const char *value)
{
    unsigned long number = 0;
    struct in_addr ipv4;

    switch (opt->type) {
    case OPT_ID:
        if (!config_id_valid(value, strlen(value)))
            return -1;
        snprintf(cfg->node_id, sizeof cfg->node_id, "%s", value);
        return 0;
    case OPT_HOST:
        if (!host_valid(value))
            return -1;
        snprintf(cfg->advertise, sizeof cfg->advertise, "%s", value);
        return 0;
    case OPT_ADDR:
        /* ZeroMQ binds to an address or an interface, never to a name
         * that needs DNS, so only numeric IPv4 addresses are taken. */
        if (inet_pton(AF_INET, value, &ipv4) != 1)
            return -1;
        snprintf(cfg->bind, sizeof cfg->bind, "%s", value);
        return 0;
    case OPT_SEEDS:
        return parse_seeds(cfg, value);
    case OPT_LOGLEVEL:
        return pc_log_level_parse(value, &cfg->log_level);
    case OPT_PORT:
    case OPT_UINT:
        if (parse_ulong(value, opt->min, opt->max, &number) != 0)
            return -1;
        break;
    }

    if (strcmp(opt->flag, "port") == 0)
        cfg->port = (uint16_t)number;
    else if (strcmp(opt->flag, "peer-port") == 0)
        cfg->peer_port = (uint16_t)number;
    else if (strcmp(opt->flag, "pub-port") == 0)
        cfg->pub_port = (uint16_t)number;
    else if (strcmp(opt->flag, "replicas") == 0)
        cfg->replicas = (uint32_t)number;
    else if (strcmp(opt->flag, "vnodes") == 0)
        cfg->vnodes = (uint32_t)number;
    else if (strcmp(opt->flag, "threads") == 0)
        cfg->threads = (uint32_t)number;
    return 0;
}

static const opt_t *find_opt(const char *flag, size_t len)
{
    for (size_t i = 0; i < OPT_COUNT; i++) {
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, flag, len) == 0)
            return &opts[i];
    }
    return NULL;
}

static void set_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->bind, sizeof cfg->bind, "0.0.0.0");
    cfg->port = 7379;
    cfg->peer_port = 7380;
    cfg->replicas = 2;
    cfg->vnodes = 128;
    cfg->log_level = PC_LOG_NOTICE;

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores < 1 ? 1 : (uint32_t)cores;
    if (cfg->threads > CONFIG_MAX_THREADS)
        cfg->threads = CONFIG_MAX_THREADS;
}

/* Applies PEERCACHE_* variables; flags parsed later override them. */
static int apply_env(config_t *cfg, char *err, size_t err_len, int *pub_set)
{
    for (size_t i = 0; i < OPT_COUNT; i++) {
        const char *value = getenv(opts[i].env);
        if (value == NULL)
            continue;
        if (apply_opt(cfg, &opts[i], value) != 0) {
            char expected[96];
            describe_expected(&opts[i], expected, sizeof expected);
            snprintf(err, err_len, "invalid value '%.300s' for %s (expected %s)",
                     value, opts[i].env, expected);
            return -1;
        }
        if (strcmp(opts[i].flag, "pub-port") == 0)
            *pub_set = 1;
    }
    return 0;
}

static config_result_t apply_args(config_t *cfg, int argc, char **argv,
                                  char *err, size_t err_len, int *pub_set)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(stdout);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("peercached %s\n", CONFIG_VERSION);
            return CONFIG_EXIT_OK;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%.300s' (see --help)", arg);
            return CONFIG_INVALID;
        }

        /* Both "--flag value" and "--flag=value" are accepted. */
        const char *name = arg + 2;
        const char *equals = strchr(name, '=');
        size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
        const opt_t *opt = find_opt(name, name_len);
        if (opt == NULL) {
            snprintf(err, err_len, "unknown flag '%.300s' (see --help)", arg);
            return CONFIG_INVALID;
        }
        const char *value = equals ? equals + 1 : NULL;
        if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "missing value for --%s", opt->flag);
                return CONFIG_INVALID;
            }
            value = argv[++i];
        }
        if (apply_opt(cfg, opt, value) != 0) {
            char expected[96];
            describe_expected(opt, expected, sizeof expected);
            snprintf(err, err_len, "invalid value '%.300s' for --%s (expected %s)",
                     value, opt->flag, expected);
            return CONFIG_INVALID;
        }
        if (strcmp(opt->flag, "pub-port") == 0)
            *pub_set = 1;
    }
    return CONFIG_RUN;
}

static int check_conflicts(config_t *cfg, char *err, size_t err_len)
{
    if (cfg->port == cfg->peer_port || cfg->port == cfg->pub_port) {
        snprintf(err, err_len, "conflicting ports: --port %u is also used as "
                 "--peer-port or --pub-port", cfg->port);
        return -1;
    }
    if (cfg->peer_port == cfg->pub_port) {
        snprintf(err, err_len, "conflicting ports: --peer-port and --pub-port "
                 "are both %u", cfg->peer_port);
        return -1;
    }
    return 0;
}

/* Fills the values whose default depends on other settings. */
static int derive_defaults(config_t *cfg, int pub_set, char *err, size_t err_len)
{
    if (!pub_set) {
        if (cfg->peer_port == 65535) {
            snprintf(err, err_len, "--peer-port 65535 leaves no port for the "
                     "default --pub-port (peer-port + 1); set --pub-port");
            return -1;
        }
        cfg->pub_port = (uint16_t)(cfg->peer_port + 1);
    }

    if (cfg->advertise[0] == '\0') {
        char host[CONFIG_MAX_HOST_BYTES + 1] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !host_valid(host)) {
            snprintf(err, err_len, "cannot derive --advertise from the host "
                     "name '%.200s'; set --advertise", host);
            return -1;
        }
        snprintf(cfg->advertise, sizeof cfg->advertise, "%s", host);
    }

    if (cfg->node_id[0] == '\0') {
        char id[CONFIG_MAX_HOST_BYTES + 8];
        snprintf(id, sizeof id, "%s:%u", cfg->advertise, cfg->peer_port);
        if (!config_id_valid(id, strlen(id))) {
            snprintf(err, err_len, "the derived node id '%.200s' is longer than "
                     "%d bytes or has invalid characters; set --node-id",
                     id, CONFIG_MAX_ID_BYTES);
            return -1;
        }
        memcpy(cfg->node_id, id, strlen(id) + 1);
    }
    return 0;
}

config_result_t config_parse(config_t *cfg, int argc, char **argv, char *err,
                             size_t err_len)
{
    int pub_set = 0;

    set_defaults(cfg);
    if (apply_env(cfg, err, err_len, &pub_set) != 0)
        return CONFIG_INVALID;

    config_result_t result = apply_args(cfg, argc, argv, err, err_len, &pub_set);
    if (result != CONFIG_RUN)
        return result;

    if (derive_defaults(cfg, pub_set, err, err_len) != 0)
        return CONFIG_INVALID;
    if (check_conflicts(cfg, err, err_len) != 0)
        return CONFIG_INVALID;
    return CONFIG_RUN;
}

void config_print_help(FILE *out)
{
    fprintf(out,
            "Usage: peercached [--flag value]...\n"
            "peercache node: a Redis-protocol cache that joins a peer-to-peer "
            "cluster.\n"
            "Every flag can also be set with its environment variable; the "
            "flag wins.\n\n");
    for (size_t i = 0; i < OPT_COUNT; i++) {
        const opt_t *opt = &opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s %s", opt->flag, opt->unit);
        const char *fallback = opt->fallback && opt->fallback[0]
                                   ? opt->fallback : opt->derived;
        fprintf(out, "  %-28s %s\n  %-28s default: %s; env %s", left,
                opt->help, "", fallback, opt->env);
        if (opt->type == OPT_UINT || (opt->type == OPT_PORT))
            fprintf(out, "; range %lu..%lu", opt->min, opt->max);
        fprintf(out, "\n");
    }
    fprintf(out, "  %-28s print this text\n  %-28s print the version\n",
            "--help", "--version");
}
