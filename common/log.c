/* log: formatting and printing of log lines. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX_BYTES 1024
#define LOG_NODE_ID_MAX_BYTES 64

static char log_node_id[LOG_NODE_ID_MAX_BYTES + 1] = "-";
static pc_log_level_t log_max_level = PC_LOG_NOTICE;

static const char *const log_level_names[] = {
    "error", "warning", "notice", "info", "debug",
};

void pc_log_init(const char *node_id, pc_log_level_t level)
{
    snprintf(log_node_id, sizeof log_node_id, "%s", node_id ? node_id : "-");
    log_max_level = level;
}

int pc_log_level_parse(const char *name, pc_log_level_t *level)
{
    for (int i = 0; i <= PC_LOG_DEBUG; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *level = (pc_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *pc_log_level_name(pc_log_level_t level)
{
    if ((unsigned)level > PC_LOG_DEBUG)
        return "unknown";
    return log_level_names[level];
}

int pc_log_enabled(pc_log_level_t level)
{
    return level <= log_max_level;
}

void pc_log(pc_log_level_t level, const char *module, const char *fmt, ...)
{
    if (!pc_log_enabled(level))
        return;

    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);

    char line[LOG_LINE_MAX_BYTES];
    int used = snprintf(line, sizeof line,
                        "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s: ",
                        utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                        utc.tm_hour, utc.tm_min, utc.tm_sec,
                        now.tv_nsec / 1000000, pc_log_level_name(level),
                        log_node_id, module);
    if (used < 0 || used >= (int)sizeof line - 1)
        used = (int)sizeof line - 2;

    va_list args;
    va_start(args, fmt);
    int body = vsnprintf(line + used, sizeof line - (size_t)used - 1, fmt, args);
    va_end(args);
    if (body > 0)
        used += body;
    if (used > (int)sizeof line - 2)
        used = (int)sizeof line - 2;
    line[used++] = '\n';

    /* One write per line keeps lines whole when threads log at once. A
     * short write to a full pipe loses the tail of the line. */
    ssize_t written = write(STDOUT_FILENO, line, (size_t)used);
    (void)written;
}
