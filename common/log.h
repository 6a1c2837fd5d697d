/* log: the one log line format of the project.
 *
 * Each event is one line on standard output:
 *   2026-12-04T20:05:39.123Z notice node1 cluster: member joined id=node4
 * that is, UTC time with milliseconds, level, node id, module, then the
 * message and key=value fields. Each line is written with a single write(2)
 * so lines from different threads never interleave. Keys, values and
 * secrets are never logged. Any thread may log once pc_log_init has run.
 */
#ifndef PC_LOG_H
#define PC_LOG_H

typedef enum {
    PC_LOG_ERROR = 0,
    PC_LOG_WARNING,
    PC_LOG_NOTICE,
    PC_LOG_INFO,
    PC_LOG_DEBUG,
} pc_log_level_t;

/* Sets the node id printed on every line (copied, at most 64 bytes kept)
 * and the most verbose level that is printed. Call before starting
 * threads; later calls are not thread-safe. */
void pc_log_init(const char *node_id, pc_log_level_t level);

/* Parses "error", "warning", "notice", "info" or "debug" into *level.
 * Returns 0 on success and -1 for any other name, leaving *level alone. */
int pc_log_level_parse(const char *name, pc_log_level_t *level);

/* Returns the level's name, for example "notice". */
const char *pc_log_level_name(pc_log_level_t level);

/* Returns whether a line at this level would be printed. */
int pc_log_enabled(pc_log_level_t level);

/* Formats and prints one line. module is a short lower-case word such as
 * "cluster" or "server". Lines longer than 1 KiB are cut. */
void pc_log(pc_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_ERROR(module, ...) pc_log(PC_LOG_ERROR, module, __VA_ARGS__)
#define LOG_WARNING(module, ...) pc_log(PC_LOG_WARNING, module, __VA_ARGS__)
#define LOG_NOTICE(module, ...) pc_log(PC_LOG_NOTICE, module, __VA_ARGS__)
#define LOG_INFO(module, ...)                                                \
    do {                                                                     \
        if (pc_log_enabled(PC_LOG_INFO))                                     \
            pc_log(PC_LOG_INFO, module, __VA_ARGS__);                        \
    } while (0)
#define LOG_DEBUG(module, ...)                                               \
    do {                                                                     \
        if (pc_log_enabled(PC_LOG_DEBUG))                                    \
            pc_log(PC_LOG_DEBUG, module, __VA_ARGS__);                       \
    } while (0)

#endif
