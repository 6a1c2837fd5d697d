/* ring: the consistent-hash ring as one sorted token array.
 *
 * Tokens are sorted by (position, node index). Node ids are sorted, so
 * index order is id order and the tie-break matches the header's rule. The
 * array is written only in ring_new, so lookups take no locks and any
 * thread may run them. Every node has exactly vnodes tokens, so a clockwise
 * walk over all tokens from any start meets every node.
 */
#include "ring.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

struct ring_token {
    uint64_t position;
    uint32_t node;
};

struct ring {
    size_t node_count;
    size_t token_count;
    struct ring_token tokens[];
};

#define RING_SEEN_WORDS ((RING_MAX_NODES + 63) / 64)

static int ring_token_cmp(const void *a, const void *b)
{
    const struct ring_token *x = a;
    const struct ring_token *y = b;

    if (x->position != y->position)
        return x->position < y->position ? -1 : 1;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return 0;
}

static bool ring_ids_valid(const char *const *node_ids, size_t count)
{
    if (node_ids == NULL)
        return false;

    for (size_t i = 0; i < count; i++) {
        if (node_ids[i] == NULL)
            return false;
        /* Strictly ascending rejects both disorder and repeats. */
        if (i > 0 && strcmp(node_ids[i - 1], node_ids[i]) >= 0)
            return false;
    }
    return true;
}

pc_err_t ring_new(const char *const *node_ids, size_t count, uint32_t vnodes,
                  ring_t **out)
{
    assert(out != NULL);
    *out = NULL;

    if (count == 0 || count > RING_MAX_NODES)
        return PC_ERR_INVALID;
    if (vnodes == 0 || vnodes > RING_MAX_VNODES)
        return PC_ERR_INVALID;
    if (!ring_ids_valid(node_ids, count))
        return PC_ERR_INVALID;

    /* The caps keep this product far below SIZE_MAX / sizeof(token). */
    size_t token_count = count * vnodes;
    ring_t *ring = malloc(sizeof *ring + token_count * sizeof ring->tokens[0]);
    if (ring == NULL)
        return PC_ERR_NOMEM;
    ring->node_count = count;
    ring->token_count = token_count;

    size_t next = 0;
    for (size_t node = 0; node < count; node++) {
        for (uint32_t i = 0; i < vnodes; i++) {
            ring->tokens[next].position = hash_token(node_ids[node], i);
            ring->tokens[next].node = (uint32_t)node;
            next++;
        }
    }

    qsort(ring->tokens, token_count, sizeof ring->tokens[0], ring_token_cmp);
    *out = ring;
    return PC_OK;
}

void ring_destroy(ring_t **ring)
{
    if (ring == NULL)
        return;
    free(*ring);
    *ring = NULL;
}

size_t ring_node_count(const ring_t *ring)
{
    assert(ring != NULL);
    return ring->node_count;
}

/* Returns the index of the first token at or after key_hash, wrapping to
 * token 0 past the largest position. */
static size_t ring_first_token(const ring_t *ring, uint64_t key_hash)
{
    size_t low = 0;
    size_t high = ring->token_count;

    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (ring->tokens[mid].position < key_hash)
            low = mid + 1;
        else
            high = mid;
    }
    return low == ring->token_count ? 0 : low;
}

size_t ring_preference(const ring_t *ring, uint64_t key_hash, size_t replicas,
                       uint32_t *out_nodes)
{
    assert(ring != NULL);

    size_t want = replicas < ring->node_count ? replicas : ring->node_count;
    if (want == 0)
        return 0;
    assert(out_nodes != NULL);

    uint64_t seen[RING_SEEN_WORDS] = {0};
    size_t found = 0;
    size_t at = ring_first_token(ring, key_hash);

    for (size_t step = 0; step < ring->token_count && found < want; step++) {
        uint32_t node = ring->tokens[at].node;
        uint64_t bit = UINT64_C(1) << (node % 64);

        if ((seen[node / 64] & bit) == 0) {
            seen[node / 64] |= bit;
            out_nodes[found++] = node;
        }
        at = at + 1 == ring->token_count ? 0 : at + 1;
    }

    assert(found == want);
    return found;
}

uint32_t ring_primary(const ring_t *ring, uint64_t key_hash)
{
    assert(ring != NULL);
    return ring->tokens[ring_first_token(ring, key_hash)].node;
}

double ring_share(const ring_t *ring, uint32_t node_index)
{
    assert(ring != NULL);
    assert(node_index < ring->node_count);

    /* Token i owns the keys in (position of token i - 1, position of
     * token i], with token 0 following the last token. Unsigned subtraction
     * gives each arc's length modulo 2^64. One node's arcs add up to at
     * most 2^64, so the sum can wrap only to exactly 0, and only when the
     * node owns the whole ring. */
    uint64_t sum = 0;
    bool owns_any = false;
    size_t last = ring->token_count - 1;

    for (size_t i = 0; i < ring->token_count; i++) {
        if (ring->tokens[i].node != node_index)
            continue;

        uint64_t prev = ring->tokens[i == 0 ? last : i - 1].position;
        uint64_t arc = ring->tokens[i].position - prev;

        /* Token 0 at the same position as the last token means all tokens
         * share one position, and token 0 owns the whole ring. */
        if (i == 0 && arc == 0)
            return 1.0;
        if (arc != 0)
            owns_any = true;
        sum += arc;
    }

    if (owns_any && sum == 0)
        return 1.0;
    return (double)sum * 0x1p-64;
}
