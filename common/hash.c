/* hash: SipHash-2-4 with the project's fixed key, read as a little-endian
 * integer.
 *
 * The key and the byte order of input and output are part of the cluster's
 * wire contract: every node must place tokens and keys at the same ring
 * positions, so neither may depend on the host. No state besides
 * libsodium's; any thread may call these functions.
 */
#include "hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* The config module caps node ids at 64 bytes (CONFIG_MAX_ID_BYTES), so
 * hash_token needs no allocation for them. Longer ids go through the heap. */
#define HASH_TOKEN_STACK_ID_BYTES 64

#define HASH_TOKEN_INDEX_BYTES 4

static const unsigned char hash_key[crypto_shorthash_KEYBYTES] = {
    'p', 'e', 'e', 'r', 'c', 'a', 'c', 'h',
    'e', '-', 'r', 'i', 'n', 'g', '-', '1',
};

_Static_assert(crypto_shorthash_BYTES == 8, "SipHash-2-4 gives 8 bytes");
_Static_assert(crypto_shorthash_KEYBYTES == 16, "SipHash-2-4 takes 16 bytes");

pc_err_t hash_init(void)
{
    /* sodium_init returns 1, not an error, when it has already run. */
    if (sodium_init() < 0)
        return PC_ERR_INVALID;
    return PC_OK;
}

uint64_t hash_bytes(const void *data, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];

    crypto_shorthash(out, data, (unsigned long long)len, hash_key);

    uint64_t value = 0;
    for (size_t i = crypto_shorthash_BYTES; i > 0; i--)
        value = (value << 8) | out[i - 1];
    return value;
}

static void hash_put_be32(unsigned char *dst, uint32_t value)
{
    dst[0] = (unsigned char)(value >> 24);
    dst[1] = (unsigned char)(value >> 16);
    dst[2] = (unsigned char)(value >> 8);
    dst[3] = (unsigned char)value;
}

uint64_t hash_token(const char *node_id, uint32_t index)
{
    size_t id_len = strlen(node_id);
    unsigned char stack_input[HASH_TOKEN_STACK_ID_BYTES + HASH_TOKEN_INDEX_BYTES];
    unsigned char *input = stack_input;

    if (id_len > HASH_TOKEN_STACK_ID_BYTES) {
        /* hash_token has no error return, and every node must compute the
         * same value, so a failed allocation cannot fall back to a
         * different hash. */
        input = malloc(id_len + HASH_TOKEN_INDEX_BYTES);
        if (input == NULL) {
            fprintf(stderr, "hash_token: out of memory for a %zu-byte node id\n",
                    id_len);
            abort();
        }
    }

    memcpy(input, node_id, id_len);
    hash_put_be32(input + id_len, index);
    uint64_t value = hash_bytes(input, id_len + HASH_TOKEN_INDEX_BYTES);

    if (input != stack_input)
        free(input);
    return value;
}
