/* hash: the project's one 64-bit hash, identical on every node and
 * platform.
 *
 * SipHash-2-4 through libsodium's crypto_shorthash with the fixed 16-byte
 * key "peercache-ring-1" (ASCII). Only the input bytes are hashed, never a
 * host-order integer, so every node computes the same value. The result is
 * read from the 8 output bytes as a little-endian integer. Any thread may
 * call these functions once hash_init has returned PC_OK.
 */
#ifndef PC_HASH_H
#define PC_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Initialises libsodium. Returns PC_OK, or PC_ERR_INVALID when
 * sodium_init fails. Safe to call more than once. */
pc_err_t hash_init(void);

/* Returns the hash of len bytes at data. */
uint64_t hash_bytes(const void *data, size_t len);

/* Returns the ring position of token number index of a node: the hash of
 * the node id's bytes followed by index as 4 big-endian bytes. */
uint64_t hash_token(const char *node_id, uint32_t index);

#endif
