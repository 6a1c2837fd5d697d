/* config: the daemon's settings, from flags and PEERCACHE_* variables.
 *
 * One table (name, environment variable, type, default, bounds, unit,
 * help) drives parsing, validation and --help. Every flag is also read
 * from PEERCACHE_<FLAG_IN_UPPER_SNAKE>; a flag given on the command line
 * wins over the environment. Parsing runs once on the main thread before
 * any other thread starts; afterwards the config is read-only.
 */
#ifndef PC_CONFIG_H
#define PC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_MAX_SEEDS 32
#define CONFIG_MAX_ID_BYTES 64
#define CONFIG_MAX_HOST_BYTES 255

typedef struct config_seed {
    char host[CONFIG_MAX_HOST_BYTES + 1];
    uint16_t port;
} config_seed_t;

typedef struct config {
    char node_id[CONFIG_MAX_ID_BYTES + 1];
    char bind[CONFIG_MAX_HOST_BYTES + 1];
    char advertise[CONFIG_MAX_HOST_BYTES + 1];
    uint16_t port;
    uint16_t peer_port;
    uint16_t pub_port;
    config_seed_t seeds[CONFIG_MAX_SEEDS];
    size_t seed_count;
    uint32_t replicas;
    uint32_t vnodes;
    uint32_t threads;
    pc_log_level_t log_level;
} config_t;

typedef enum {
    CONFIG_RUN = 0, /* settings are valid: start the node */
    CONFIG_EXIT_OK, /* --help or --version was printed: exit 0 */
    CONFIG_INVALID, /* an error was written to err: exit non-zero */
} config_result_t;

/* Fills cfg from argv and the environment. On CONFIG_INVALID, err holds a
 * one-line message naming the flag or variable and the value. */
config_result_t config_parse(config_t *cfg, int argc, char **argv,
                             char *err, size_t err_len);

/* Prints the usage text, one line per flag with its unit and default. */
void config_print_help(FILE *out);

/* Returns whether the node id is well formed: 1 to 64 bytes of letters,
 * digits and . _ : - */
int config_id_valid(const char *id, size_t len);

#endif
