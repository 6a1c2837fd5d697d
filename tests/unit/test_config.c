/* Unit tests of the configuration table: flags, PEERCACHE_* variables,
 * defaults derived from other settings, and the errors that name the
 * flag and value. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define ARGC(argv) ((int)(sizeof(argv) / sizeof((argv)[0])))

static config_result_t parse(int argc, char **argv, config_t *cfg, char *err)
{
    return config_parse(cfg, argc, argv, err, 512);
}

/* Criterion runs each test in its own process, so environment changes
 * stay inside the test. */
static void clear_env(void)
{
    const char *names[] = {"PEERCACHE_NODE_ID", "PEERCACHE_BIND", "PEERCACHE_ADVERTISE",
                           "PEERCACHE_PORT", "PEERCACHE_PEER_PORT", "PEERCACHE_PUB_PORT",
                           "PEERCACHE_SEEDS", "PEERCACHE_REPLICAS", "PEERCACHE_VNODES",
                           "PEERCACHE_THREADS", "PEERCACHE_LOG_LEVEL"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
}

TestSuite(config, .init = clear_env);

Test(config, defaults)
{
    char *argv[] = {"peercached", "--advertise", "host1"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_RUN, "%s", err);
    cr_assert_str_eq(cfg.bind, "0.0.0.0");
    cr_assert_eq(cfg.port, 7379);
    cr_assert_eq(cfg.peer_port, 7380);
    cr_assert_eq(cfg.pub_port, 7381);
    cr_assert_eq(cfg.replicas, 2);
    cr_assert_eq(cfg.vnodes, 128);
    cr_assert_geq(cfg.threads, 1);
    cr_assert_eq(cfg.seed_count, 0);
    cr_assert_eq(cfg.log_level, PC_LOG_NOTICE);
    cr_assert_str_eq(cfg.node_id, "host1:7380");
}

Test(config, flags_override_environment)
{
    setenv("PEERCACHE_PORT", "7001", 1);
    setenv("PEERCACHE_REPLICAS", "3", 1);
    char *argv[] = {"peercached", "--advertise", "h", "--port", "7002"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_RUN, "%s", err);
    cr_assert_eq(cfg.port, 7002);
    cr_assert_eq(cfg.replicas, 3);
}

Test(config, equals_form_and_seeds)
{
    char *argv[] = {"peercached", "--advertise=h", "--seeds=node1:7380,10.0.0.2:7390",
                    "--pub-port=9000", "--log-level=debug"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_RUN, "%s", err);
    cr_assert_eq(cfg.seed_count, 2);
    cr_assert_str_eq(cfg.seeds[0].host, "node1");
    cr_assert_eq(cfg.seeds[0].port, 7380);
    cr_assert_str_eq(cfg.seeds[1].host, "10.0.0.2");
    cr_assert_eq(cfg.seeds[1].port, 7390);
    cr_assert_eq(cfg.pub_port, 9000);
    cr_assert_eq(cfg.log_level, PC_LOG_DEBUG);
}

Test(config, invalid_values_name_flag_and_value)
{
    static const struct {
        const char *flag;
        const char *value;
    } cases[] = {
        {"--port", "0"},          {"--port", "65536"},      {"--port", "12x"},
        {"--replicas", "0"},      {"--replicas", "17"},     {"--vnodes", "5000"},
        {"--threads", "-1"},      {"--node-id", "has space"}, {"--seeds", "nohostport"},
        {"--seeds", "h:0"},       {"--bind", "localhost"},  {"--log-level", "loud"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"peercached", "--advertise", "h", (char *)cases[i].flag,
                        (char *)cases[i].value};
        config_t cfg;
        char err[512] = "";

        cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_INVALID,
                     "%s %s was accepted", cases[i].flag, cases[i].value);
        cr_assert(strstr(err, cases[i].flag) != NULL, "error '%s' does not name %s", err,
                  cases[i].flag);
        cr_assert(strstr(err, cases[i].value) != NULL, "error '%s' does not name '%s'",
                  err, cases[i].value);
    }
}

Test(config, invalid_environment_names_variable)
{
    setenv("PEERCACHE_VNODES", "lots", 1);
    char *argv[] = {"peercached", "--advertise", "h"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "PEERCACHE_VNODES") != NULL, "%s", err);
    cr_assert(strstr(err, "lots") != NULL, "%s", err);
}

Test(config, conflicting_ports_rejected)
{
    char *same_client[] = {"peercached", "--advertise", "h", "--port", "7380"};
    char *same_pub[] = {"peercached", "--advertise", "h", "--pub-port", "7380"};
    char *no_room[] = {"peercached", "--advertise", "h", "--peer-port", "65535"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(same_client), same_client, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "conflicting") != NULL, "%s", err);
    cr_assert_eq(parse(ARGC(same_pub), same_pub, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "conflicting") != NULL, "%s", err);
    cr_assert_eq(parse(ARGC(no_room), no_room, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "--pub-port") != NULL, "%s", err);
}

Test(config, unknown_and_missing)
{
    char *unknown[] = {"peercached", "--colour", "red"};
    char *missing[] = {"peercached", "--port"};
    char *stray[] = {"peercached", "extra"};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(unknown), unknown, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "--colour") != NULL, "%s", err);
    cr_assert_eq(parse(ARGC(missing), missing, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "missing value for --port") != NULL, "%s", err);
    cr_assert_eq(parse(ARGC(stray), stray, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "extra") != NULL, "%s", err);
}

Test(config, too_many_seeds_rejected)
{
    char seeds[CONFIG_MAX_SEEDS * 16 + 32] = "";
    for (int i = 0; i <= CONFIG_MAX_SEEDS; i++) {
        char one[16];
        snprintf(one, sizeof one, "%sh%d:1", i ? "," : "", i);
        strcat(seeds, one);
    }
    char *argv[] = {"peercached", "--advertise", "h", "--seeds", seeds};
    config_t cfg;
    char err[512] = "";

    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_INVALID);
    cr_assert(strstr(err, "--seeds") != NULL, "%s", err);
}

Test(config, help_lists_every_flag, .init = cr_redirect_stdout)
{
    char *argv[] = {"peercached", "--help"};
    config_t cfg;
    char err[512] = "";

    clear_env();
    cr_assert_eq(parse(ARGC(argv), argv, &cfg, err), CONFIG_EXIT_OK);
    fflush(stdout);

    FILE *out = cr_get_redirected_stdout();
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, out);
    text[len] = '\0';
    const char *flags[] = {"--node-id", "--bind", "--advertise", "--port", "--peer-port",
                           "--pub-port", "--seeds", "--replicas", "--vnodes", "--threads",
                           "--log-level"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert(strstr(text, flags[i]) != NULL, "--help does not list %s", flags[i]);
    cr_assert(strstr(text, "default: 7379") != NULL, "--help does not give defaults");
}

Test(config, node_id_validation)
{
    cr_assert(config_id_valid("node-1.a_b:7380", 15));
    cr_assert_not(config_id_valid("", 0));
    cr_assert_not(config_id_valid("a/b", 3));
    char long_id[CONFIG_MAX_ID_BYTES + 2];
    memset(long_id, 'a', sizeof long_id);
    cr_assert(config_id_valid(long_id, CONFIG_MAX_ID_BYTES));
    cr_assert_not(config_id_valid(long_id, CONFIG_MAX_ID_BYTES + 1));
}
