/* server: the client I/O threads that serve the Redis protocol.
 *
 * Each of the --threads I/O threads runs its own epoll loop with its own
 * listening socket on --port (SO_REUSEPORT spreads connections across
 * them), its own connections and its own inproc pipe to the cluster
 * actor. A connection belongs to one thread for its whole life, so
 * connection state needs no locks.
 */
#ifndef PC_SERVER_H
#define PC_SERVER_H

#include "err.h"
#include "node.h"

typedef struct server server_t;

/* Binds the client port on every I/O thread and starts the threads; the
 * cluster actor must already be running. Returns PC_OK with the server in
 * *out, or PC_ERR_IO when the port cannot be bound (logged). */
pc_err_t server_start(node_t *node, server_t **out);

/* Stops the I/O threads, closes every connection and frees the server.
 * Sets *server to NULL; accepts NULL. */
void server_stop(server_t **server);

#endif
