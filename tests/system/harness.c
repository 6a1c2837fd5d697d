/* harness: starts and stops peercached processes for system tests, and a
 * small blocking RESP client. See harness.h for the process model. */
#include "harness.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PEERCACHED_PATH
#error "PEERCACHED_PATH must name the peercached binary (set by tests/meson.build)"
#endif

#define LOG_TAIL_LINES 40
#define LOG_TAIL_BYTES (64 * 1024)
#define PORTS_MAX (HARNESS_MAX_NODES * 3)
#define READ_CHUNK_BYTES (64 * 1024)
#define HEADER_LINE_MAX 64

static char temp_dir[PATH_MAX];
static harness_node_t nodes[HARNESS_MAX_NODES];
static size_t node_count;
static int ports_used[PORTS_MAX];
static size_t port_count;
static bool test_passed;
static bool exit_handler_registered;

long long harness_now_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void harness_sleep_ms(int ms)
{
    struct timespec delay = {ms / 1000, (long)(ms % 1000) * 1000000};

    while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
        continue;
}

static void *xrealloc(void *ptr, size_t size)
{
    void *grown = realloc(ptr, size);

    if (grown == NULL) {
        fprintf(stderr, "harness: out of memory allocating %zu bytes\n",
                size);
        abort();
    }
    return grown;
}

/* ---- ports ---------------------------------------------------------- */

static bool port_is_used(int port)
{
    for (size_t i = 0; i < port_count; i++) {
        if (ports_used[i] == port)
            return true;
    }
    return false;
}

/* Returns a port the kernel reports free on 127.0.0.1, or 0. Another
 * process could take it before the node binds it. Linux (since 4.6) tries
 * even ports first for bind(0) and odd ones for connect(), so outgoing
 * connections of other tests rarely take it. */
static int probe_free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t addr_len = sizeof(addr);
    int port = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

static int allocate_port(void)
{
    if (port_count == PORTS_MAX)
        return 0;

    for (int attempt = 0; attempt < 100; attempt++) {
        int port = probe_free_port();

        if (port != 0 && !port_is_used(port)) {
            ports_used[port_count++] = port;
            return port;
        }
    }
    return 0;
}

/* ---- setup and teardown ------------------------------------------- */

/* Runs at exit of the test process if teardown did not, for example when
 * a test calls exit(). SIGKILL because nothing waits for a clean stop. */
static void kill_nodes_at_exit(void)
{
    for (size_t i = 0; i < node_count; i++) {
        if (nodes[i].pid > 0) {
            kill(nodes[i].pid, SIGKILL);
            waitpid(nodes[i].pid, NULL, 0);
            nodes[i].pid = 0;
        }
    }
}

void harness_setup(void)
{
    strcpy(temp_dir, "/tmp/peercache-test-XXXXXX");
    if (mkdtemp(temp_dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp under /tmp failed: %s\n",
                strerror(errno));
        temp_dir[0] = '\0';
    }

    node_count = 0;
    port_count = 0;
    test_passed = false;
    if (!exit_handler_registered) {
        atexit(kill_nodes_at_exit);
        exit_handler_registered = true;
    }
}

void harness_mark_passed(void)
{
    test_passed = true;
}

/* Removes the logs and the directory; anything else a node wrote there
 * (a core file) makes rmdir fail, which is reported so it gets noticed. */
static void remove_temp_dir(void)
{
    for (size_t i = 0; i < node_count; i++)
        unlink(nodes[i].log_path);
    if (rmdir(temp_dir) != 0)
        fprintf(stderr, "harness: could not remove %s: %s\n", temp_dir,
                strerror(errno));
}

void harness_teardown(void)
{
    for (size_t i = 0; i < node_count; i++) {
        int status;

        if (nodes[i].pid > 0)
            harness_node_stop(&nodes[i], HARNESS_STOP_TIMEOUT_MS, &status);
    }

    if (temp_dir[0] == '\0')
        return;
    if (test_passed) {
        remove_temp_dir();
    } else {
        harness_dump_logs();
        fprintf(stderr, "harness: node logs kept in %s\n", temp_dir);
    }
}

/* ---- node processes ------------------------------------------------- */

harness_node_t *harness_node_add(const char *id, int replicas,
                                 const harness_node_t *seed)
{
    harness_node_t *node;

    if (temp_dir[0] == '\0') {
        fprintf(stderr, "harness: no temporary directory; did .init run?\n");
        return NULL;
    }
    if (node_count == HARNESS_MAX_NODES) {
        fprintf(stderr, "harness: more than %d nodes in one test\n",
                HARNESS_MAX_NODES);
        return NULL;
    }

    node = &nodes[node_count];
    memset(node, 0, sizeof(*node));
    snprintf(node->id, sizeof(node->id), "%s", id);
    node->replicas = replicas;
    node->seed_port = seed != NULL ? seed->peer_port : 0;
    node->port = allocate_port();
    node->peer_port = allocate_port();
    node->pub_port = allocate_port();
    if (node->port == 0 || node->peer_port == 0 || node->pub_port == 0) {
        fprintf(stderr, "harness: no free loopback port for %s\n", id);
        return NULL;
    }
    snprintf(node->log_path, sizeof(node->log_path), "%s/%s.log", temp_dir,
             id);
    node_count++;
    return node;
}

typedef struct node_argv {
    char port[16], peer_port[16], pub_port[16], replicas[16], seeds[32];
    const char *argv[32];
} node_argv_t;

/* Fills args->argv for the node; built before fork because the child of
 * a threaded process may only call async-signal-safe functions. */
static void build_node_argv(const harness_node_t *node, node_argv_t *args)
{
    size_t n = 0;

    snprintf(args->port, sizeof(args->port), "%d", node->port);
    snprintf(args->peer_port, sizeof(args->peer_port), "%d", node->peer_port);
    snprintf(args->pub_port, sizeof(args->pub_port), "%d", node->pub_port);
    snprintf(args->replicas, sizeof(args->replicas), "%d", node->replicas);
    snprintf(args->seeds, sizeof(args->seeds), "127.0.0.1:%d",
             node->seed_port);

    args->argv[n++] = PEERCACHED_PATH;
    args->argv[n++] = "--node-id";
    args->argv[n++] = node->id;
    args->argv[n++] = "--bind";
    args->argv[n++] = "127.0.0.1";
    args->argv[n++] = "--advertise";
    args->argv[n++] = "127.0.0.1";
    args->argv[n++] = "--port";
    args->argv[n++] = args->port;
    args->argv[n++] = "--peer-port";
    args->argv[n++] = args->peer_port;
    args->argv[n++] = "--pub-port";
    args->argv[n++] = args->pub_port;
    args->argv[n++] = "--replicas";
    args->argv[n++] = args->replicas;
    args->argv[n++] = "--threads";
    args->argv[n++] = "2";
    args->argv[n++] = "--log-level";
    args->argv[n++] = "info";
    if (node->seed_port != 0) {
        args->argv[n++] = "--seeds";
        args->argv[n++] = args->seeds;
    }
    args->argv[n] = NULL;
}

/* Runs in the forked child. It ties the node's life to this test thread
 * and sends its output to the log. It works in the test's directory, so
 * stray files such as core dumps land there, and closes every descriptor
 * it should not inherit (Criterion's pipes, client sockets). */
static void exec_node(const node_argv_t *args, int log_fd, pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(126);
    if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
        _exit(126);
    if (chdir(temp_dir) != 0)
        _exit(126);
    close(STDIN_FILENO);
    syscall(SYS_close_range, 3u, ~0u, 0u);

    execv(args->argv[0], (char *const *)args->argv);
    _exit(127);
}

bool harness_node_start(harness_node_t *node)
{
    node_argv_t args;
    pid_t parent = getpid();
    pid_t pid;
    int log_fd;

    if (node->pid > 0) {
        fprintf(stderr, "harness: %s is already running\n", node->id);
        return false;
    }

    build_node_argv(node, &args);
    log_fd = open(node->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0644);
    if (log_fd < 0) {
        fprintf(stderr, "harness: cannot open %s: %s\n", node->log_path,
                strerror(errno));
        return false;
    }
    dprintf(log_fd, "harness: starting %s port=%d peer_port=%d pub_port=%d\n",
            node->id, node->port, node->peer_port, node->pub_port);

    pid = fork();
    if (pid == 0)
        exec_node(&args, log_fd, parent);
    close(log_fd);
    if (pid < 0) {
        fprintf(stderr, "harness: fork failed: %s\n", strerror(errno));
        return false;
    }

    node->pid = pid;
    fprintf(stderr, "harness: started %s pid=%d port=%d\n", node->id,
            (int)pid, node->port);
    return true;
}

/* Polls waitpid until the child exits or the deadline passes. */
static bool wait_child(pid_t pid, long long deadline_ms, int *status)
{
    for (;;) {
        pid_t done = waitpid(pid, status, WNOHANG);

        if (done == pid)
            return true;
        if (done < 0 && errno != EINTR)
            return false;
        if (harness_now_ms() >= deadline_ms)
            return false;
        harness_sleep_ms(10);
    }
}

bool harness_node_stop(harness_node_t *node, int timeout_ms, int *status)
{
    bool exited;

    if (node->pid <= 0) {
        fprintf(stderr, "harness: %s is not running\n", node->id);
        *status = -1;
        return false;
    }

    kill(node->pid, SIGTERM);
    exited = wait_child(node->pid, harness_now_ms() + timeout_ms, status);
    if (!exited) {
        fprintf(stderr,
                "harness: %s (pid %d) did not exit %d ms after SIGTERM; "
                "sending SIGKILL\n",
                node->id, (int)node->pid, timeout_ms);
        kill(node->pid, SIGKILL);
        waitpid(node->pid, status, 0);
    }
    node->pid = 0;
    return exited;
}

/* UBSan reports "runtime error:" and carries on with exit status 0, so
 * only the log shows it; ASan and LSan reports also change the status. */
static bool log_has_sanitizer_report(const harness_node_t *node)
{
    return harness_log_contains(node, "runtime error:") ||
           harness_log_contains(node, "ERROR: AddressSanitizer") ||
           harness_log_contains(node, "ERROR: LeakSanitizer");
}

/* Stops one node if it runs and returns whether it exited with status 0. */
static bool stop_cleanly(harness_node_t *node)
{
    int status = 0;

    if (node->pid <= 0)
        return true;
    if (!harness_node_stop(node, HARNESS_STOP_TIMEOUT_MS, &status))
        return false;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "harness: %s was killed by signal %d\n", node->id,
                WTERMSIG(status));
        return false;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        fprintf(stderr, "harness: %s exited with status %d\n", node->id,
                WEXITSTATUS(status));
        return false;
    }
    return true;
}

bool harness_stop_all(void)
{
    bool all_clean = true;

    for (size_t i = 0; i < node_count; i++) {
        if (!stop_cleanly(&nodes[i]))
            all_clean = false;
        if (log_has_sanitizer_report(&nodes[i])) {
            fprintf(stderr, "harness: %s's log contains a sanitizer report\n",
                    nodes[i].id);
            all_clean = false;
        }
    }
    return all_clean;
}

bool harness_start_cluster(harness_node_t **out, size_t count, int replicas)
{
    for (size_t i = 0; i < count; i++) {
        char id[32];

        snprintf(id, sizeof(id), "node%zu", i + 1);
        out[i] = harness_node_add(id, replicas, i == 0 ? NULL : out[0]);
        if (out[i] == NULL || !harness_node_start(out[i]))
            return false;
    }
    return harness_wait_ready(out, count, count, HARNESS_READY_TIMEOUT_MS);
}

/* ---- readiness ------------------------------------------------------ */

static size_t count_members_up(const char *listing)
{
    size_t up = 0;
    const char *line = listing;

    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        size_t line_len = end != NULL ? (size_t)(end - line) : strlen(line);

        if (memmem(line, line_len, " up", 3) != NULL)
            up++;
        line = end != NULL ? end + 1 : NULL;
    }
    return up;
}

/* Checks one node once; writes what it saw into status for the timeout
 * report. */
static bool node_is_ready(const harness_node_t *node, size_t members,
                          char *status, size_t status_cap)
{
    harness_conn_t *conn = harness_connect(node->port);
    char *pong;
    char *listing = NULL;
    size_t listing_len = 0;
    bool ready = false;

    if (conn == NULL) {
        snprintf(status, status_cap, "client port %d refused connection",
                 node->port);
        return false;
    }

    pong = harness_cmd_status(conn, "PING", NULL);
    if (pong == NULL || strcmp(pong, "PONG") != 0) {
        snprintf(status, status_cap, "PING got no +PONG");
    } else if (!harness_cmd_bulk(conn, &listing, &listing_len, "CLUSTER",
                                 "NODES", NULL) ||
               listing == NULL) {
        snprintf(status, status_cap, "CLUSTER NODES got no bulk string");
    } else {
        size_t up = count_members_up(listing);

        ready = up == members;
        snprintf(status, status_cap, "%zu of %zu members up:\n%s", up,
                 members, listing);
    }

    free(pong);
    free(listing);
    harness_conn_close(&conn);
    return ready;
}

bool harness_wait_ready(harness_node_t *const *ready_nodes, size_t count,
                        size_t members, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char status[HARNESS_MAX_NODES][1024];

    assert(count <= HARNESS_MAX_NODES);
    for (;;) {
        size_t ready = 0;

        for (size_t i = 0; i < count; i++) {
            if (node_is_ready(ready_nodes[i], members, status[i],
                              sizeof(status[i])))
                ready++;
        }
        if (ready == count)
            return true;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(100);
    }

    fprintf(stderr, "harness: cluster not ready after %d ms\n", timeout_ms);
    for (size_t i = 0; i < count; i++)
        fprintf(stderr, "  %s: %s\n", ready_nodes[i]->id, status[i]);
    return false;
}

/* ---- logs ----------------------------------------------------------- */

bool harness_log_contains(const harness_node_t *node, const char *needle)
{
    FILE *log = fopen(node->log_path, "r");
    char line[4096];
    bool found = false;

    if (log == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), log) != NULL)
        found = strcasestr(line, needle) != NULL;
    fclose(log);
    return found;
}

/* Prints the last LOG_TAIL_LINES lines of the file, reading at most
 * LOG_TAIL_BYTES from its end. */
static void print_log_tail(const harness_node_t *node)
{
    char *text = malloc(LOG_TAIL_BYTES + 1);
    int fd = open(node->log_path, O_RDONLY | O_CLOEXEC);
    off_t size;
    ssize_t got;
    size_t lines = 0;
    char *start;

    if (text == NULL || fd < 0) {
        fprintf(stderr, "----- %s: no log at %s\n", node->id, node->log_path);
        free(text);
        if (fd >= 0)
            close(fd);
        return;
    }

    size = lseek(fd, 0, SEEK_END);
    got = pread(fd, text, LOG_TAIL_BYTES,
                size > LOG_TAIL_BYTES ? size - LOG_TAIL_BYTES : 0);
    close(fd);
    if (got < 0)
        got = 0;
    text[got] = '\0';

    start = text + got;
    while (start > text && lines <= LOG_TAIL_LINES) {
        start--;
        if (*start == '\n' && start + 1 < text + got)
            lines++;
    }
    if (lines > LOG_TAIL_LINES)
        start++;

    fprintf(stderr, "----- %s: last lines of %s\n%s", node->id,
            node->log_path, start);
    if (got > 0 && text[got - 1] != '\n')
        fputc('\n', stderr);
    free(text);
}

void harness_dump_logs(void)
{
    for (size_t i = 0; i < node_count; i++)
        print_log_tail(&nodes[i]);
}

/* ---- client connection ---------------------------------------------- */

struct harness_conn {
    int fd;
    int port;
    char *out;       /* bytes appended, not yet sent */
    size_t out_len;
    size_t out_cap;
    char *in;        /* bytes received; in[in_start..in_end) not consumed */
    size_t in_start;
    size_t in_end;
    size_t in_cap;
};

harness_conn_t *harness_connect(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    struct timeval timeout = {HARNESS_IO_TIMEOUT_MS / 1000,
                              (HARNESS_IO_TIMEOUT_MS % 1000) * 1000};
    int one = 1;
    harness_conn_t *conn;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return NULL;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return NULL;
    }

    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        close(fd);
        return NULL;
    }
    conn->fd = fd;
    conn->port = port;
    return conn;
}

void harness_conn_close(harness_conn_t **conn)
{
    if (*conn == NULL)
        return;
    close((*conn)->fd);
    free((*conn)->out);
    free((*conn)->in);
    free(*conn);
    *conn = NULL;
}

void harness_append_raw(harness_conn_t *conn, const void *data, size_t len)
{
    if (conn->out_len + len > conn->out_cap) {
        size_t cap = conn->out_cap != 0 ? conn->out_cap : 4096;

        while (cap < conn->out_len + len)
            cap *= 2;
        conn->out = xrealloc(conn->out, cap);
        conn->out_cap = cap;
    }
    memcpy(conn->out + conn->out_len, data, len);
    conn->out_len += len;
}

static void append_header(harness_conn_t *conn, char kind, size_t n)
{
    char header[32];
    int len = snprintf(header, sizeof(header), "%c%zu\r\n", kind, n);

    harness_append_raw(conn, header, (size_t)len);
}

void harness_append(harness_conn_t *conn, size_t argc,
                    const char *const *argv, const size_t *lens)
{
    append_header(conn, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        size_t len = lens != NULL ? lens[i] : strlen(argv[i]);

        append_header(conn, '$', len);
        harness_append_raw(conn, argv[i], len);
        harness_append_raw(conn, "\r\n", 2);
    }
}

bool harness_flush(harness_conn_t *conn)
{
    size_t sent = 0;

    while (sent < conn->out_len) {
        ssize_t n = send(conn->fd, conn->out + sent, conn->out_len - sent,
                         MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "harness: send to port %d failed: %s\n",
                    conn->port,
                    errno == EAGAIN ? "timed out" : strerror(errno));
            conn->out_len = 0;
            return false;
        }
        sent += (size_t)n;
    }
    conn->out_len = 0;
    return true;
}

/* Receives more bytes into the input buffer, growing it when full.
 * Returns the count, 0 at end of stream, -1 on error or timeout. */
static ssize_t receive_more(harness_conn_t *conn)
{
    ssize_t n;

    if (conn->in_start > 0 && conn->in_start == conn->in_end) {
        conn->in_start = 0;
        conn->in_end = 0;
    }
    if (conn->in_cap - conn->in_end < READ_CHUNK_BYTES) {
        conn->in_cap = conn->in_cap * 2 + READ_CHUNK_BYTES;
        conn->in = xrealloc(conn->in, conn->in_cap);
    }

    do {
        n = recv(conn->fd, conn->in + conn->in_end,
                 conn->in_cap - conn->in_end, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        conn->in_end += (size_t)n;
    return n;
}

ssize_t harness_read_raw(harness_conn_t *conn, void *buf, size_t cap)
{
    size_t buffered = conn->in_end - conn->in_start;
    ssize_t n;

    if (buffered == 0) {
        n = receive_more(conn);
        if (n <= 0)
            return n;
        buffered = conn->in_end - conn->in_start;
    }
    if (buffered > cap)
        buffered = cap;
    memcpy(buf, conn->in + conn->in_start, buffered);
    conn->in_start += buffered;
    return (ssize_t)buffered;
}

/* ---- reply reader --------------------------------------------------- */

typedef enum { PARSE_OK, PARSE_MORE, PARSE_BAD } parse_result_t;

void harness_reply_free(harness_reply_t *reply)
{
    if (reply == NULL)
        return;
    for (size_t i = 0; i < reply->count; i++)
        harness_reply_free(reply->elements[i]);
    free(reply->elements);
    free(reply->str);
    free(reply);
}

/* Finds the CRLF ending the line that starts at *pos. On PARSE_OK,
 * *line_len is the length without CRLF and *pos is past the CRLF. */
static parse_result_t take_line(const char *buf, size_t len, size_t *pos,
                                size_t max_line, size_t *line_len)
{
    const char *start = buf + *pos;
    size_t avail = len - *pos;
    const char *cr = memchr(start, '\r', avail);

    if (cr == NULL)
        return avail > max_line ? PARSE_BAD : PARSE_MORE;
    if ((size_t)(cr - start) > max_line)
        return PARSE_BAD;
    if ((size_t)(cr - start) + 1 == avail)
        return PARSE_MORE;
    if (cr[1] != '\n')
        return PARSE_BAD;

    *line_len = (size_t)(cr - start);
    *pos += *line_len + 2;
    return PARSE_OK;
}

/* Parses a whole decimal number with an optional minus sign. */
static bool parse_integer(const char *text, size_t len, long long *value)
{
    char digits[HEADER_LINE_MAX];
    char *end;

    if (len == 0 || len >= sizeof(digits))
        return false;
    memcpy(digits, text, len);
    digits[len] = '\0';
    errno = 0;
    *value = strtoll(digits, &end, 10);
    return errno == 0 && end == digits + len &&
           (digits[0] == '-' || (digits[0] >= '0' && digits[0] <= '9'));
}

static char *copy_bytes(const char *data, size_t len)
{
    char *copy = xrealloc(NULL, len + 1);

    memcpy(copy, data, len);
    copy[len] = '\0';
    return copy;
}

static parse_result_t parse_value(const char *buf, size_t len, size_t *pos,
                                  int depth, harness_reply_t *reply);

static parse_result_t parse_bulk(const char *buf, size_t len, size_t *pos,
                                 harness_reply_t *reply)
{
    size_t size = (size_t)reply->integer;

    if (reply->integer == -1)
        return PARSE_OK;
    if (reply->integer < 0 || size > HARNESS_MAX_REPLY_BYTES)
        return PARSE_BAD;
    if (len - *pos < size + 2)
        return len - *pos > HARNESS_MAX_REPLY_BYTES ? PARSE_BAD : PARSE_MORE;
    if (buf[*pos + size] != '\r' || buf[*pos + size + 1] != '\n')
        return PARSE_BAD;

    reply->str = copy_bytes(buf + *pos, size);
    reply->len = size;
    *pos += size + 2;
    return PARSE_OK;
}

static parse_result_t parse_array(const char *buf, size_t len, size_t *pos,
                                  int depth, harness_reply_t *reply)
{
    if (reply->integer == -1)
        return PARSE_OK;
    if (reply->integer < 0 || depth >= HARNESS_MAX_REPLY_DEPTH ||
        (unsigned long long)reply->integer > HARNESS_MAX_REPLY_BYTES / 4)
        return PARSE_BAD;

    /* Every element takes at least 4 bytes (":0\r\n"), so wait for them
     * before allocating room for a count that may be bogus. */
    if ((len - *pos) / 4 < (size_t)reply->integer)
        return PARSE_MORE;

    reply->elements = xrealloc(NULL, sizeof(*reply->elements) *
                                         ((size_t)reply->integer + 1));
    for (long long i = 0; i < reply->integer; i++) {
        harness_reply_t *element = xrealloc(NULL, sizeof(*element));
        parse_result_t result;

        memset(element, 0, sizeof(*element));
        reply->elements[reply->count++] = element;
        result = parse_value(buf, len, pos, depth + 1, element);
        if (result != PARSE_OK)
            return result;
    }
    return PARSE_OK;
}

/* Parses one value at *pos into reply, which the caller zeroed and frees
 * whatever the result. */
static parse_result_t parse_value(const char *buf, size_t len, size_t *pos,
                                  int depth, harness_reply_t *reply)
{
    size_t line_len = 0;
    bool is_text;
    parse_result_t result;
    const char *line;

    if (*pos >= len)
        return PARSE_MORE;
    reply->type = buf[*pos];
    is_text = reply->type == '+' || reply->type == '-';
    line = buf + *pos + 1;
    (*pos)++;
    result = take_line(buf, len, pos,
                       is_text ? READ_CHUNK_BYTES : HEADER_LINE_MAX, &line_len);
    if (result != PARSE_OK)
        return result;

    switch (reply->type) {
    case '+':
    case '-':
        reply->str = copy_bytes(line, line_len);
        reply->len = line_len;
        return PARSE_OK;
    case ':':
        return parse_integer(line, line_len, &reply->integer) ? PARSE_OK
                                                             : PARSE_BAD;
    case '$':
        if (!parse_integer(line, line_len, &reply->integer))
            return PARSE_BAD;
        return parse_bulk(buf, len, pos, reply);
    case '*':
        if (!parse_integer(line, line_len, &reply->integer))
            return PARSE_BAD;
        return parse_array(buf, len, pos, depth, reply);
    default:
        return PARSE_BAD;
    }
}

/* Parses a reply from the buffered input, starting over when more bytes
 * arrive; replies in these tests are small enough that rescanning costs
 * little. */
static parse_result_t try_parse(harness_conn_t *conn, harness_reply_t **out)
{
    size_t pos = conn->in_start;
    harness_reply_t *reply = xrealloc(NULL, sizeof(*reply));
    parse_result_t result;

    memset(reply, 0, sizeof(*reply));
    result = parse_value(conn->in, conn->in_end, &pos, 0, reply);
    if (result != PARSE_OK) {
        harness_reply_free(reply);
        return result;
    }
    conn->in_start = pos;
    *out = reply;
    return PARSE_OK;
}

harness_reply_t *harness_read(harness_conn_t *conn)
{
    harness_reply_t *reply = NULL;

    for (;;) {
        parse_result_t result = try_parse(conn, &reply);
        ssize_t n;

        if (result == PARSE_OK)
            return reply;
        if (result == PARSE_BAD) {
            fprintf(stderr, "harness: malformed reply from port %d\n",
                    conn->port);
            return NULL;
        }

        n = receive_more(conn);
        if (n <= 0) {
            fprintf(stderr, "harness: reading a reply from port %d: %s\n",
                    conn->port,
                    n == 0 ? "connection closed"
                    : errno == EAGAIN ? "timed out"
                                      : strerror(errno));
            return NULL;
        }
    }
}

/* ---- commands ------------------------------------------------------- */

harness_reply_t *harness_cmdv(harness_conn_t *conn, size_t argc,
                              const char *const *argv, const size_t *lens)
{
    harness_append(conn, argc, argv, lens);
    if (!harness_flush(conn))
        return NULL;
    return harness_read(conn);
}

#define CMD_MAX_ARGS 64

/* Collects NULL-terminated variadic arguments into argv. */
static size_t collect_args(const char **argv, const char *first, va_list ap)
{
    size_t argc = 0;

    for (const char *arg = first; arg != NULL; arg = va_arg(ap, const char *)) {
        assert(argc < CMD_MAX_ARGS);
        argv[argc++] = arg;
    }
    return argc;
}

static harness_reply_t *run_va(harness_conn_t *conn, const char *first,
                               va_list ap)
{
    const char *argv[CMD_MAX_ARGS];
    size_t argc = collect_args(argv, first, ap);

    return harness_cmdv(conn, argc, argv, NULL);
}

harness_reply_t *harness_cmd(harness_conn_t *conn, const char *arg, ...)
{
    va_list ap;
    harness_reply_t *reply;

    va_start(ap, arg);
    reply = run_va(conn, arg, ap);
    va_end(ap);
    return reply;
}

static void print_unexpected(const char *command, const char *expected,
                             const harness_reply_t *reply)
{
    if (reply == NULL)
        return;
    fprintf(stderr, "harness: %s expected %s, got '%c' reply", command,
            expected, reply->type);
    if (reply->str != NULL)
        fprintf(stderr, " \"%.*s\"", (int)(reply->len > 200 ? 200 : reply->len),
                reply->str);
    else if (reply->type == ':' || reply->type == '$' || reply->type == '*')
        fprintf(stderr, " %lld", reply->integer);
    fputc('\n', stderr);
}

bool harness_cmd_int(harness_conn_t *conn, long long *value,
                     const char *arg, ...)
{
    va_list ap;
    harness_reply_t *reply;
    bool ok;

    va_start(ap, arg);
    reply = run_va(conn, arg, ap);
    va_end(ap);

    ok = reply != NULL && reply->type == ':';
    if (ok)
        *value = reply->integer;
    else
        print_unexpected(arg, "an integer", reply);
    harness_reply_free(reply);
    return ok;
}

bool harness_cmd_bulk(harness_conn_t *conn, char **data, size_t *len,
                      const char *arg, ...)
{
    va_list ap;
    harness_reply_t *reply;
    bool ok;

    va_start(ap, arg);
    reply = run_va(conn, arg, ap);
    va_end(ap);

    ok = reply != NULL && reply->type == '$';
    if (ok) {
        *data = reply->str;
        *len = reply->len;
        reply->str = NULL;
    } else {
        print_unexpected(arg, "a bulk string", reply);
    }
    harness_reply_free(reply);
    return ok;
}

char *harness_cmd_status(harness_conn_t *conn, const char *arg, ...)
{
    va_list ap;
    harness_reply_t *reply;
    char *status = NULL;

    va_start(ap, arg);
    reply = run_va(conn, arg, ap);
    va_end(ap);

    if (reply != NULL && reply->type == '+') {
        status = reply->str;
        reply->str = NULL;
    } else {
        print_unexpected(arg, "a status", reply);
    }
    harness_reply_free(reply);
    return status;
}

size_t harness_pipeline(harness_conn_t *conn, size_t count,
                        const harness_command_t *commands,
                        harness_reply_t **replies)
{
    size_t done = 0;

    for (size_t i = 0; i < count; i++)
        replies[i] = NULL;

    while (done < count) {
        size_t batch = count - done;

        if (batch > HARNESS_PIPELINE_BATCH)
            batch = HARNESS_PIPELINE_BATCH;
        for (size_t i = done; i < done + batch; i++)
            harness_append(conn, commands[i].argc, commands[i].argv,
                           commands[i].lens);
        if (!harness_flush(conn))
            return done;

        for (size_t i = 0; i < batch; i++) {
            replies[done] = harness_read(conn);
            if (replies[done] == NULL)
                return done;
            done++;
        }
    }
    return done;
}
