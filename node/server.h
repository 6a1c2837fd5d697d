/* server: the client I/O threads that serve the Redis protocol.
 *
 * Each of the --threads I/O threads runs its own epoll loop over its own
 * connections and its own inproc pipe to the cluster actor. Thread 0 also
 * accepts on the one listening socket and deals new connections to the
 * threads in turn. A connection belongs to one thread for its whole life, so
 * connection state needs no locks.
 */
#ifndef PC_SERVER_H
#define PC_SERVER_H

#include "err.h"
#include "node.h"

typedef struct server server_t;

/* Binds the client port without listening, so that a port taken by
 * another process is found at start-up while connections are still
 * refused. Returns the socket, or -1 after logging why. */
int server_bind(const config_t *cfg);

/* Listens on listen_fd (from server_bind, owned by the server from now
 * on, closed on failure too) and starts the I/O threads; the cluster
 * actor must already be running. Returns PC_OK with the server in *out,
 * PC_ERR_IO when listening or a thread fails (logged), or PC_ERR_NOMEM. */
pc_err_t server_start(node_t *node, int listen_fd, server_t **out);

/* Stops the I/O threads, closes every connection and frees the server.
 * Sets *server to NULL; accepts NULL. */
void server_stop(server_t **server);

#endif
