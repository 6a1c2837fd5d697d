/* main: peercached start-up and shutdown.
 *
 * The main thread parses the configuration, creates the store, starts the
 * cluster actor and then the client I/O threads, and waits for SIGTERM or
 * SIGINT. Both signals are blocked in every thread and taken with
 * sigwait here, so no handler runs inside library code. Shutdown stops the
 * I/O threads first (no new commands), then the actor, then frees the
 * store.
 */
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cluster.h"
#include "config.h"
#include "hash.h"
#include "log.h"
#include "node.h"
#include "server.h"

#define READY_POLL_MS 20

/* Waits until the node can route keys or a stop signal arrives. Returns
 * the signal number, or 0 when ready. Clients are accepted only after
 * this, so no client reaches a node that cannot route keys yet. */
static int wait_ready(node_t *node, const sigset_t *signals)
{
    struct timespec poll = {.tv_sec = 0, .tv_nsec = READY_POLL_MS * 1000000L};
    bool announced = false;
    while (!cluster_ready(node)) {
        if (!announced) {
            LOG_NOTICE("main", "waiting to join the cluster before accepting clients");
            announced = true;
        }
        int received = sigtimedwait(signals, NULL, &poll);
        if (received > 0)
            return received;
    }
    return 0;
}

static int run(node_t *node)
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);

    int listen_fd = server_bind(&node->cfg);
    if (listen_fd < 0)
        return 1;

    pc_err_t err = cluster_start(node, &node->cluster);
    if (err != PC_OK) {
        LOG_ERROR("main", "cannot start the cluster actor error=%s", pc_err_name(err));
        close(listen_fd);
        return 1;
    }

    int received = wait_ready(node, &signals);
    if (received != 0) {
        LOG_NOTICE("main", "shutting down before joining signal=%s",
                   received == SIGTERM ? "SIGTERM" : "SIGINT");
        cluster_stop(&node->cluster);
        close(listen_fd);
        return 0;
    }

    err = server_start(node, listen_fd, &node->server);
    if (err != PC_OK) {
        LOG_ERROR("main", "cannot start the client server error=%s", pc_err_name(err));
        cluster_stop(&node->cluster);
        return 1;
    }

    sigwait(&signals, &received);
    LOG_NOTICE("main", "shutting down signal=%s", received == SIGTERM ? "SIGTERM" : "SIGINT");

    server_stop(&node->server);
    cluster_stop(&node->cluster);
    return 0;
}

int main(int argc, char **argv)
{
    static node_t node;
    char err_text[512];

    config_result_t parsed = config_parse(&node.cfg, argc, argv, err_text, sizeof err_text);
    if (parsed == CONFIG_EXIT_OK)
        return 0;
    if (parsed == CONFIG_INVALID) {
        fprintf(stderr, "peercached: %s\n", err_text);
        return 2;
    }

    /* Blocked before any thread starts, so every thread inherits it. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    pc_log_init(node.cfg.node_id, node.cfg.log_level);
    if (hash_init() != PC_OK) {
        LOG_ERROR("main", "libsodium failed to initialise");
        return 1;
    }

    node.start_ms = pc_time_ms();
    node.origin = hash_bytes(node.cfg.node_id, strlen(node.cfg.node_id));
    hlc_init(&node.clock);
    store_thread_register();
    if (store_new(&node.store) != PC_OK) {
        LOG_ERROR("main", "cannot create the store: out of memory");
        return 1;
    }
    node.zmq_ctx = zmq_ctx_new();

    LOG_NOTICE("main", "starting peercached node=%s port=%u peer_port=%u pub_port=%u "
               "replicas=%u vnodes=%u threads=%u seeds=%zu", node.cfg.node_id,
               node.cfg.port, node.cfg.peer_port, node.cfg.pub_port, node.cfg.replicas,
               node.cfg.vnodes, node.cfg.threads, node.cfg.seed_count);

    int status = run(&node);

    zmq_ctx_term(node.zmq_ctx);
    store_destroy(&node.store);
    store_thread_unregister();
    if (status == 0)
        LOG_NOTICE("main", "stopped");
    return status;
}
