/* server: the client I/O threads, their connections, request reading and
 * reply writing. Which node runs each command is router.c's job.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "cluster.h"
#include "log.h"
#include "server_int.h"

#define EPOLL_BATCH 256
#define LOOP_TIMEOUT_MS 100
#define LISTEN_BACKLOG 511

struct server {
    node_t *node;
    int listen_fd;
    unsigned next_thread;  /* round robin of new connections; thread 0 only */
    io_thread_t *threads;
    unsigned thread_count;
};

/* epoll data for the fds that are not connections. */
static char listen_marker;
static char stop_marker;
static char pipe_marker;
static char handoff_marker;

/* ---- reply slots ---- */

pc_buf_t *conn_reply_buf(conn_t *conn)
{
    if (conn->slots_tail == NULL)
        return &conn->out;
    if (conn->slots_tail->ready)
        return &conn->slots_tail->data;

    slot_t *slot = conn_defer(conn);
    if (slot == NULL)
        return &conn->out; /* out of memory: the sticky error closes it */
    slot->ready = true;
    return &slot->data;
}

slot_t *conn_defer(conn_t *conn)
{
    slot_t *slot = calloc(1, sizeof *slot);
    if (slot == NULL) {
        conn->out.err = PC_ERR_NOMEM;
        return NULL;
    }
    buf_init(&slot->data, CONN_OUTPUT_MAX_BYTES);
    if (conn->slots_tail)
        conn->slots_tail->next = slot;
    else
        conn->slots_head = slot;
    conn->slots_tail = slot;
    return slot;
}

static int conn_flush(conn_t *conn);

void conn_complete(conn_t *conn, slot_t *slot)
{
    slot->ready = true;
    if (!conn->closed && conn->slots_head == slot)
        conn_flush(conn);
}

/* Moves the ready slots at the head of the queue into out. */
static void move_ready_slots(conn_t *conn)
{
    while (conn->slots_head != NULL && conn->slots_head->ready) {
        slot_t *slot = conn->slots_head;
        if (slot->data.len > 0)
            buf_append(&conn->out, slot->data.data, slot->data.len);
        if (slot->data.err != PC_OK)
            conn->out.err = slot->data.err;
        conn->slots_head = slot->next;
        if (conn->slots_head == NULL)
            conn->slots_tail = NULL;
        buf_fini(&slot->data);
        free(slot);
    }
}

static void free_slots(conn_t *conn)
{
    while (conn->slots_head != NULL) {
        slot_t *slot = conn->slots_head;
        conn->slots_head = slot->next;
        buf_fini(&slot->data);
        free(slot);
    }
    conn->slots_tail = NULL;
}

/* ---- connections ---- */

static void update_events(conn_t *conn)
{
    struct epoll_event ev = {.data.ptr = conn};
    if (!conn->paused)
        ev.events |= EPOLLIN;
    if (conn->want_write)
        ev.events |= EPOLLOUT;
    epoll_ctl(conn->io->epoll_fd, EPOLL_CTL_MOD, conn->fd, &ev);
}

static void conn_free(conn_t *conn)
{
    buf_fini(&conn->in);
    buf_fini(&conn->out);
    resp_parser_fini(&conn->parser);
    free(conn->argv);
    free_slots(conn);
    free(conn);
}

static void conn_close(conn_t *conn)
{
    if (conn->closed)
        return;
    io_thread_t *io = conn->io;

    epoll_ctl(io->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
    close(conn->fd);
    conn->fd = -1;
    conn->closed = true;
    stat_add(&io->node->stats.connected_clients, (uint64_t)-1);

    if (conn->prev)
        conn->prev->next = conn->next;
    else
        io->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;

    /* Fan-outs still waiting hold a reference and free it at the end. */
    if (conn->refs == 0)
        conn_free(conn);
}

void conn_release(conn_t *conn)
{
    conn->refs--;
    if (conn->closed && conn->refs == 0)
        conn_free(conn);
}

/* Writes what is ready. Returns -1 when the connection was closed. */
static int conn_flush(conn_t *conn)
{
    move_ready_slots(conn);
    if (buf_error(&conn->out) != PC_OK) {
        LOG_WARNING("server", "closing client id=%lu: reply buffer limit of %llu "
                    "bytes exceeded or out of memory", (unsigned long)conn->info.id,
                    (unsigned long long)CONN_OUTPUT_MAX_BYTES);
        conn_close(conn);
        return -1;
    }

    while (conn->out_sent < conn->out.len) {
        ssize_t n = send(conn->fd, conn->out.data + conn->out_sent,
                         conn->out.len - conn->out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            conn->out_sent += (size_t)n;
            conn->io->output_bytes += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_close(conn);
        return -1;
    }

    size_t pending = conn->out.len - conn->out_sent;
    if (pending == 0) {
        buf_reset(&conn->out);
        conn->out_sent = 0;
        /* QUIT and protocol errors close only after every earlier reply,
         * forwarded ones included, has been sent. */
        if ((conn->protocol_error || conn->info.close_after_reply) &&
            conn->slots_head == NULL) {
            conn_close(conn);
            return -1;
        }
    } else if (conn->out_sent > CONN_READ_BYTES) {
        buf_consume(&conn->out, conn->out_sent);
        conn->out_sent = 0;
    }

    bool want_write = pending > 0;
    bool paused = pending > CONN_OUTPUT_PAUSE_BYTES || conn->protocol_error ||
                  conn->info.close_after_reply;
    if (want_write != conn->want_write || paused != conn->paused) {
        conn->want_write = want_write;
        conn->paused = paused;
        update_events(conn);
    }
    return 0;
}

static int ensure_argv(conn_t *conn, size_t argc)
{
    if (argc <= conn->argv_cap)
        return 0;
    cmd_arg_t *argv = realloc(conn->argv, argc * sizeof *argv);
    if (argv == NULL)
        return -1;
    conn->argv = argv;
    conn->argv_cap = argc;
    return 0;
}

static void reply_protocol_error(conn_t *conn)
{
    char text[RESP_ERROR_MAX_BYTES + 8];
    snprintf(text, sizeof text, "ERR %s", conn->parser.error);
    resp_add_error(conn_reply_buf(conn), text);
    conn->protocol_error = true;
    LOG_INFO("server", "closing client id=%lu after a protocol error: %s",
             (unsigned long)conn->info.id, conn->parser.error);
}

/* Parses and runs every whole request in the input buffer. */
static void process_input(conn_t *conn)
{
    size_t start = 0;
    while (!conn->protocol_error && !conn->info.close_after_reply &&
           conn->out.len - conn->out_sent <= CONN_OUTPUT_PAUSE_BYTES) {
        size_t consumed = 0;
        size_t need = 0;
        const char *request = conn->in.data + start;
        pc_err_t err = resp_parse(&conn->parser, request, conn->in.len - start,
                                  &consumed, &need);
        if (err == PC_ERR_TRUNCATED) {
            if (need > conn->in.len - start)
                buf_reserve(&conn->in, need - (conn->in.len - start));
            break;
        }
        if (err != PC_OK) {
            reply_protocol_error(conn);
            break;
        }

        size_t argc = conn->parser.argc;
        if (argc > 0) {
            if (ensure_argv(conn, argc) != 0) {
                conn->out.err = PC_ERR_NOMEM;
                break;
            }
            for (size_t i = 0; i < argc; i++) {
                conn->argv[i].ptr = resp_arg_ptr(&conn->parser, request, i);
                conn->argv[i].len = conn->parser.args[i].len;
            }
            router_dispatch(conn->io->router, conn, (int)argc, conn->argv);
            conn->io->commands++;
        }
        start += consumed;
    }
    buf_consume(&conn->in, start);
}

static void conn_read(conn_t *conn)
{
    if (buf_reserve(&conn->in, CONN_READ_BYTES) != PC_OK) {
        LOG_WARNING("server", "closing client id=%lu: request buffer limit exceeded",
                    (unsigned long)conn->info.id);
        conn_close(conn);
        return;
    }

    ssize_t n = recv(conn->fd, conn->in.data + conn->in.len,
                     conn->in.cap - conn->in.len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_close(conn);
        return;
    }
    if (n < 0)
        return;
    conn->in.len += (size_t)n;
    conn->io->input_bytes += (uint64_t)n;

    process_input(conn);
    conn_flush(conn);
}

static void conn_writable(conn_t *conn)
{
    if (conn_flush(conn) != 0)
        return;
    /* Requests left unprocessed while output was paused run now. */
    if (!conn->paused && conn->in.len > 0) {
        process_input(conn);
        conn_flush(conn);
    }
}

/* Takes a newly accepted socket into this thread's loop. */
static void adopt_client(io_thread_t *io, int fd)
{
    node_stats_t *stats = &io->node->stats;
    if (stat_get(&stats->connected_clients) >= SERVER_MAX_CLIENTS) {
        static const char full[] = "-ERR max number of clients reached\r\n";
        ssize_t ignored = send(fd, full, sizeof full - 1, MSG_NOSIGNAL);
        (void)ignored;
        close(fd);
        stat_add(&stats->connections_rejected, 1);
        return;
    }

    conn_t *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn->fd = fd;
    conn->io = io;
    conn->info.id = atomic_fetch_add(&io->node->next_client_id, 1) + 1;
    buf_init(&conn->in, CONN_INPUT_MAX_BYTES);
    buf_init(&conn->out, CONN_OUTPUT_MAX_BYTES);
    resp_parser_init(&conn->parser);

    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = conn};
    if (epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_free(conn);
        close(fd);
        return;
    }
    conn->next = io->conns;
    if (io->conns)
        io->conns->prev = conn;
    io->conns = conn;
    stat_add(&stats->connected_clients, 1);
}

/* Queues a socket for another I/O thread and wakes it. */
static void hand_over(io_thread_t *target, int fd)
{
    pthread_mutex_lock(&target->handoff_lock);
    if (target->handoff_count == target->handoff_cap) {
        size_t cap = target->handoff_cap ? target->handoff_cap * 2 : 16;
        int *fds = realloc(target->handoff_fds, cap * sizeof *fds);
        if (fds == NULL) {
            pthread_mutex_unlock(&target->handoff_lock);
            close(fd);
            return;
        }
        target->handoff_fds = fds;
        target->handoff_cap = cap;
    }
    target->handoff_fds[target->handoff_count++] = fd;
    pthread_mutex_unlock(&target->handoff_lock);

    uint64_t one = 1;
    ssize_t ignored = write(target->handoff_event, &one, sizeof one);
    (void)ignored;
}

/* Adopts the sockets other threads queued for this one. */
static void take_handed_over(io_thread_t *io)
{
    uint64_t count;
    ssize_t ignored = read(io->handoff_event, &count, sizeof count);
    (void)ignored;

    pthread_mutex_lock(&io->handoff_lock);
    int *fds = io->handoff_fds;
    size_t n = io->handoff_count;
    io->handoff_fds = NULL;
    io->handoff_count = io->handoff_cap = 0;
    pthread_mutex_unlock(&io->handoff_lock);

    for (size_t i = 0; i < n; i++)
        adopt_client(io, fds[i]);
    free(fds);
}

/* Thread 0 accepts every connection and deals them out in turn, so the
 * connections of a burst spread over all threads instead of landing on
 * whichever thread woke first. */
static void accept_clients(io_thread_t *io)
{
    for (;;) {
        int fd = accept4(io->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                LOG_WARNING("server", "accept failed error=\"%s\"", strerror(errno));
            return;
        }
        stat_add(&io->node->stats.connections_received, 1);

        server_t *s = io->server;
        io_thread_t *target = &s->threads[s->next_thread++ % s->thread_count];
        if (target == io)
            adopt_client(io, fd);
        else
            hand_over(target, fd);
    }
}

/* ---- the actor pipe ---- */

/* Reads every message waiting on the pipe. ZMQ_FD only signals that the
 * socket's state may have changed, so the loop reads ZMQ_EVENTS until
 * nothing is readable. */
static void drain_pipe(io_thread_t *io)
{
    for (;;) {
        uint32_t events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt(io->pipe, ZMQ_EVENTS, &events, &size) != 0 ||
            !(events & ZMQ_POLLIN))
            return;

        zmq_msg_t hdr_frame;
        zmq_msg_t body;
        zmq_msg_init(&hdr_frame);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&hdr_frame, io->pipe, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&hdr_frame);
            zmq_msg_close(&body);
            return;
        }
        bool has_body = zmq_msg_more(&hdr_frame) &&
                        zmq_msg_recv(&body, io->pipe, ZMQ_DONTWAIT) >= 0;

        pipe_hdr_t hdr;
        if (has_body && zmq_msg_size(&hdr_frame) == sizeof hdr) {
            memcpy(&hdr, zmq_msg_data(&hdr_frame), sizeof hdr);
            if (hdr.kind == PIPE_REPLY)
                router_on_reply(io->router, hdr.req_id, zmq_msg_data(&body),
                                zmq_msg_size(&body));
        }
        zmq_msg_close(&hdr_frame);
        zmq_msg_close(&body);
    }
}

/* ---- the thread ---- */

static void handle_event(io_thread_t *io, struct epoll_event *ev, bool *stop)
{
    if (ev->data.ptr == &listen_marker) {
        accept_clients(io);
    } else if (ev->data.ptr == &stop_marker) {
        *stop = true;
    } else if (ev->data.ptr == &pipe_marker) {
        io->pipe_dirty = true;
    } else if (ev->data.ptr == &handoff_marker) {
        take_handed_over(io);
    } else {
        conn_t *conn = ev->data.ptr;
        if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            conn_read(conn);
        else if (ev->events & EPOLLOUT)
            conn_writable(conn);
    }
}

static void flush_stats(io_thread_t *io)
{
    node_stats_t *stats = &io->node->stats;
    if (io->commands > 0)
        stat_add(&stats->commands_processed, io->commands);
    if (io->input_bytes > 0)
        stat_add(&stats->net_input_bytes, io->input_bytes);
    if (io->output_bytes > 0)
        stat_add(&stats->net_output_bytes, io->output_bytes);
    io->commands = io->input_bytes = io->output_bytes = 0;
}

static void *io_main(void *arg)
{
    io_thread_t *io = arg;
    store_thread_register();

    struct epoll_event events[EPOLL_BATCH];
    bool stop = false;
    while (!stop) {
        int n = epoll_wait(io->epoll_fd, events, EPOLL_BATCH, LOOP_TIMEOUT_MS);
        for (int i = 0; i < n; i++) {
            /* An fd appears once per batch and only its own event frees
             * a connection, so every pointer in the batch is still valid. */
            handle_event(io, &events[i], &stop);
        }
        /* Asking ZeroMQ for ZMQ_EVENTS costs a system call, so the pipe
         * is read only when its fd fired or this thread sent on it (a
         * send can consume the fd's wake-up). */
        if (io->pipe_dirty) {
            io->pipe_dirty = false;
            drain_pipe(io);
        }
        router_expire(io->router, (int64_t)pc_time_ms());
        flush_stats(io);
    }

    while (io->conns != NULL)
        conn_close(io->conns);
    store_thread_unregister();
    return NULL;
}

int server_bind(const config_t *cfg)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *result = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    int rc = getaddrinfo(cfg->bind, port, &hints, &result);
    if (rc != 0) {
        LOG_ERROR("server", "cannot resolve --bind %s error=\"%s\"", cfg->bind,
                  gai_strerror(rc));
        return -1;
    }

    int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        /* No SO_REUSEPORT: with it a second process could bind the same
         * port and silently take a share of the clients. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, result->ai_addr, result->ai_addrlen) != 0) {
            LOG_ERROR("server", "cannot bind the client port %s:%u error=\"%s\"; "
                      "check --bind and --port", cfg->bind, cfg->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(result);
    return fd;
}

static pc_err_t io_init(io_thread_t *io, server_t *s, unsigned index)
{
    io->node = s->node;
    io->server = s;
    io->index = index;
    io->listen_fd = s->listen_fd;
    io->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    io->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    io->handoff_event = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->epoll_fd < 0 || io->stop_fd < 0 || io->handoff_event < 0)
        return PC_ERR_IO;
    node_t *node = s->node;

    char endpoint[64];
    cluster_io_endpoint(index, endpoint, sizeof endpoint);
    io->pipe = zmq_socket(node->zmq_ctx, ZMQ_PAIR);
    int unlimited = 0;
    int zero = 0;
    size_t fd_size = sizeof io->pipe_fd;
    if (io->pipe == NULL ||
        zmq_setsockopt(io->pipe, ZMQ_SNDHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_setsockopt(io->pipe, ZMQ_RCVHWM, &unlimited, sizeof unlimited) != 0 ||
        zmq_setsockopt(io->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(io->pipe, endpoint) != 0 ||
        zmq_getsockopt(io->pipe, ZMQ_FD, &io->pipe_fd, &fd_size) != 0)
        return PC_ERR_ZMQ;

    io->router = router_new(io);
    if (io->router == NULL)
        return PC_ERR_NOMEM;

    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_marker};
    if (index == 0)
        epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->listen_fd, &ev);
    ev.data.ptr = &handoff_marker;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->handoff_event, &ev);
    ev.data.ptr = &stop_marker;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->stop_fd, &ev);
    ev.data.ptr = &pipe_marker;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->pipe_fd, &ev);
    return PC_OK;
}

static void io_fini(io_thread_t *io)
{
    router_destroy(&io->router);
    if (io->pipe != NULL)
        zmq_close(io->pipe);
    if (io->stop_fd >= 0)
        close(io->stop_fd);
    if (io->handoff_event >= 0)
        close(io->handoff_event);
    for (size_t i = 0; i < io->handoff_count; i++)
        close(io->handoff_fds[i]);
    free(io->handoff_fds);
    pthread_mutex_destroy(&io->handoff_lock);
    if (io->epoll_fd >= 0)
        close(io->epoll_fd);
}

static void free_server(server_t *s, unsigned started)
{
    for (unsigned i = 0; i < started; i++) {
        uint64_t one = 1;
        ssize_t ignored = write(s->threads[i].stop_fd, &one, sizeof one);
        (void)ignored;
        pthread_join(s->threads[i].thread, NULL);
    }
    for (unsigned i = 0; i < s->thread_count; i++)
        io_fini(&s->threads[i]);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    free(s->threads);
    free(s);
}

pc_err_t server_start(node_t *node, int listen_fd, server_t **out)
{
    server_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(listen_fd);
        return PC_ERR_NOMEM;
    }
    s->node = node;
    s->listen_fd = -1;
    s->thread_count = node->cfg.threads;
    s->threads = calloc(s->thread_count, sizeof *s->threads);
    if (s->threads == NULL) {
        close(listen_fd);
        free(s);
        return PC_ERR_NOMEM;
    }
    for (unsigned i = 0; i < s->thread_count; i++) {
        s->threads[i].epoll_fd = s->threads[i].stop_fd = s->threads[i].handoff_event = -1;
        pthread_mutex_init(&s->threads[i].handoff_lock, NULL);
    }

    s->listen_fd = listen_fd;
    if (listen(listen_fd, LISTEN_BACKLOG) != 0) {
        LOG_ERROR("server", "cannot listen on the client port %s:%u error=\"%s\"",
                  node->cfg.bind, node->cfg.port, strerror(errno));
        free_server(s, 0);
        return PC_ERR_IO;
    }
    for (unsigned i = 0; i < s->thread_count; i++) {
        pc_err_t err = io_init(&s->threads[i], s, i);
        if (err != PC_OK) {
            free_server(s, 0);
            return err;
        }
    }

    unsigned started = 0;
    for (; started < s->thread_count; started++) {
        if (pthread_create(&s->threads[started].thread, NULL, io_main,
                           &s->threads[started]) != 0) {
            free_server(s, started);
            return PC_ERR_IO;
        }
    }
    LOG_NOTICE("server", "listening for clients addr=%s:%u threads=%u",
               node->cfg.bind, node->cfg.port, s->thread_count);
    *out = s;
    return PC_OK;
}

void server_stop(server_t **server)
{
    if (server == NULL || *server == NULL)
        return;
    free_server(*server, (*server)->thread_count);
    *server = NULL;
}
